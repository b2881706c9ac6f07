"""Shared test fixtures: tiny data built at test time, registered and removed again."""

import dataclasses
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config) -> None:
    """pytest hides the warnings the CLIs hide (sperm_d2.warnings_filter: one list, each entry
    with why it is harmless) and nothing else."""
    from sperm_d2.warnings_filter import KNOWN_HARMLESS

    for known in KNOWN_HARMLESS:
        message = known.message.replace(":", ".")  # ':' separates the fields of the ini line
        config.addinivalue_line("filterwarnings", f"ignore:{message}:{known.category.__name__}")


def grader_batch(n: int = 6, seed: int = 0) -> dict:
    """A grader training batch: ``n`` random 4-channel 32-px crops, labels alternating 0/1."""
    import torch

    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 4, 32, 32), generator=g, dtype=torch.uint8).float()
    return {"images": images, "labels": torch.arange(n) % 2}


def split_opts(root, prefix: str) -> list[str]:
    """Config overrides that register ``root``'s annotations/{train,val}.json as
    ``<prefix>_train`` / ``<prefix>_val`` and train / evaluate on them."""
    return [
        "SPERM.DATA_ROOT",
        str(root),
        "SPERM.DATASET_PREFIX",
        prefix,
        "DATASETS.TRAIN",
        f"('{prefix}_train',)",
        "DATASETS.TEST",
        f"('{prefix}_val',)",
    ]


def fine_tune_grader(config, weights, data_root, run: Path, *opts: str):
    """``train_net.py`` fine-tuning the grader ``config`` from the pretrained file ``weights`` for
    two iterations at a learning rate of ~0 (so the run keeps the file's weights) on the tiny
    split at ``data_root``; checks the run grades a head and returns ``(log, HeadGrader)``."""
    import subprocess
    import sys

    import numpy as np

    from sperm_d2.inference.grader import HeadGrader

    cmd = [
        sys.executable,
        str(REPO / "tools/train_net.py"),
        "--config-file",
        str(config),
        *split_opts(data_root, f"tiny{run.name}"),
        *("MODEL.WEIGHTS", str(weights), "SOLVER.BASE_LR", "1e-9"),
        *("SOLVER.IMS_PER_BATCH", "4", "SOLVER.MAX_ITER", "2", "SOLVER.WARMUP_ITERS", "0"),
        *("TEST.EVAL_PERIOD", "2", "SPERM.EPOCHS", "0", "SPERM.GRADER.CROP_SIZE", "32"),
        *("OUTPUT_DIR", str(run), "SEED", "3", *opts),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grader = HeadGrader.from_run(run)
    mask = np.zeros((1, 64, 64), bool)
    mask[0, 20:30, 15:40] = True
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    probs = grader.probabilities(image, mask)
    assert probs.shape == (1, 2) and np.isclose(probs.sum(), 1.0, atol=1e-4)
    return proc.stderr + proc.stdout, grader


@dataclasses.dataclass
class TinyDataset:
    """A tiny COCO dataset on disk, registered in detectron2 under ``names[split]``."""

    root: Path
    names: dict  # split -> registered dataset name
    jsons: dict  # split -> COCO json path


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> TinyDataset:
    """8 train + 4 val synthetic 96-px images (labelme -> COCO by sperm_d2.data), registered as
    ``tiny_train`` / ``tiny_val`` for the session."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from sperm_d2.data.labels import LabelMap
    from sperm_d2.data.prepare import prepare_dataset
    from sperm_d2.data.register import register_split
    from sperm_d2.data.synthetic_io import make_synthetic_dataset

    root = tmp_path_factory.mktemp("tiny_dataset")
    labelme_dir = make_synthetic_dataset(root / "labelme", num_images=12, size=96, seed=0)
    # 8/12 + 4/12: the stratified split's cumulative rounding gives exactly 8 train + 4 val.
    prepare_dataset(
        labelme_dir, root, LabelMap.load(REPO / "configs/labels/default.yaml"), ratios=(8, 4)
    )
    ds = TinyDataset(root=root, names={}, jsons={})
    for split in ("train", "val"):
        ds.jsons[split] = root / "annotations" / f"{split}.json"
        ds.names[split] = register_split(
            f"tiny_{split}", ds.jsons[split], root, ["good", "bad"], [[40, 200, 80], [230, 50, 50]]
        )
    yield ds
    for name in ds.names.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
