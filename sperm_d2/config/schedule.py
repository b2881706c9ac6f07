"""Derive iteration counts from a schedule given in epochs (``SPERM.EPOCHS``)."""

import math

from detectron2.config import CfgNode

from sperm_d2.config.setup import ConfigError


def apply_epoch_schedule(cfg: CfgNode, num_train_images: int) -> CfgNode:
    """Return a copy of ``cfg`` with MAX_ITER, STEPS and EVAL_PERIOD derived from SPERM.EPOCHS.

    One epoch is ``ceil(num_train_images / SOLVER.IMS_PER_BATCH)`` iterations. With
    ``SPERM.EPOCHS == 0`` the copy is unchanged. STEPS are ``SPERM.STEP_FRACTIONS`` of MAX_ITER;
    EVAL_PERIOD is ``SPERM.EVAL_EVERY_EPOCHS`` epochs; the warm-up is
    shortened to at most a tenth of the schedule so tiny schedules still reach the base LR.
    """
    cfg = cfg.clone()
    if cfg.SPERM.EPOCHS <= 0:
        return cfg
    if num_train_images <= 0:
        raise ConfigError(f"SPERM.EPOCHS={cfg.SPERM.EPOCHS} needs a non-empty training set")
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    iters_per_epoch = math.ceil(num_train_images / cfg.SOLVER.IMS_PER_BATCH)
    max_iter = cfg.SPERM.EPOCHS * iters_per_epoch
    cfg.SOLVER.MAX_ITER = max_iter
    cfg.SOLVER.STEPS = tuple(
        sorted(
            {
                int(f * max_iter)
                for f in cfg.SPERM.STEP_FRACTIONS
                if 0 < int(f * max_iter) < max_iter
            }
        )
    )
    cfg.SOLVER.WARMUP_ITERS = min(cfg.SOLVER.WARMUP_ITERS, max_iter // 10)
    if cfg.SPERM.EVAL_EVERY_EPOCHS > 0:
        cfg.TEST.EVAL_PERIOD = cfg.SPERM.EVAL_EVERY_EPOCHS * iters_per_epoch
    if was_frozen:
        cfg.freeze()
    return cfg
