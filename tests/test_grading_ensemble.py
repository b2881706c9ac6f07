"""SpermGraderEnsemble: K graders as one model (members independent, probabilities averaged),
trained by train_net.py into one run folder that HeadGrader and infer.py's checks accept."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from sperm_d2.config import setup_cfg
from sperm_d2.grading import SpermGraderEnsemble, SpermHeadGrader, is_grader

from .conftest import REPO, grader_batch, split_opts

GRADER_INSTANT = REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml"
ENSEMBLE_OPTS = ["MODEL.META_ARCHITECTURE", "SpermGraderEnsemble", "SPERM.GRADER.ENSEMBLE_SIZE"]


def _ensemble(size: int = 3, *opts: str) -> SpermGraderEnsemble:
    cfg = setup_cfg(str(GRADER_INSTANT), [*ENSEMBLE_OPTS, str(size), *opts])
    assert is_grader(cfg)
    from detectron2.modeling import build_model

    return build_model(cfg)


def test_members_start_apart_and_the_ensemble_averages_them() -> None:
    torch.manual_seed(0)
    model = _ensemble(3).eval()
    assert len(model.members) == 3 and all(isinstance(m, SpermHeadGrader) for m in model.members)
    w = [m.stem[0].weight for m in model.members]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])  # own random starts
    batch = grader_batch()
    with torch.no_grad():
        probs = model(batch)["probs"]
        each = torch.stack([m(batch)["probs"] for m in model.members])
    torch.testing.assert_close(probs, each.mean(0))
    torch.testing.assert_close(probs.sum(1), torch.ones(len(probs)))
    # the members disagree (else the ensemble would buy nothing)
    assert (each[0] - each[1]).abs().max() > 1e-4


def test_each_member_learns_from_its_own_loss_only() -> None:
    torch.manual_seed(1)
    model = _ensemble(2, "SPERM.GRADER.DROPOUT", "0.0").train()
    batch = grader_batch()
    out = model(batch)
    assert set(out) == {"loss_cls"}
    own = [m(batch)["loss_cls"] for m in model.members]  # no dropout: the same numbers
    torch.testing.assert_close(out["loss_cls"], own[0] + own[1])
    model.zero_grad()
    own[0].backward()  # member 0's loss moves member 0 only
    assert model.members[0].classifier.weight.grad.abs().sum() > 0
    assert model.members[1].classifier.weight.grad is None


def test_a_one_member_ensemble_is_the_single_grader() -> None:
    torch.manual_seed(2)
    ensemble = _ensemble(1).eval()
    single = SpermHeadGrader(setup_cfg(str(GRADER_INSTANT))).eval()
    single.load_state_dict({k.split(".", 2)[2]: v for k, v in ensemble.state_dict().items()})
    batch = grader_batch()
    with torch.no_grad():
        torch.testing.assert_close(ensemble(batch)["probs"], single(batch)["probs"])


def test_the_ensemble_size_is_checked_before_anything_is_built() -> None:
    from sperm_d2.config import ConfigError

    with pytest.raises(ConfigError, match="SPERM.GRADER.ENSEMBLE_SIZE"):
        setup_cfg(str(GRADER_INSTANT), [*ENSEMBLE_OPTS, "0"])


@pytest.mark.slow
def test_train_net_trains_one_run_folder_that_grades_and_infers(tiny_dataset, tmp_path) -> None:
    from sperm_d2.inference.grader import HeadGrader
    from sperm_d2.inference.model_source import check_model_source

    run = tmp_path / "ensemble"
    cmd = [
        sys.executable,
        str(REPO / "tools/train_net.py"),
        "--config-file",
        str(REPO / "configs/sperm_grader_ensemble_cpu.yaml"),
        *split_opts(tiny_dataset.root, "tinyens"),
        *("SOLVER.IMS_PER_BATCH", "8", "SOLVER.MAX_ITER", "4", "SOLVER.WARMUP_ITERS", "0"),
        *("SOLVER.CHECKPOINT_PERIOD", "2", "TEST.EVAL_PERIOD", "2", "SPERM.EPOCHS", "0"),
        *("SPERM.GRADER.CROP_SIZE", "32", "SPERM.GRADER.CHANNELS", "[8, 16]"),
        *("SPERM.GRADER.ENSEMBLE_SIZE", "2", "OUTPUT_DIR", str(run), "SEED", "3"),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "model_best.pth").is_file() and (run / "model_final.pth").is_file()
    # results.csv holds the evaluations only (iterations 2 and 4), not the members' losses
    rows = (run / "results.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["1", "4"], rows
    assert "member0" not in rows[0]
    assert "member0/loss_cls" in (run / "metrics.json").read_text()
    grader = HeadGrader.from_run(run)  # one run folder, as --grader takes it
    assert len(grader.models) == 1 and len(grader.models[0].members) == 2
    mask = np.zeros((1, 64, 64), bool)
    mask[0, 20:30, 15:40] = True
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    probs = grader.probabilities(image, mask)
    assert probs.shape == (1, 2) and np.isclose(probs.sum(), 1.0, atol=1e-4)
    # infer.py's model check accepts it as a detector's grader
    detector = REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml"
    weights = tmp_path / "detector.pth"
    from detectron2.modeling import build_model

    torch.save({"model": build_model(setup_cfg(str(detector))).state_dict()}, weights)
    src = check_model_source(config_file=str(detector), weights=str(weights), grader=str(run))
    assert src.grader_source == str(run)
