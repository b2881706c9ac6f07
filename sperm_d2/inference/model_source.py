"""Check the model source of ``infer.py``/``evaluate.py`` before any model is built.

``--run`` (or ``--config-file`` + ``--weights``) and the head grader (``--grader`` or the run's
``SPERM.GRADER.RUN``) are resolved into configs and checkpoint paths, and every problem — a
missing folder, no ``config.yaml``, a missing, empty or garbage checkpoint, a grader or part
segmenter run given as the detector, a grader folder that is no grader run, classes that disagree
— is one ``InputError`` line (a ``ValueError``) naming the argument.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from detectron2.config import CfgNode

from sperm_d2.config import setup_cfg
from sperm_d2.errors import InputError
from sperm_d2.grading import GRADER_ARCHS, grades_detector, is_grader
from sperm_d2.inference.run_folder import RUN_CHECKPOINTS, find_run_weights
from sperm_d2.parts import is_part_segmenter
from sperm_d2.weights_io import CheckpointError, check_model_weights


@dataclasses.dataclass
class ModelSource:
    """A checked model source: configs and checkpoint paths, nothing built yet."""

    cfg: CfgNode
    weights: str  # checkpoint path; "" keeps random weights
    graders: list[tuple[CfgNode, str]] = dataclasses.field(default_factory=list)  # cfg, weights
    grader_source: str = ""  # the grader run folder(s), as given
    reads: list[Path] = dataclasses.field(default_factory=list)  # outputs may not overlap these


def _run_folder(run: str, flag: str) -> Path:
    p = Path(run)
    if not p.exists():
        raise InputError(f"{flag} {run}: no such folder")
    if not p.is_dir():
        raise InputError(f"{flag} {run}: is a file, not a training run folder")
    if not (p / "config.yaml").is_file():
        raise InputError(f"{flag} {run}: not a training run folder (no config.yaml)")
    return p


def _run_weights(run: Path, checkpoint: str | None, flag: str) -> str:
    """:func:`find_run_weights`, its failure worded for the argument that named the run."""
    try:
        return str(find_run_weights(run, checkpoint or ""))
    except FileNotFoundError:
        if checkpoint:
            raise InputError(
                f"--weights {checkpoint}: no such checkpoint in the run folder {run}"
            ) from None
        names = ", ".join(RUN_CHECKPOINTS)
        raise InputError(f"{flag} {run}: no checkpoint ({names}) in the run folder") from None


#: top-level parameter names a checkpoint of each model holds (a detector's weights given to the
#: grader, or the reverse, would otherwise load nothing and leave random weights, silently)
DETECTOR_KEYS = ("backbone.",)
GRADER_KEYS = ("stem.", "classifier.", "members.")


def _check_weights(path: str, label: str, prefixes: tuple[str, ...]) -> None:
    """``path`` read as a checkpoint of the model whose parameters start with ``prefixes``;
    ``label`` names it after its path in the one-line ``InputError`` (the argument that gave it,
    or the run it is the checkpoint of)."""
    try:
        check_model_weights(path, label, prefixes)
    except CheckpointError as e:
        raise InputError(str(e)) from None


def check_model_source(
    run: str | os.PathLike | None = None,
    config_file: str | None = None,
    weights: str | None = None,
    opts: Sequence[str] = (),
    grader: str | Sequence[str] | None = None,
) -> ModelSource:
    """Resolve and check a detector (run folder, or config file + weights) and its grader.

    ``grader``: a grader run folder, or several (an ensemble); ``None`` uses the detector
    config's ``SPERM.GRADER.RUN`` (when set; several folders separated by commas); "none" uses no
    grader. Raises ``InputError`` (``ConfigError`` for a bad config) in one line naming the
    argument (``--run``, ``--weights``, ``--grader``...) and the path.
    """
    if (run is None) == (config_file is None):
        raise InputError("give either --run or --config-file")
    if run is not None:
        run_dir = _run_folder(str(run), "--run")
        cfg = setup_cfg(str(run_dir / "config.yaml"), opts)
        _check_detector(cfg, str(run), run_dir)
        # the checkpoint --weights names in the run, else the run's own (model_best/model_final)
        flag = "--weights" if weights else "the --run checkpoint"
        weights = _run_weights(run_dir, weights, "--run")
        reads = [run_dir]
    else:
        cfg = setup_cfg(config_file, opts)
        _check_detector(cfg, config_file)
        flag = "--weights" if weights is not None else "MODEL.WEIGHTS"
        weights = cfg.MODEL.WEIGHTS if weights is None else weights
        reads = [Path(config_file)] + ([Path(weights)] if weights and "://" not in weights else [])
    where = str(run) if run is not None else config_file
    if weights:
        _check_weights(weights, flag, DETECTOR_KEYS)
    classes = list(cfg.SPERM.CLASSES)
    num = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    if cfg.MODEL.META_ARCHITECTURE == "GeneralizedRCNN" and num != len(classes):
        raise InputError(
            f"{where}: MODEL.ROI_HEADS.NUM_CLASSES = {num} but SPERM.CLASSES has {len(classes)} "
            f"({classes}); make them agree"
        )
    src = ModelSource(cfg, str(weights or ""), reads=reads)
    grader_flag = "--grader" if grader is not None else "SPERM.GRADER.RUN"
    if grader is None:
        grader = [g.strip() for g in cfg.SPERM.GRADER.RUN.split(",") if g.strip()]
    graders = [grader] if isinstance(grader, str) else list(grader)
    if [g.strip().lower() for g in graders] == ["none"]:
        graders = []
    for g in graders:
        _check_grader(src, g, grader_flag)
    src.grader_source = ", ".join(graders)
    return src


def _check_detector(cfg: CfgNode, where: str, run_dir: Path | None = None) -> None:
    """One ``InputError`` line when ``cfg`` (of the run folder or config file ``where``) is
    another model than a detector: a head grader, or a part segmenter (which ``train_net.py
    --eval-only`` evaluates, as README shows)."""
    if is_grader(cfg):
        raise InputError(f"{where}: a head-grader model, not a detector; pass it as --grader")
    if is_part_segmenter(cfg):
        config = run_dir / "config.yaml" if run_dir is not None else where
        try:
            weights = find_run_weights(run_dir) if run_dir is not None else "<checkpoint>"
        except FileNotFoundError:
            weights = run_dir / RUN_CHECKPOINTS[0]
        raise InputError(
            f"{where}: a part segmenter, not a detector; give it to infer.py as --parts, and "
            f"evaluate it with tools/train_net.py --config-file {config} --eval-only "
            f"MODEL.WEIGHTS {weights}"
        )


def _check_grader(src: ModelSource, grader: str, flag: str) -> None:
    run_dir = _run_folder(grader, flag)
    gcfg = setup_cfg(str(run_dir / "config.yaml"))
    if not is_grader(gcfg):
        raise InputError(
            f"{flag} {grader}: not a head-grader run (MODEL.META_ARCHITECTURE is "
            f"{gcfg.MODEL.META_ARCHITECTURE}, not one of {'/'.join(GRADER_ARCHS)})"
        )
    weights = _run_weights(run_dir, None, flag)
    _check_weights(weights, f"the {flag} checkpoint", GRADER_KEYS)
    classes, detector = list(gcfg.SPERM.CLASSES), list(src.cfg.SPERM.CLASSES)
    if not grades_detector(classes, detector):
        raise InputError(
            f"{flag} {grader}: grader classes {classes} differ from the detector's "
            f"SPERM.CLASSES {detector}"
        )
    if "bad" not in classes:
        raise InputError(f"{flag} {grader}: the grader's classes {classes} lack 'bad'")
    src.graders.append((gcfg, weights))
    src.reads.append(run_dir)
