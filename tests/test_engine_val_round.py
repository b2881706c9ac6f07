"""The evaluation round's one shared pass (engine.val_round / val_pass): the same validation loss
and the same evaluation as the two separate passes it replaces, batched images included; one pass
per round in training, hooks in their order."""

from collections import defaultdict

import cv2
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation.testing import flatten_results_dict
from detectron2.utils.events import EventStorage

from .conftest import REPO

INSTANT = REPO / "configs" / "quick_schedules" / "sperm_mask_rcnn_R_50_FPN_instant_test.yaml"
MIXED = "tinymix_val"
#: sample every anchor and every proposal: the losses then do not depend on the random stream,
#: so passes that meet it in another order (batched images) must give the same numbers
SAMPLE_ALL = [
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
    "100000",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "100000",
]


@pytest.fixture(scope="module")
def mixed_val(tiny_dataset, tmp_path_factory):
    """tiny_val's 4 images plus 3 copies padded (right/bottom, annotations unchanged) to other
    sizes, so a batch plan has several input sizes; registered as ``tinymix_val``."""
    out = tmp_path_factory.mktemp("mixed_val")
    records = DatasetCatalog.get(tiny_dataset.names["val"])
    extra = []
    for k, (bottom, right) in enumerate([(0, 60), (50, 0), (0, 60)]):
        rec = dict(records[k])
        image = cv2.imread(rec["file_name"], cv2.IMREAD_COLOR)
        padded = cv2.copyMakeBorder(image, 0, bottom, 0, right, cv2.BORDER_CONSTANT, value=0)
        path = out / f"padded_{k}.png"
        cv2.imwrite(str(path), padded)
        rec.update(
            file_name=str(path),
            height=padded.shape[0],
            width=padded.shape[1],
            image_id=1000 + k,
        )
        extra.append(rec)
    all_records = records + extra
    DatasetCatalog.register(MIXED, lambda: [dict(r) for r in all_records])
    meta = MetadataCatalog.get(tiny_dataset.names["val"]).as_dict()
    MetadataCatalog.get(MIXED).set(
        **{k: v for k, v in meta.items() if k not in ("name", "json_file")}
    )
    yield MIXED
    DatasetCatalog.remove(MIXED)
    MetadataCatalog.remove(MIXED)


def _cfg(tmp_path, dataset: str, *opts: str):
    from sperm_d2.config import setup_cfg

    return setup_cfg(
        str(INSTANT),
        ["DATASETS.TEST", f"('{dataset}',)", "OUTPUT_DIR", str(tmp_path), *opts],
    )


def _model(cfg):
    from sperm_d2.engine.trainer import SpermTrainer

    torch.manual_seed(0)
    return SpermTrainer.build_model(cfg)


class _Trainer:
    """What ValRound reads of a trainer."""

    def __init__(self, model, it: int = 1, max_iter: int = 10) -> None:
        self.model, self.iter, self.max_iter = model, it, max_iter


def _separate_passes(cfg, model) -> tuple[dict, dict]:
    """The two passes as they were: the model per image in training mode (mean over images),
    then DefaultTrainer.test in inference mode."""
    from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts

    from sperm_d2.engine.trainer import SpermTrainer
    from sperm_d2.engine.val_round import val_mapper

    dicts = get_detection_dataset_dicts(list(cfg.DATASETS.TEST), filter_empty=False)
    sums, count = defaultdict(float), 0
    model.train()
    with torch.no_grad():
        for inputs in build_detection_test_loader(dicts, mapper=val_mapper(cfg)):
            for k, v in model(inputs).items():
                sums[k] += float(v)
            count += 1
    parts = {f"val_{k}": v / count for k, v in sums.items()}
    losses = {"validation_loss": sum(parts.values()), **parts}
    return losses, flatten_results_dict(SpermTrainer.test(cfg, model))


def _one_pass(cfg, model) -> tuple[dict, dict]:
    from sperm_d2.engine.trainer import SpermTrainer
    from sperm_d2.engine.val_round import ValRound

    val_round = ValRound(cfg, lambda n: SpermTrainer.build_evaluator(cfg, n), 2, 2)
    trainer = _Trainer(model)
    return val_round.losses(trainer), flatten_results_dict(val_round.evaluation(trainer))


