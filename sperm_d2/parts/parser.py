"""``PartParser``: a trained part segmenter run on whole images, its parts given to each head.

Loaded from a part run folder (``config.yaml`` + ``model_best.pth``, as ``--parts RUN`` or
``SPERM.PARTS.RUN`` name it); :meth:`segment` gives a field's label map, :meth:`parse` the
parts of each detected head (:func:`sperm_d2.parts.assign.assign_parts`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from detectron2.config import CfgNode
from detectron2.modeling import build_model

from sperm_d2.config import setup_cfg
from sperm_d2.errors import InputError
from sperm_d2.parts import is_part_segmenter
from sperm_d2.parts.assign import assign_parts
from sperm_d2.precision import autocast, use_bf16
from sperm_d2.weights_io import load_model_weights

#: checkpoints tried, in order, in a part run folder
RUN_CHECKPOINTS = ("model_best.pth", "model_final.pth")


def part_run(run_dir: str | os.PathLike) -> tuple[CfgNode, Path]:
    """(config, checkpoint) of a part segmenter's run folder; ``InputError`` in one line when it
    is not one."""
    run_dir = Path(run_dir)
    config = run_dir / "config.yaml"
    if not config.is_file():
        raise InputError(f"{run_dir}: not a run folder (no config.yaml)")
    cfg = setup_cfg(str(config))
    if not is_part_segmenter(cfg):
        raise InputError(
            f"{run_dir}: not a part segmenter run (MODEL.META_ARCHITECTURE is "
            f"{cfg.MODEL.META_ARCHITECTURE}, not SpermPartSegmenter)"
        )
    for name in RUN_CHECKPOINTS:
        if (run_dir / name).is_file():
            return cfg, run_dir / name
    raise InputError(f"{run_dir}: no checkpoint ({', '.join(RUN_CHECKPOINTS)}) in the run folder")


class PartParser:
    """The part segmenter on the CPU (or GPU), at ``SPERM.INFER_PRECISION``."""

    def __init__(self, cfg: CfgNode, weights: str | os.PathLike, source: str = "") -> None:
        cfg = cfg.clone()
        cfg.defrost()
        if not torch.cuda.is_available():
            cfg.MODEL.DEVICE = "cpu"
        cfg.freeze()
        self.cfg, self.source = cfg, str(source or weights)
        self.class_names = tuple(cfg.SPERM.CLASSES)
        self.bf16 = use_bf16(cfg.SPERM.INFER_PRECISION, cfg.MODEL.DEVICE)
        self.model = build_model(cfg).eval()
        load_model_weights(self.model, weights)  # as data, whole: no pickled code runs

    @classmethod
    def from_run(cls, run_dir: str | os.PathLike) -> "PartParser":
        cfg, weights = part_run(run_dir)
        return cls(cfg, weights, source=str(run_dir))

    def probabilities(self, image: np.ndarray) -> np.ndarray:
        """(K + 1, H, W) float32 class probabilities of a BGR image (background first)."""
        # BGR as in training (parts.loader feeds the decoded BGR fields whatever INPUT.FORMAT)
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
        with torch.inference_mode(), autocast(self.bf16):
            return self.model({"images": x})["probs"][0].float().cpu().numpy()

    def segment(self, image: np.ndarray) -> np.ndarray:
        """(H, W) uint8 label map of a BGR image: 0 background, 1 + i for ``class_names[i]``."""
        return self.probabilities(image).argmax(0).astype(np.uint8)

    def parse(self, image: np.ndarray, heads: np.ndarray) -> list[dict[str, np.ndarray]]:
        """The parts of each head ``heads`` (N, H, W) of a BGR image (part -> bool mask)."""
        if len(heads) == 0:
            return []
        return assign_parts(self.segment(image), heads, self.class_names)
