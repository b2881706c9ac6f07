"""The run folder of a training or evaluation (``OUTPUT_DIR``): the checks before anything is
written there (:func:`check_run`), its record (:func:`setup_run`: logging, seeds,
``config.yaml``, ``run_info.json``) and its removal when the run never started
(:func:`remove_run_folder`). :mod:`sperm_d2.engine.training` calls them around the trainer.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from detectron2.config import CfgNode
from detectron2.utils import comm
from detectron2.utils import logger as d2_logger
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

import sperm_d2
from sperm_d2.atomic import atomic_write, write_json_atomic
from sperm_d2.config import ConfigError
from sperm_d2.engine.checkpoint import can_resume
from sperm_d2.weights_io import check_weights_file

logger = logging.getLogger(__name__)


def check_run(cfg: CfgNode, args: argparse.Namespace) -> None:
    """The run folder can be made and the weights to start from are usable, before anything is
    written. Raises :class:`ConfigError` or :class:`CheckpointError` in one line."""
    out = Path(cfg.OUTPUT_DIR)
    if not cfg.OUTPUT_DIR:
        raise ConfigError("OUTPUT_DIR is empty; name the run folder")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"OUTPUT_DIR {out}: exists and is not a folder")
    anchor = out
    while not anchor.exists() and anchor != anchor.parent:
        anchor = anchor.parent
    if not anchor.is_dir() or not os.access(anchor, os.W_OK | os.X_OK):
        raise ConfigError(f"OUTPUT_DIR {out}: cannot write in {anchor}")
    resuming = args.resume and can_resume(out)
    if not args.eval_only and not args.resume and _holds_training(out):
        raise ConfigError(
            f"OUTPUT_DIR {out}: holds a training run already (its checkpoints would be "
            "overwritten); continue it with --resume, or name another OUTPUT_DIR"
        )
    if args.eval_only and not cfg.MODEL.WEIGHTS and not resuming:
        raise ConfigError("--eval-only needs MODEL.WEIGHTS (the checkpoint to evaluate)")
    if cfg.MODEL.WEIGHTS and not resuming:
        check_weights_file(cfg.MODEL.WEIGHTS)


def _holds_training(out: Path) -> bool:
    """Whether ``out`` holds a training's checkpoints (``last_checkpoint`` or ``model_*.pth``)."""
    return out.is_dir() and ((out / "last_checkpoint").is_file() or any(out.glob("model_*.pth")))


def setup_run(cfg: CfgNode, args: argparse.Namespace) -> int:
    """Logging, seeds, the run folder's ``config.yaml`` and ``run_info.json``; returns the seed.
    An ``--eval-only`` run writes ``eval_config.yaml`` and ``eval_info.json`` instead, so that
    evaluating a checkpoint in its training's folder (train_net.py's usage) keeps the training's
    own record."""
    out = Path(cfg.OUTPUT_DIR)
    rank = comm.get_rank()
    out.mkdir(parents=True, exist_ok=True)
    setup_logger(str(out), distributed_rank=rank, name="detectron2")
    setup_logger(str(out), distributed_rank=rank, name="sperm_d2", abbrev_name="sperm_d2")
    # A negative SEED draws one, which is logged and saved so the run can be repeated.
    seed = cfg.SEED if cfg.SEED >= 0 else random.SystemRandom().randrange(2**31)
    seed_all_rng(seed + rank)
    logger.info("rank %d of %d, seed %d (cfg.SEED=%d)", rank, comm.get_world_size(), seed, cfg.SEED)
    if comm.is_main_process():
        config_name, info_name = (
            ("eval_config.yaml", "eval_info.json")
            if args.eval_only
            else ("config.yaml", "run_info.json")
        )
        with atomic_write(out / config_name, "w", encoding="utf-8") as f:
            f.write(cfg.dump())
        write_json_atomic(
            out / info_name,
            {
                "sperm_d2_version": sperm_d2.__version__,
                "git_commit": _git_commit(),
                "torch": torch.__version__,
                "command": [sys.executable, *sys.argv],
                "config_file": args.config_file,
                "world_size": comm.get_world_size(),
                "seed": seed,
                "resume": bool(args.resume),
                "eval_only": bool(args.eval_only),
            },
        )
    return seed


def remove_run_folder(out: Path) -> None:
    """Delete a run folder this process made for a run that never started (closing the log
    files detectron2's ``setup_logger`` opened in it first)."""
    for name in ("detectron2", "sperm_d2", "fvcore"):
        log = logging.getLogger(name)
        for h in list(log.handlers):
            stream = getattr(h, "stream", None)
            path = getattr(h, "baseFilename", None) or getattr(stream, "name", None)
            if isinstance(path, str) and Path(path).resolve().is_relative_to(out.resolve()):
                log.removeHandler(h)
                h.close()
                if stream is not None and stream not in (sys.stdout, sys.stderr):
                    stream.close()
    # both are lru_cached: a later setup_logger call for this folder must open a new file
    for cached in (setup_logger, getattr(d2_logger, "_cached_log_stream", None)):
        if hasattr(cached, "cache_clear"):
            cached.cache_clear()
    shutil.rmtree(out, ignore_errors=True)
    logger.info("removed %s: the run did not start", out)


def _git_commit() -> str:
    """The source tree's git commit (with ``-dirty`` when modified), or "unknown" outside git."""
    repo = Path(sperm_d2.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit or "unknown"