def test_plan_batches_groups_equal_sizes_and_keeps_the_order_one_at_a_time() -> None:
    from sperm_d2.engine.val_round import plan_batches

    sizes = [(64, 64), (64, 96), (64, 64), (64, 64), (96, 64), (64, 96), (64, 64)]
    indices = [0, 1, 2, 3, 4, 5, 6]
    assert plan_batches(sizes, indices, 2) == [[0, 2], [3, 6], [1, 5], [4]]
    assert plan_batches(sizes, indices, 8) == [[0, 2, 3, 6], [1, 5], [4]]
    assert plan_batches(sizes, indices, 1) == [[i] for i in indices]
    assert plan_batches(sizes, [5, 2, 6], 4) == [[5], [2, 6]]  # a shard: only its indices


def test_padded_size_is_the_size_the_model_sees(tmp_path, mixed_val) -> None:
    from sperm_d2.engine.val_round import padded_size, val_mapper

    cfg = _cfg(tmp_path, mixed_val)
    model = _model(cfg)
    mapper = val_mapper(cfg)
    seen = set()
    for record in DatasetCatalog.get(mixed_val):
        inputs = mapper(record)
        expected = tuple(model.preprocess_image([inputs]).tensor.shape[-2:])
        assert padded_size(cfg, model, record["height"], record["width"]) == expected
        seen.add(expected)
    assert len(seen) == 3  # the fixture does hold several input sizes


def test_shares_features_only_where_both_modes_compute_the_same(tmp_path) -> None:
    from sperm_d2.engine.val_pass import shares_features

    assert shares_features(_model(_cfg(tmp_path, "tiny_val")))  # GroupNorm throughout
    bn = _cfg(tmp_path, "tiny_val", "MODEL.RESNETS.NORM", "BN", "MODEL.FPN.NORM", "BN")
    assert not shares_features(_model(bn))  # BatchNorm: batch statistics in training mode
    assert not shares_features(_model(_cfg(tmp_path, "tiny_val", "VIS_PERIOD", "1")))


@pytest.mark.slow
def test_one_pass_gives_the_separate_passes_numbers(tmp_path, mixed_val) -> None:
    # One image at a time, in dataset order: the random anchor/ROI sampling meets the random
    # stream exactly as before, so even with sampling the numbers are the same.
    cfg = _cfg(tmp_path, mixed_val, "SPERM.EVAL_BATCH_SIZE", "1")
    model = _model(cfg)
    with EventStorage(0):
        torch.manual_seed(7)
        expected_losses, expected_metrics = _separate_passes(cfg, model)
        torch.manual_seed(7)
        losses, metrics = _one_pass(cfg, model)
    assert set(losses) == set(expected_losses)
    assert {"val_loss_cls", "val_loss_mask", "val_loss_rpn_cls"} <= set(losses)
    assert losses == pytest.approx(expected_losses, rel=1e-6)
    assert {"segm/AP50", "bbox/AP", "pixellib/mAP50"} <= set(metrics)
    assert metrics == pytest.approx(expected_metrics, rel=1e-6, nan_ok=True)
    assert metrics["pixellib/images"] == 7


@pytest.mark.slow
def test_batched_pass_gives_one_at_a_time_numbers(tmp_path, mixed_val) -> None:
    from sperm_d2.engine.val_pass import losses_and_predictions
    from sperm_d2.engine.val_round import build_val_loader

    cfg = _cfg(tmp_path, mixed_val, *SAMPLE_ALL, "SPERM.EVAL_BATCH_SIZE", "3")
    model = _model(cfg)
    with EventStorage(0):
        expected_losses, expected_metrics = _separate_passes(cfg, model)
        losses, metrics = _one_pass(cfg, model)
        batches = [len(b) for b in build_val_loader(cfg, mixed_val, model, 3)]
        # per image: the batched predictions are those of the image alone
        single = {}
        model.eval()
        with torch.no_grad():
            for inputs in build_val_loader(cfg, mixed_val, model, 1):
                single[inputs[0]["image_id"]] = model(inputs)[0]["instances"]
            for inputs in build_val_loader(cfg, mixed_val, model, 3):
                _, outputs = losses_and_predictions(model, inputs, False, True)
                for inp, out in zip(inputs, outputs):
                    one = single[inp["image_id"]]
                    got = out["instances"]
                    assert len(got) == len(one) > 0
                    torch.testing.assert_close(got.scores, one.scores, rtol=1e-4, atol=1e-5)
                    torch.testing.assert_close(
                        got.pred_boxes.tensor, one.pred_boxes.tensor, rtol=1e-4, atol=1e-3
                    )
    assert max(batches) == 3 and sum(batches) == 7
    assert losses == pytest.approx(expected_losses, rel=1e-5)
    assert metrics == pytest.approx(expected_metrics, rel=1e-5, nan_ok=True)


