"""Build the one config object a run uses: detectron2 defaults + SPERM keys + YAML + overrides."""

import logging
import re
from typing import Sequence

import torch
import yaml
from detectron2.config import CfgNode, get_cfg

from sperm_d2.config.defaults import add_sperm_config
from sperm_d2.config.validate import ConfigCheckError, check_values, check_yaml_chain, value_at
from sperm_d2.errors import SpermInputError
from sperm_d2.point_rend import add_point_rend_config

logger = logging.getLogger(__name__)


class ConfigError(SpermInputError, ValueError):
    """A config file or override that cannot be applied (unknown key, bad value, missing file)."""


#: the keys that follow ``SPERM.CLASSES`` unless a config file or override states them (the
#: box head's classes and PointRend's point head, which predicts one mask per class)
CLASS_COUNT_KEYS = ("MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.POINT_HEAD.NUM_CLASSES")


def get_sperm_cfg() -> CfgNode:
    """Return a fresh config with detectron2's defaults, PointRend's keys (detectron2's
    ``projects/PointRend``: ``MODEL.ROI_MASK_HEAD.NAME "SpermPointRendMaskHead"`` refines the mask
    outline point by point) and the project's ``SPERM`` keys (the class counts of
    :data:`CLASS_COUNT_KEYS` counting ``SPERM.CLASSES``)."""
    cfg = get_cfg()
    add_point_rend_config(cfg)
    add_sperm_config(cfg)
    _count_classes(cfg, stated=set())
    return cfg


def _count_classes(cfg: CfgNode, stated: set[str]) -> None:
    """Set every key of :data:`CLASS_COUNT_KEYS` that ``stated`` lacks to ``len(SPERM.CLASSES)``."""
    if not isinstance(cfg.SPERM.CLASSES, (list, tuple)):
        return
    for key in CLASS_COUNT_KEYS:
        if key not in stated:
            node_path, name = key.rsplit(".", 1)
            node = cfg
            for part in node_path.split("."):
                node = node[part]
            node[name] = len(cfg.SPERM.CLASSES)


def _whole_numbers_as_floats(cfg: CfgNode, opts: Sequence[str]) -> list[str]:
    """``KEY 1`` -> ``KEY 1.0`` where ``KEY``'s default is a float: yacs refuses an int for a
    float key ("Type mismatch"), though ``SPERM.MASK_SCORE_POWER 1`` means 1.0."""
    out = list(opts)
    for i in range(0, len(out) - 1, 2):
        node, value = value_at(cfg, str(out[i])), out[i + 1]
        if isinstance(node, float) and isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value):
            out[i + 1] = f"{value}.0"
    return out


def setup_cfg(
    config_file: str | None = None, opts: Sequence[str] = (), freeze: bool = True
) -> CfgNode:
    """Build a run's config: defaults, then ``config_file``, then ``KEY VALUE`` ``opts``.

    The classes have one source, ``SPERM.CLASSES``: ``MODEL.ROI_HEADS.NUM_CLASSES`` follows it
    unless a file or override states it, and then must agree with it. A CUDA device asked for on
    a machine without one falls back to the CPU (with a warning).

    Raises:
        ConfigError: in one line naming the file (or "command line") and the key: a missing,
            empty or malformed file or ``_BASE_``, an unknown key, a wrong type, a number that is
            not finite or out of range, a class count that disagrees with ``SPERM.CLASSES``
            (:func:`sperm_d2.config.validate.check_values`).
    """
    cfg = get_sperm_cfg()
    source = config_file or "command line"
    stated = set(list(opts)[0::2])
    if config_file:
        try:
            stated |= check_yaml_chain(config_file)
        except ConfigCheckError as e:
            raise ConfigError(str(e)) from None
        try:
            # check_yaml_chain has read the chain with safe_load already; allow_unsafe=False
            # keeps detectron2 from retrying a Python-tagged file with yaml.unsafe_load anyway
            cfg.merge_from_file(config_file, allow_unsafe=False)
        except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
            raise ConfigError(f"{config_file}: {_one_line(e)}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"{config_file}: invalid YAML ({_one_line(e)})") from None
    if opts:
        if len(opts) % 2:
            raise ConfigError(f"command line: overrides come as KEY VALUE pairs, got {list(opts)}")
        try:
            cfg.merge_from_list(_whole_numbers_as_floats(cfg, opts))
        except (KeyError, ValueError, AssertionError, TypeError, AttributeError) as e:
            raise ConfigError(f"command line: {_one_line(e)}") from e
        source = f"{config_file} + command line" if config_file else "command line"
    _count_classes(cfg, stated)
    try:
        check_values(cfg, source)
    except ConfigCheckError as e:
        raise ConfigError(str(e)) from None
    _fall_back_to_cpu(cfg)
    if freeze:
        cfg.freeze()
    return cfg


def check_training_cfg(cfg: CfgNode, source: str) -> None:
    """What training needs on top of :func:`setup_cfg`'s checks (positive learning rate, batch
    and schedule). Raises :class:`ConfigError`."""
    try:
        check_values(cfg, source, training=True)
    except ConfigCheckError as e:
        raise ConfigError(str(e)) from None


def _fall_back_to_cpu(cfg: CfgNode) -> None:
    """detectron2 defaults to MODEL.DEVICE "cuda"; on a machine without one, run on the CPU."""
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning(
            "MODEL.DEVICE=%s but no CUDA device is available: using cpu", cfg.MODEL.DEVICE
        )
        cfg.MODEL.DEVICE = "cpu"


def _one_line(e: BaseException) -> str:
    """yacs messages name the key but span lines and quote reprs; keep them on one line."""
    msg = str(e.args[0]) if e.args else str(e)
    return " ".join(msg.split())
