"""The benchmark's training step: ``tools/train_net.py`` into a run folder stamped with its
command, so that a rerun reuses a finished training and resumes a killed one, and never mixes
two trainings in one folder."""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Sequence

from sperm_d2.atomic import write_json_atomic
from sperm_d2.benchmark.results import is_finite
from sperm_d2.benchmark.runner import REPO, Runner, StepError, quote

logger = logging.getLogger(__name__)

#: file in the run folder: ``{"command": train_stamp(cmd), "finished": bool}``
STAMP = "benchmark_train.json"
#: train_net.py arguments whose next token is a folder or a file (absolute in the stamp)
PATH_KEYS = ("SPERM.DATA_ROOT", "OUTPUT_DIR", "MODEL.WEIGHTS")


def schedule_opts(max_iter: int | None) -> list[str]:
    """SOLVER/TEST overrides for ``--max-iter``: LR steps at 73 % and 90 %, 5 evaluations."""
    if max_iter is None:
        return []
    steps = tuple(sorted({s for s in (int(0.73 * max_iter), int(0.9 * max_iter)) if 0 < s}))
    period = max(1, max_iter // 5)
    return [
        "SOLVER.MAX_ITER",
        str(max_iter),
        "SOLVER.STEPS",
        str(steps),
        "SOLVER.WARMUP_ITERS",
        str(min(100, max_iter // 10)),
        "SOLVER.CHECKPOINT_PERIOD",
        str(period),
        "TEST.EVAL_PERIOD",
        str(period),
    ]


def train_stamp(cmd: Sequence[str], repo: Path = REPO) -> str:
    """What identifies a training: its command (without the interpreter) with the data and run
    folders and the weights file made absolute (relative ones are relative to ``repo``, where
    the tools run; URLs stay as they are), so a rerun that spells them differently still
    matches."""
    parts = [
        os.path.normpath(repo / c) if i and cmd[i - 1] in PATH_KEYS and c and "://" not in c else c
        for i, c in enumerate(cmd)
    ]
    return " ".join(quote(c) for c in parts[1:])


def reuse_or_resume(run_dir: Path, cmd: Sequence[str], repo: Path = REPO) -> bool:
    """True when ``run_dir`` holds a finished training by the same command (reuse it). A
    training killed part-way is resumed (``--resume``) when its command matches; a folder
    trained by another command is an error, never silently mixed."""
    stamp_path = run_dir / STAMP
    stamp = json.loads(stamp_path.read_text(encoding="utf-8")) if stamp_path.is_file() else None
    if stamp is None:
        if run_dir.is_dir() and any(run_dir.glob("*.pth")):
            raise StepError(
                f"{run_dir}: holds checkpoints of an unknown training (no {STAMP}); use "
                "another --output or delete the folder"
            )
        return False
    if stamp["command"] != train_stamp(cmd, repo):
        raise StepError(
            f"{run_dir}: trained by another command ({stamp['command']}); use another "
            "--output or delete the folder"
        )
    return bool(stamp.get("finished")) and (run_dir / "model_final.pth").is_file()


def train_step(
    run: Runner,
    args: argparse.Namespace,
    name: str,
    data_root: Path,
    run_dir: Path,
    opts: Sequence[str],
    grader: bool = False,
) -> dict:
    """tools/train_net.py into ``run_dir``: the detector (``args.config``, ``--max-iter``
    schedule, ``opts`` then ``args.opts``) or, with ``grader``, the head grader
    (``args.grader_config``, ``--grader-epochs``, ``opts`` then ``args.grader_opts``); returns
    wall time and the measured s/iter. A finished training by the same command is reused; a
    killed one resumes from its last checkpoint."""
    if grader:
        epochs = [] if args.grader_epochs is None else ["SPERM.EPOCHS", str(args.grader_epochs)]
        extra = [*epochs, *opts, *getattr(args, "grader_opts", [])]
        config = args.grader_config
    else:
        config, extra = args.config, [*schedule_opts(args.max_iter), *opts, *args.opts]
    cmd = [
        sys.executable,
        "tools/train_net.py",
        "--config-file",
        config,
        "SPERM.DATA_ROOT",
        run.rel(data_root),
        "OUTPUT_DIR",
        run.rel(run_dir),
        *extra,
    ]
    resumable = [*cmd[:2], "--resume", *cmd[2:]]
    if reuse_or_resume(run_dir, cmd, run.repo):
        logger.info("  reusing the finished training in %s", run_dir)
        run.record(resumable, "finished by an earlier run of this benchmark: reused")
        return {
            "run_dir": str(run_dir),
            "train_wall_s": None,
            "reused": True,
            **iteration_time(run_dir),
        }
    stamp = {"command": train_stamp(cmd, run.repo), "finished": False}
    write_json_atomic(run_dir / STAMP, stamp)
    t0 = time.perf_counter()
    run(resumable, f"{name}_train")
    write_json_atomic(run_dir / STAMP, {**stamp, "finished": True})
    return {
        "run_dir": str(run_dir),
        "train_wall_s": round(time.perf_counter() - t0, 1),
        **iteration_time(run_dir),
    }


def iteration_time(run_dir: Path) -> dict:
    """Median training s/iter (detectron2's ``time``) and the last iteration from metrics.json."""
    # imported here: sperm_d2.engine imports detectron2, which the rest of the benchmark
    # (argument checks, the table) does not need
    from sperm_d2.engine.metrics_outputs import read_metrics

    rows = read_metrics(run_dir / "metrics.json")
    # detectron2's IterationTimer leaves out the first iterations (warm-up): None for tiny runs
    times = [r["time"] for r in rows.values() if is_finite(r.get("time"))]
    trained = [it for it, r in rows.items() if "total_loss" in r]
    return {
        "s_per_iter": round(statistics.median(times), 3) if times else None,
        "iterations": (max(trained) + 1) if trained else None,
    }
