"""The grader's data loaders over cached head crops (``sperm_d2.grading.samples``).

Training: an endless stream of augmented batches of ``SOLVER.IMS_PER_BATCH`` crops (split over
the processes), drawn class-balanced with ``SPERM.GRADER.BALANCE "sampler"``, with mixup when
``MIXUP_ALPHA`` > 0. Test: the split's crops in order, ``TEST_BATCH_SIZE`` at a time, each
process taking its own shard (``inference_on_dataset`` gathers the results).
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.utils import comm

from sperm_d2.errors import InputError
from sperm_d2.grading.augment import augment_batch
from sperm_d2.grading.samples import HeadSamples, load_samples

logger = logging.getLogger(__name__)


def class_weights(counts: np.ndarray) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1 over the classes present (absent: 0)."""
    counts = np.asarray(counts, np.float64)
    w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    present = counts > 0
    return w / w[present].mean() if present.any() else w


def train_samples(cfg: CfgNode) -> HeadSamples:
    """The crops of every ``DATASETS.TRAIN`` split, concatenated."""
    parts = [load_samples(cfg, name) for name in cfg.DATASETS.TRAIN]
    return HeadSamples(
        images=np.concatenate([p.images for p in parts]),
        labels=np.concatenate([p.labels for p in parts]),
        sources=np.concatenate([p.sources for p in parts]),
    )


class GraderTrainLoader:
    """Endless iterator of training batch dicts (see ``SpermHeadGrader``)."""

    def __init__(self, cfg: CfgNode, samples: HeadSamples | None = None) -> None:
        self.cfg = cfg
        self.samples = samples if samples is not None else train_samples(cfg)
        if len(self.samples) == 0:
            raise InputError(
                f"{', '.join(cfg.DATASETS.TRAIN)}: no annotated heads to train the grader on"
            )
        self.num_classes = int(cfg.MODEL.ROI_HEADS.NUM_CLASSES)
        self.batch_size = max(1, cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size())
        counts = self.samples.class_counts(self.num_classes)
        balance = cfg.SPERM.GRADER.BALANCE  # one of sampler, loss, none (config/validate.py)
        # per-sample draw probabilities: equal per class ("sampler") or uniform
        if balance == "sampler":
            p = 1.0 / counts[self.samples.labels]
        else:
            p = np.ones(len(self.samples))
        self.p = p / p.sum()
        self.class_weights = (
            torch.as_tensor(class_weights(counts), dtype=torch.float32)
            if balance == "loss"
            else None
        )
        self.images = torch.from_numpy(self.samples.images).permute(0, 3, 1, 2)  # N, C, S, S
        self.labels = torch.from_numpy(self.samples.labels)
        # seeded from the process's seed (setup_run seeds numpy per rank)
        self.rng = np.random.default_rng(np.random.randint(2**31))
        self.gen = torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        logger.info(
            "grader training set: %d heads, per class %s, balance %s, %d per batch",
            len(self.samples),
            counts.tolist(),
            balance,
            self.batch_size,
        )

    def __iter__(self):
        alpha = float(self.cfg.SPERM.GRADER.MIXUP_ALPHA)
        while True:
            idx = torch.from_numpy(self.rng.choice(len(self.p), self.batch_size, p=self.p))
            x = augment_batch(self.images[idx].float(), self.cfg, self.gen)
            labels = self.labels[idx]
            targets = torch.nn.functional.one_hot(labels, self.num_classes).float()
            if alpha > 0:
                lam = float(self.rng.beta(alpha, alpha))
                perm = torch.from_numpy(self.rng.permutation(len(idx)))
                x = lam * x + (1 - lam) * x[perm]
                targets = lam * targets + (1 - lam) * targets[perm]
            batch = {"images": x, "labels": labels, "targets": targets}
            if self.class_weights is not None:
                batch["class_weights"] = self.class_weights
            yield batch


def test_batches(samples: HeadSamples, batch_size: int) -> list[dict]:
    """This process's shard of ``samples`` in batches of ``batch_size`` (a list: it has a len)."""
    rank, world = comm.get_rank(), comm.get_world_size()
    idx = np.arange(len(samples))[rank::world]
    images = torch.from_numpy(samples.images).permute(0, 3, 1, 2)
    labels = torch.from_numpy(samples.labels)
    return [
        {"images": images[idx[i : i + batch_size]], "labels": labels[idx[i : i + batch_size]]}
        for i in range(0, len(idx), batch_size)
    ]


def build_grader_test_loader(cfg: CfgNode, dataset_name: str) -> list[dict]:
    """The test batches of a registered split's head crops."""
    return test_batches(load_samples(cfg, dataset_name), cfg.SPERM.GRADER.TEST_BATCH_SIZE)
