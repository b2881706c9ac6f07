"""Config checks that run before anything is built: one line naming the file or key.

* :func:`check_yaml_chain` reads a config file and its ``_BASE_`` chain with ``yaml.safe_load``
  first, so a missing, empty, malformed or self-including file (or one with Python tags, which
  detectron2 would otherwise load with ``yaml.unsafe_load``) fails in one line.
* :func:`check_values` refuses values that would only fail later, after a run folder exists:
  non-finite numbers, a non-positive learning rate or schedule, thresholds outside [0, 1],
  class colours that are not [R, G, B] triples, a device other than ``cpu`` or ``cuda[:N]``,
  a class count (``MODEL.ROI_HEADS.NUM_CLASSES``, PointRend's ``MODEL.POINT_HEAD.NUM_CLASSES``)
  that disagrees with ``SPERM.CLASSES``, a tile overlap that is not smaller than the tile
  (``SPERM.TILE``), and a word key whose value is not one of its choices (:data:`CHOICES`:
  precision, model-selection mode, the grader's mask mode, balance and test-time augmentation).
  Every config value is checked here, before a model, data loader or run folder exists; the
  modules that use a value trust it.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterator

import torch
import yaml
from detectron2.config import CfgNode

from sperm_d2.errors import SpermInputError
from sperm_d2.point_rend import MASK_HEAD, STOCK_MASK_HEAD

BASE_KEY = "_BASE_"
MAX_BASE_DEPTH = 16

#: keys that must lie in [0, 1] (checked when the key exists in this config)
UNIT_INTERVAL = (
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST",
    "MODEL.ROI_HEADS.NMS_THRESH_TEST",
    "MODEL.RPN.NMS_THRESH",
    "MODEL.ROI_HEADS.POSITIVE_FRACTION",
    "MODEL.RPN.POSITIVE_FRACTION",
    "SOLVER.WARMUP_FACTOR",
    "SPERM.CONFIDENCE_THRESHOLD",
    "SPERM.PIXELLIB_SCORE_THRESH",
    "SPERM.GRADER.HEAD_FRACTION",
    "SPERM.GRADER.DROPOUT",
    "SPERM.GRADER.LABEL_SMOOTHING",
    "SPERM.GRADER.GCE_Q",
    "SPERM.GRADER.AUG.SHIFT",
    "SPERM.PARTS.HEAD_FRACTION",
    "SPERM.PARTS.SCALE",
)
#: keys that must be > 0
POSITIVE = (
    "SOLVER.BASE_LR",
    "SOLVER.IMS_PER_BATCH",
    "SOLVER.CHECKPOINT_PERIOD",
    "SOLVER.GAMMA",
    "INPUT.MAX_SIZE_TRAIN",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE",
    "SPERM.EVAL_BATCH_SIZE",
)
#: keys that must be > 0 in every run (inference too)
POSITIVE_ALWAYS = (
    "SPERM.GRADER.CROP_SIZE",
    "SPERM.GRADER.MAX_SCALE",
    "SPERM.GRADER.TEST_BATCH_SIZE",
    "SPERM.GRADER.ENSEMBLE_SIZE",
    "SPERM.PARTS.CROP_SIZE",
    "SPERM.PARTS.SCALE",
)
#: keys that must be >= 0
NON_NEGATIVE = (
    "SOLVER.MAX_ITER",
    "SOLVER.WARMUP_ITERS",
    "SOLVER.WEIGHT_DECAY",
    "SOLVER.MOMENTUM",
    "TEST.EVAL_PERIOD",
    "DATALOADER.NUM_WORKERS",
    "INPUT.MIN_SIZE_TEST",
    "INPUT.MAX_SIZE_TEST",
    "MODEL.ROI_HEADS.NUM_CLASSES",
    "SPERM.EPOCHS",
    "SPERM.UM_PER_PX",
    "SPERM.TILE.SIZE",
    "SPERM.TILE.OVERLAP",
    "SPERM.INFER_BATCH_SIZE",
    "SPERM.GRADER.FIXED_SCALE",
    "SPERM.GRADER.MIXUP_ALPHA",
    "SPERM.GRADER.AUG.ROTATE_DEGREES",
    "SPERM.GRADER.AUG.HUE_DEGREES",
    "SPERM.AUG.HUE_DEGREES",
    "SPERM.MASK_SCORE_POWER",
    "SPERM.PARTS.MASK_JITTER",
    "SPERM.PARTS.ROTATE_DEGREES",
    "SPERM.PARTS.DICE_WEIGHT",
)
#: word keys -> the values they take (``grading/model.py:TTA_VIEWS``,
#: ``flip_views.VIEWS`` and ``precision.PRECISIONS`` are the same lists;
#: ``tests/test_config.py`` checks that they agree)
CHOICES = {
    "SPERM.INFER_PRECISION": ("auto", "bf16", "fp32"),
    "SPERM.INFER_TTA": ("none", "hflip", "rot180", "flips"),
    "SPERM.BEST_MODE": ("max", "min"),
    "SPERM.GRADER.MASK_MODE": ("channel", "suppress", "none"),
    "SPERM.GRADER.VIEW": ("aligned", "unaligned"),
    "SPERM.GRADER.BACKBONE": ("compact", "part_unet", "resnet18", "resnet34", "resnet50"),
    "SPERM.GRADER.BALANCE": ("sampler", "loss", "none"),
    "SPERM.GRADER.TTA": ("none", "rot180", "flips"),
    "SPERM.PARTS.INPUT": ("field", "head"),
    "SPERM.PARTS.TTA": ("none", "hflip", "rot180", "flips"),
}


class ConfigCheckError(SpermInputError, ValueError):
    """Raised by the checks; :func:`sperm_d2.config.setup_cfg` turns it into a ConfigError."""


def _load(path: str, included_by: str | None) -> Any:
    where = f" (the _BASE_ of {included_by})" if included_by else ""
    if os.path.isdir(path):
        raise ConfigCheckError(
            f"{path}: is a folder, not a config file{where} (a run folder's is its config.yaml)"
        )
    if not os.path.isfile(path):
        raise ConfigCheckError(f"{path}: config file not found{where}")
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except OSError as e:  # e.g. permission denied
        raise ConfigCheckError(f"{path}: cannot read ({e.strerror}){where}") from None
    except UnicodeDecodeError:
        raise ConfigCheckError(f"{path}: not a UTF-8 text file{where}") from None
    except yaml.constructor.ConstructorError as e:
        raise ConfigCheckError(
            f"{path}: unsupported YAML tag ({' '.join(str(e.problem).split())}); configs are "
            "plain YAML"
        ) from None
    except yaml.YAMLError as e:
        raise ConfigCheckError(f"{path}: invalid YAML ({' '.join(str(e).split())})") from None
    except RecursionError:
        raise ConfigCheckError(f"{path}: invalid YAML (nested too deeply)") from None
    except OSError as e:
        raise ConfigCheckError(f"{path}: cannot read ({e.strerror or e})") from None


def check_yaml_chain(config_file: str, _chain: tuple[str, ...] = ()) -> set[str]:
    """Check ``config_file`` and, recursively, its ``_BASE_`` files (resolved like detectron2:
    relative to the including file, ``~`` expanded); return the dotted keys the chain states."""
    real = os.path.realpath(config_file)
    if real in _chain:
        raise ConfigCheckError(f"{config_file}: _BASE_ includes itself (a cycle)")
    if len(_chain) >= MAX_BASE_DEPTH:
        raise ConfigCheckError(f"{config_file}: _BASE_ chain deeper than {MAX_BASE_DEPTH}")
    doc = _load(config_file, _chain[-1] if _chain else None)
    if doc is None:
        raise ConfigCheckError(f"{config_file}: empty config file")
    if not isinstance(doc, dict):
        raise ConfigCheckError(
            f"{config_file}: a config is a mapping of KEY: value, not {type(doc).__name__}"
        )
    stated = set(stated_keys(doc))
    bases = doc.get(BASE_KEY)
    if bases is None:
        return stated
    for base in bases if isinstance(bases, list) else [bases]:
        if not isinstance(base, str) or not base.strip():
            raise ConfigCheckError(f"{config_file}: _BASE_ {base!r} is not a file path")
        if base.startswith(("http://", "https://")):
            raise ConfigCheckError(f"{config_file}: _BASE_ {base} is a URL; use a local file")
        base = os.path.expanduser(base)
        if not os.path.isabs(base):
            base = os.path.join(os.path.dirname(config_file), base)
        stated |= check_yaml_chain(base, _chain + (real,))
    return stated


def stated_keys(doc: dict, prefix: str = "") -> Iterator[str]:
    """The dotted leaf keys of a raw YAML mapping (``_BASE_`` left out)."""
    for key, value in doc.items():
        if key == BASE_KEY and not prefix:
            continue
        if isinstance(value, dict):
            yield from stated_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def _walk(node: CfgNode, prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in node.items():
        if isinstance(value, CfgNode):
            yield from _walk(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def value_at(cfg: CfgNode, key: str) -> Any:
    """The value of dotted ``key`` in ``cfg`` (``None`` where a part of it is missing)."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, CfgNode) or part not in node:
            return None
        node = node[part]
    return node