def _count_passes(monkeypatch) -> list[tuple[int, bool, bool]]:
    from sperm_d2.engine.val_round import ValRound

    calls = []
    original = ValRound._pass

    def counting(self, model, losses, results, _iters=calls):
        _iters.append((self._iter, losses, results))
        return original(self, model, losses, results)

    monkeypatch.setattr(ValRound, "_pass", counting)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize(
    "val_loss_period, expected",
    [
        # one pass per round gives both; after training (iteration 4) both again
        ("0", [(1, True, True), (4, True, True)]),
        # the val loss alone every iteration, both where the periods meet
        ("1", [(0, True, False), (1, True, True), (2, True, False), (4, True, True)]),
    ],
)
def test_training_runs_one_pass_per_round(
    tiny_dataset, tmp_path, monkeypatch, val_loss_period, expected
) -> None:
    from sperm_d2.engine.trainer import SpermTrainer

    calls = _count_passes(monkeypatch)
    cfg = _cfg(
        tmp_path,
        tiny_dataset.names["val"],
        "DATASETS.TRAIN",
        f"('{tiny_dataset.names['train']}',)",
        "SPERM.VAL_LOSS_PERIOD",
        val_loss_period,
    )
    trainer = SpermTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert calls == expected
    history = trainer.storage.history
    assert history("validation_loss").values()[-1][1] == 4
    assert history("segm/AP50").values()[-1][1] == 4
    assert {it for _, it in history("validation_loss").values()} == {c[0] for c in expected}


def test_hooks_come_in_their_order(tiny_dataset, tmp_path) -> None:
    from sperm_d2.engine.trainer import SpermTrainer

    cfg = _cfg(
        tmp_path,
        tiny_dataset.names["val"],
        "DATASETS.TRAIN",
        f"('{tiny_dataset.names['train']}',)",
        "SPERM.BEST_BY_VAL_LOSS",
        "True",
        "SPERM.EARLY_STOP_PATIENCE",
        "3",
    )
    names = [type(h).__name__ for h in SpermTrainer(cfg)._hooks]
    assert names == [
        "IterationTimer",
        "LRScheduler",
        "PeriodicCheckpointer",
        "ValidationLoss",  # stores validation_loss ...
        "EvalHook",  # ... and the metrics, from the same round's pass
        "SpermBestCheckpointer",  # reads them
        "BestValLossCheckpointer",
        "EarlyStopping",
        "PeriodicWriter",  # writes everything stored at the iteration
        "ResultsTable",
        "TrainingPlots",
    ]


def _round_in_process(config_file: str, opts: list[str], val: tuple, out_file: str) -> None:
    """Worker (each spawned process): register the val split, run one round, rank 0 saves it."""
    from detectron2.utils import comm

    from sperm_d2.data.register import register_split

    torch.set_num_threads(1)
    register_split(*val, ["good", "bad"])
    cfg = _cfg(out_file + ".out", val[0], *opts)
    from sperm_d2.engine.val_round import build_val_loader

    model = _model(cfg)
    with EventStorage(0):
        result = _one_pass(cfg, model)
    images = sum(len(batch) for batch in build_val_loader(cfg, val[0], model, 2))
    shards = comm.all_gather(images)
    if comm.is_main_process():
        torch.save((*result, shards), out_file)


@pytest.mark.slow
def test_two_processes_split_the_round_and_agree(tiny_dataset, tmp_path) -> None:
    from sperm_d2.engine.distributed import launch_processes

    val = ("tinyshard_val", str(tiny_dataset.jsons["val"]), str(tiny_dataset.root))
    opts = [*SAMPLE_ALL, "SPERM.EVAL_BATCH_SIZE", "2"]
    out = str(tmp_path / "round.pt")
    launch_processes(_round_in_process, 2, dist_url="auto", args=(str(INSTANT), opts, val, out))
    losses, metrics, shards = torch.load(out, weights_only=False)
    assert shards == [2, 2]  # each process took its half
    cfg = _cfg(tmp_path, tiny_dataset.names["val"], *opts)
    with EventStorage(0):
        expected_losses, expected_metrics = _one_pass(cfg, _model(cfg))
    assert losses == pytest.approx(expected_losses, rel=1e-5)
    assert metrics == pytest.approx(expected_metrics, rel=1e-5, nan_ok=True)
    assert metrics["pixellib/images"] + metrics["pixellib/empty_images"] == 4
