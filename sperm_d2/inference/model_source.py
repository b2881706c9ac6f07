"""Check the model source of ``infer.py``/``evaluate.py`` before any model is built.

``--run`` (or ``--config-file`` + ``--weights``) and the head grader (``--grader`` or the run's
``SPERM.GRADER.RUN``) are resolved into configs and checkpoint paths, and every problem — a
missing folder, no ``config.yaml``, a missing, empty or garbage checkpoint, a grader folder that
is no grader run, classes that disagree — is one ``InputError`` line (a ``ValueError``)
naming the argument.
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
from sperm_d2.weights_io import CheckpointError, check_weights_file


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


def _check_weights(path: str, flag: str, prefixes: tuple[str, ...]) -> None:
    try:
        obj = check_weights_file(path)  # read as data: a file that would run code is refused
    except CheckpointError as e:
        raise InputError(str(e).replace("MODEL.WEIGHTS", flag)) from None
    if obj is None or Path(path).suffix == ".pkl":
        return  # a URL; detectron2 converts model-zoo pickles' names itself
    state = obj.get("model", obj)
    keys = [k for k in state if isinstance(k, str)] if isinstance(state, dict) else []
    if not any(k.startswith(prefixes) for k in keys):
        raise InputError(
            f"{flag} {path}: holds no weights of this model (no {'/'.join(prefixes)}* "
            f"parameters among its {len(keys)}); is it another model's checkpoint?"
        )


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
        weights = _run_weights(run_dir, weights, "--run")
        flag, reads = "--weights" if weights else "--run", [run_dir]
    else:
        cfg = setup_cfg(config_file, opts)
        flag = "--weights" if weights is not None else "MODEL.WEIGHTS"
        weights = cfg.MODEL.WEIGHTS if weights is None else weights
        reads = [Path(config_file)] + ([Path(weights)] if weights and "://" not in weights else [])
    where = str(run) if run is not None else config_file
    if is_grader(cfg):
        raise InputError(f"{where}: a head-grader model, not a detector; pass it as --grader")
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


def _check_grader(src: ModelSource, grader: str, flag: str) -> None:
    run_dir = _run_folder(grader, flag)
    gcfg = setup_cfg(str(run_dir / "config.yaml"))
    if not is_grader(gcfg):
        raise InputError(
            f"{flag} {grader}: not a head-grader run (MODEL.META_ARCHITECTURE is "
            f"{gcfg.MODEL.META_ARCHITECTURE}, not one of {'/'.join(GRADER_ARCHS)})"
        )
    weights = _run_weights(run_dir, None, flag)
    _check_weights(weights, flag, GRADER_KEYS)
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