def _numbers(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _numbers(v)


def _rgb_list(colors: Any) -> bool:
    """Whether ``colors`` is a non-empty list of [R, G, B] integer triples in [0, 255]."""
    return (
        isinstance(colors, (list, tuple))
        and len(colors) > 0
        and all(
            isinstance(c, (list, tuple))
            and len(c) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
            for c in colors
        )
    )


#: the device types the project runs on (``MODEL.DEVICE``)
DEVICE_TYPES = ("cpu", "cuda")


def _device_ok(device: Any) -> bool:
    """Whether ``device`` names a device of :data:`DEVICE_TYPES` (``cpu``, ``cuda``, ``cuda:1``)."""
    try:
        return isinstance(device, str) and torch.device(device).type in DEVICE_TYPES
    except (RuntimeError, ValueError):  # torch's own refusal of the string
        return False


def check_values(cfg: CfgNode, source: str, training: bool = False) -> None:
    """Refuse values that cannot make a sensible run (see module docstring); ``source`` names
    where the config came from. ``training`` adds what only training needs: a positive learning
    rate, batch and schedule, and class counts that agree."""
    for key, value in _walk(cfg):
        if any(not math.isfinite(v) for v in _numbers(value)):
            raise ConfigCheckError(f"{source}: {key} = {value!r} is not a finite number")
    rules = [
        (NON_NEGATIVE, lambda v: v >= 0, ">= 0"),
        (UNIT_INTERVAL, lambda v: 0 <= v <= 1, "in [0, 1]"),
        (POSITIVE_ALWAYS, lambda v: v > 0, "> 0"),
    ]
    if training:
        rules.append((POSITIVE, lambda v: v > 0, "> 0"))
    for keys, ok, want in rules:
        for key in keys:
            value = value_at(cfg, key)
            if value is not None and not all(ok(v) for v in _numbers(value)):
                raise ConfigCheckError(f"{source}: {key} = {value!r}, expected {want}")
    for key, allowed in CHOICES.items():
        value = value_at(cfg, key)
        if value is not None and value not in allowed:
            raise ConfigCheckError(f"{source}: {key} = {value!r}, use one of {', '.join(allowed)}")
    classes = list(value_at(cfg, "SPERM.CLASSES") or [])
    if not classes or len(set(classes)) != len(classes):
        raise ConfigCheckError(f"{source}: SPERM.CLASSES = {classes!r}, expected distinct names")
    colors = value_at(cfg, "SPERM.CLASS_COLORS")
    if colors is not None and not _rgb_list(colors):
        # drawn on every overlay: a malformed entry would fail mid-run, without the key's name
        raise ConfigCheckError(
            f"{source}: SPERM.CLASS_COLORS = {colors!r}, expected a list of [R, G, B] "
            "integers in [0, 255], one per class"
        )
    device = value_at(cfg, "MODEL.DEVICE")
    if device is not None and not _device_ok(device):
        # torch's own message lists two dozen device types this project cannot run on
        raise ConfigCheckError(f"{source}: MODEL.DEVICE = {device!r}, expected cpu or cuda[:N]")
    decay = value_at(cfg, "SPERM.EMA_DECAY")
    if decay is not None and not 0 <= decay < 1:
        raise ConfigCheckError(
            f"{source}: SPERM.EMA_DECAY = {decay!r}, expected 0 (off) <= decay < 1 "
            "(e.g. 0.999; 1 would never move from the first weights)"
        )
    tile, overlap = value_at(cfg, "SPERM.TILE.SIZE"), value_at(cfg, "SPERM.TILE.OVERLAP")
    if tile and overlap is not None and overlap >= tile:
        raise ConfigCheckError(
            f"{source}: SPERM.TILE.OVERLAP = {overlap} must be smaller than SPERM.TILE.SIZE "
            f"= {tile} (windows would not advance)"
        )
    for key in ("SPERM.PARTS.CLASS_WEIGHTS", "SPERM.PARTS.LOGIT_BIAS"):
        values = value_at(cfg, key)
        if values and len(values) != len(classes) + 1:
            raise ConfigCheckError(
                f"{source}: {key} has {len(values)} values; give one per class with background "
                f"first ({len(classes) + 1}) or none"
            )
    # Mask R-CNN's box head, PointRend's point head and the grader's classifier count SPERM.CLASSES
    for key in ("MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.POINT_HEAD.NUM_CLASSES"):
        num = value_at(cfg, key)
        if num is not None and num != len(classes):
            raise ConfigCheckError(
                f"{source}: {key} = {num} but SPERM.CLASSES has {len(classes)} ({classes}); "
                "make them agree (or leave NUM_CLASSES out: it follows SPERM.CLASSES)"
            )
    if not training:
        return
    if value_at(cfg, "MODEL.ROI_MASK_HEAD.NAME") == STOCK_MASK_HEAD:
        raise ConfigCheckError(
            f"{source}: MODEL.ROI_MASK_HEAD.NAME {STOCK_MASK_HEAD!r} stops a training on a batch "
            f"without a head; train with {MASK_HEAD!r} (the same head and weights, "
            "sperm_d2/point_rend.py)"
        )
    if cfg.SOLVER.MAX_ITER <= 0 and not value_at(cfg, "SPERM.EPOCHS"):
        raise ConfigCheckError(
            f"{source}: SOLVER.MAX_ITER = {cfg.SOLVER.MAX_ITER}, expected > 0 (or SPERM.EPOCHS)"
        )
    sizes = value_at(cfg, "INPUT.MIN_SIZE_TRAIN")
    if sizes is not None and not all(v > 0 for v in _numbers(sizes)):
        raise ConfigCheckError(f"{source}: INPUT.MIN_SIZE_TRAIN = {sizes!r}, expected sizes > 0")
