"""Build the one config object a run uses: detectron2 defaults + SPERM keys + YAML + overrides."""

import logging
import os
from typing import Sequence

import torch
from detectron2.config import CfgNode, get_cfg

from sperm_d2.config.defaults import add_sperm_config

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config file or override that cannot be applied (unknown key, bad value, missing file)."""


def get_sperm_cfg() -> CfgNode:
    """Return a fresh config with detectron2's defaults and the project's ``SPERM`` keys."""
    cfg = get_cfg()
    add_sperm_config(cfg)
    return cfg


def setup_cfg(
    config_file: str | None = None, opts: Sequence[str] = (), freeze: bool = True
) -> CfgNode:
    """Build a run's config: defaults, then ``config_file``, then ``KEY VALUE`` ``opts``.

    A CUDA device asked for on a machine without one falls back to the CPU (with a warning).

    Raises:
        ConfigError: the file is missing or holds/overrides a key that does not exist, with the
            file (or "command line") and the key named in one line.
    """
    cfg = get_sperm_cfg()
    if config_file:
        if not os.path.isfile(config_file):
            raise ConfigError(f"{config_file}: config file not found")
        try:
            cfg.merge_from_file(config_file)
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            raise ConfigError(f"{config_file}: {_one_line(e)}") from e
    if opts:
        if len(opts) % 2:
            raise ConfigError(f"command line: overrides come as KEY VALUE pairs, got {list(opts)}")
        try:
            cfg.merge_from_list(list(opts))
        except (KeyError, ValueError, AssertionError, TypeError) as e:
            raise ConfigError(f"command line: {_one_line(e)}") from e
    _fall_back_to_cpu(cfg)
    if freeze:
        cfg.freeze()
    return cfg


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
