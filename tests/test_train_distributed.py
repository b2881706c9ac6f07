"""Two CPU processes over gloo through detectron2's launch: replicas hold identical weights."""

import pytest
import torch
from detectron2.utils import comm
from detectron2.utils.env import seed_all_rng

from sperm_d2.engine.distributed import launch_processes

from .conftest import REPO

INSTANT = REPO / "configs" / "quick_schedules" / "sperm_mask_rcnn_R_50_FPN_instant_test.yaml"


def _train_and_dump(config_file: str, opts: list[str], out_dir: str) -> None:
    """Worker (runs in each spawned process): 2 iterations, then this rank's weights to a file."""
    from sperm_d2.engine.trainer import SpermTrainer
    from sperm_d2.engine.training import prepare_config

    torch.set_num_threads(1)
    seed_all_rng(100 + comm.get_rank())  # different random init per rank: DDP must align them
    cfg = prepare_config(config_file, opts)
    trainer = SpermTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    model = trainer.model.module if hasattr(trainer.model, "module") else trainer.model
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(
        {"world_size": comm.get_world_size(), "state": state}, f"{out_dir}/rank{comm.get_rank()}.pt"
    )


@pytest.mark.slow
def test_two_gloo_processes_keep_identical_weights(tiny_dataset, tmp_path) -> None:
    opts = [
        "SPERM.DATA_ROOT",
        str(tiny_dataset.root),
        "SPERM.DATASET_PREFIX",
        "tinyddp",
        "DATASETS.TRAIN",
        "('tinyddp_train',)",
        "DATASETS.TEST",
        "()",
        "SOLVER.MAX_ITER",
        "2",
        "SOLVER.CHECKPOINT_PERIOD",
        "100",
        "OUTPUT_DIR",
        str(tmp_path / "run"),
    ]
    launch_processes(_train_and_dump, 2, dist_url="auto", args=(str(INSTANT), opts, str(tmp_path)))
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0["world_size"] == rank1["world_size"] == 2
    assert rank0["state"].keys() == rank1["state"].keys()
    for k, v in rank0["state"].items():
        assert torch.equal(v, rank1["state"][k]), f"{k} differs between ranks"
    assert (tmp_path / "run" / "model_final.pth").is_file()  # written by rank 0 only
