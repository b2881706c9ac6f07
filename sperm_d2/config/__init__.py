"""Config: detectron2's CfgNode plus the project's ``SPERM`` keys (one config object per run)."""

from sperm_d2.config.defaults import add_sperm_config
from sperm_d2.config.schedule import apply_epoch_schedule
from sperm_d2.config.setup import ConfigError, get_sperm_cfg, setup_cfg

__all__ = ["add_sperm_config", "apply_epoch_schedule", "ConfigError", "get_sperm_cfg", "setup_cfg"]
