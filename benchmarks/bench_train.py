#!/usr/bin/env python
"""Training speed: SpermTrainer vs plain detectron2 DefaultTrainer, and data loader vs model.

Both trainers run the same config, data and number of iterations in this process, alternating
(plain, ours, plain, ours, ...) so that load from other processes hits both alike. Evaluation and
validation loss are switched off (DATASETS.TEST empty): the ratio is the cost of everything else
our trainer adds (augmentations, crash-safe checkpoints, best-model/report hooks, writers).
Then the train loader alone (images/s) and the model's forward+backward alone (images/s).

Usage:
    python benchmarks/bench_train.py --config-file configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml \
        --iters 20 --rounds 2 SPERM.DATA_ROOT datasets/sperm
"""

import argparse
import itertools
import statistics
import tempfile
import time

import torch
from detectron2.engine import DefaultTrainer, HookBase
from detectron2.utils.events import EventStorage
from detectron2.utils.logger import setup_logger

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.engine.run import prepare_config
from sperm_d2.engine.trainer import SpermTrainer


class _StepClock(HookBase):
    """Records wall and process CPU time at the end of every iteration (registered last).

    CPU time is the steadier number on a shared machine: other processes' load stretches wall
    time but not (much) the CPU seconds this process spends per iteration.
    """

    def __init__(self) -> None:
        self.stamps: list[tuple[float, float]] = []

    def _stamp(self) -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def before_train(self) -> None:
        self.stamps = [self._stamp()]

    def after_step(self) -> None:
        self.stamps.append(self._stamp())


class PlainTrainer(DefaultTrainer):
    """detectron2's DefaultTrainer as it comes (no evaluator: evaluation is off here)."""


def time_trainer(trainer_cls, cfg, warmup: int) -> tuple[float, float]:
    """Mean (wall, CPU) seconds per iteration after ``warmup`` iterations, last one excluded."""
    trainer = trainer_cls(cfg)
    clock = _StepClock()
    trainer.register_hooks([clock])
    trainer.resume_or_load(resume=False)
    trainer.train()
    # The last step also writes model_final.pth (fsync'd by ours): a one-off, not per-iteration.
    pairs = list(zip(clock.stamps, clock.stamps[1:]))[warmup:-1]
    wall = statistics.mean(b[0] - a[0] for a, b in pairs)
    cpu = statistics.mean(b[1] - a[1] for a, b in pairs)
    return wall, cpu


def loader_images_per_s(cfg, batches: int) -> float:
    loader = iter(SpermTrainer.build_train_loader(cfg))
    next(loader)  # worker start-up is not throughput
    t = time.perf_counter()
    n = sum(len(b) for b in itertools.islice(loader, batches))
    return n / (time.perf_counter() - t)


def model_images_per_s(cfg, steps: int) -> float:
    model = SpermTrainer.build_model(cfg)
    model.train()
    optimizer = SpermTrainer.build_optimizer(cfg, model)
    batch = next(iter(SpermTrainer.build_train_loader(cfg)))
    with EventStorage():  # detectron2's losses log into an event storage
        for i in range(steps + 1):
            if i == 1:  # the first step pays one-off allocation costs
                t = time.perf_counter()
            loss = sum(model(batch).values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return steps * len(batch) / (time.perf_counter() - t)


def main(args: argparse.Namespace) -> None:
    setup_logger(name="sperm_d2")
    with tempfile.TemporaryDirectory() as tmp:
        opts = list(args.opts) + [
            "DATASETS.TEST",
            "()",
            "TEST.EVAL_PERIOD",
            "0",
            "SOLVER.MAX_ITER",
            str(args.iters + args.warmup),
            "SOLVER.CHECKPOINT_PERIOD",
            str(args.checkpoint_period),
            "SPERM.EPOCHS",
            "0",
            "OUTPUT_DIR",
            tmp,
        ]
        cfg = prepare_config(args.config_file, opts)
        print(f"torch threads: {torch.get_num_threads()}, config: {args.config_file}")
        plain, ours = [], []
        for r in range(args.rounds):
            plain.append(time_trainer(PlainTrainer, cfg, args.warmup))
            ours.append(time_trainer(SpermTrainer, cfg, args.warmup))
            print(
                f"round {r + 1}: plain {plain[-1][0]:.3f} s/iter wall, {plain[-1][1]:.3f} CPU-s; "
                f"ours {ours[-1][0]:.3f} s/iter wall, {ours[-1][1]:.3f} CPU-s",
                flush=True,
            )
        for i, kind in enumerate(("wall", "CPU")):
            p = statistics.median(x[i] for x in plain)
            o = statistics.median(x[i] for x in ours)
            print(
                f"{kind}: plain DefaultTrainer {p:.3f} s/iter ({1 / p:.3f} it/s), SpermTrainer "
                f"{o:.3f} s/iter ({1 / o:.3f} it/s); ratio ours/plain {o / p:.3f} "
                f"(overhead {100 * (o / p - 1):+.1f} %, median of {args.rounds} rounds)"
            )
        data = loader_images_per_s(cfg, args.loader_batches)
        model = model_images_per_s(cfg, args.model_steps)
        print(
            f"train data loader: {data:.1f} images/s; model forward+backward: {model:.2f} images/s"
        )
        print(f"loader/model ratio: {data / model:.1f} (> 1: the model is the bottleneck)")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", required=True)
    p.add_argument("--iters", type=int, default=20, help="timed iterations per trainer and round")
    p.add_argument("--warmup", type=int, default=3, help="untimed first iterations")
    p.add_argument("--rounds", type=int, default=2, help="alternating plain/ours rounds")
    p.add_argument("--checkpoint-period", type=int, default=10**6, help="SOLVER.CHECKPOINT_PERIOD")
    p.add_argument("--loader-batches", type=int, default=20)
    p.add_argument("--model-steps", type=int, default=5)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


if __name__ == "__main__":
    main(get_parser().parse_args())
