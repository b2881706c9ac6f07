"""Calibrate a trained part segmenter run on val: choose its per-class logit biases
(:mod:`sperm_d2.parts.calibrate`) and write them into the run, so that ``infer.py --parts``,
``--eval-only`` and the benchmark use them with no flag.

The run's ``config.yaml`` gets ``SPERM.PARTS.LOGIT_BIAS`` (written atomically; a new training
into the folder writes its config afresh, without them: calibrate again after it), and
``calibration.json`` records the split, the checkpoint, the biases and the split's mean IoU on
the sampled pixels before and after. ``tools/calibrate_parts.py`` is the command.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch
import yaml
from detectron2.data import DatasetCatalog
from tqdm import tqdm

from sperm_d2.atomic import write_bytes_atomic, write_json_atomic
from sperm_d2.data import register_sperm_datasets
from sperm_d2.engine.part_trainer import PartTrainer
from sperm_d2.errors import InputError
from sperm_d2.parts.calibrate import PIXELS_PER_IMAGE, choose_logit_bias, sample_stride
from sperm_d2.parts.evaluator import scored_parts
from sperm_d2.parts.parser import PartModel, part_run

logger = logging.getLogger(__name__)

#: what the calibration wrote, in the run folder
CALIBRATION_FILE = "calibration.json"


def collect_logits(
    model: torch.nn.Module, loader, budget: int = PIXELS_PER_IMAGE
) -> tuple[np.ndarray, np.ndarray]:
    """(logits (P, K + 1) float32, targets (P,) int64) on a regular grid of each image of
    ``loader``'s batches (at most ``budget`` pixels an image; the logits inference averages,
    over the ``SPERM.PARTS.TTA`` views, without the biases)."""
    logits, targets = [], []
    model.eval()
    with torch.inference_mode():
        for batch in tqdm(loader, desc="calibration", unit="batch"):
            images = batch["images"]
            step = sample_stride(images.shape[-2], images.shape[-1], budget)
            out = model.test_logits(images)[..., ::step, ::step]
            logits.append(out.permute(0, 2, 3, 1).reshape(-1, out.shape[1]).float().cpu().numpy())
            targets.append(batch["targets"][..., ::step, ::step].reshape(-1).long().numpy())
    if not logits:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(logits), np.concatenate(targets)


def write_logit_bias(config: Path, bias: np.ndarray) -> None:
    """Set ``SPERM.PARTS.LOGIT_BIAS`` in the run's ``config`` (a resolved dump), atomically."""
    doc = yaml.safe_load(config.read_text(encoding="utf-8"))
    doc.setdefault("SPERM", {}).setdefault("PARTS", {})["LOGIT_BIAS"] = [
        round(float(b), 4) for b in bias
    ]
    write_bytes_atomic(config, yaml.safe_dump(doc).encode("utf-8"))


def calibrate_part_run(
    run_dir: str | os.PathLike,
    dataset: str | None = None,
    weights: str | os.PathLike | None = None,
) -> dict:
    """Choose the run's logit biases on ``dataset`` (default: the run's first ``DATASETS.TEST``,
    its val split) with ``weights`` (default: its best, else final, checkpoint), write them into
    the run and return what ``calibration.json`` holds.

    Raises:
        InputError: in one line: not a part segmenter run, an unreadable checkpoint (the run's or
            ``weights``), no such dataset, an empty split.
    """
    run_dir = Path(run_dir)
    cfg, checkpoint = part_run(run_dir, weights)  # checkpoints read as data, checked first
    register_sperm_datasets(cfg)
    given = dataset
    dataset = dataset or (cfg.DATASETS.TEST[0] if cfg.DATASETS.TEST else "")
    if dataset not in DatasetCatalog.list():
        ours = (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)  # the run's splits, and any sperm_*
        names = [n for n in DatasetCatalog.list() if n in ours or n.startswith("sperm")]
        known = ", ".join(names) or "none"
        registered = f"registered from SPERM.DATA_ROOT {cfg.SPERM.DATA_ROOT!r}: {known}"
        if given:
            raise InputError(f"--dataset {dataset}: no such split for {run_dir} ({registered})")
        raise InputError(
            f"{run_dir}: no dataset {dataset!r} (its DATASETS.TEST) to calibrate on "
            f"({registered}); give --dataset"
        )
    model = PartModel(cfg, checkpoint, source=str(run_dir)).model  # weights load as data
    logits, targets = collect_logits(model, PartTrainer.build_test_loader(cfg, dataset))
    if not len(targets):
        raise InputError(f"{run_dir}: {dataset} holds nothing to calibrate on")
    names = list(cfg.SPERM.CLASSES)
    bias, before, after = choose_logit_bias(logits, targets, names, scored_parts(cfg))
    write_logit_bias(run_dir / "config.yaml", bias)
    result = {
        "dataset": dataset,
        "weights": str(checkpoint),
        "classes": ["background", *names],
        "logit_bias": [round(float(b), 4) for b in bias],
        "pixels": int(len(targets)),
        "mIoU_before": before,
        "mIoU_after": after,
    }
    write_json_atomic(run_dir / CALIBRATION_FILE, result)
    logger.info(
        "%s: logit biases %s chosen on %s: mIoU %.2f -> %.2f (%d sampled pixels)",
        run_dir,
        result["logit_bias"],
        dataset,
        before,
        after,
        len(targets),
    )
    return result
