#!/usr/bin/env python
"""Training speed: SpermTrainer vs plain detectron2 DefaultTrainer, data loader vs model, and
the 2021 study's setting (``--study``).

Default mode (``--config-file``): both trainers run the same config, data and number of
iterations in this process, alternating (plain, ours, plain, ours, ...) so that load from other
processes hits both alike. Evaluation and validation loss are switched off (DATASETS.TEST
empty): the ratio is the cost of everything else our trainer adds (augmentations, crash-safe
checkpoints, best-model/report hooks, writers).
Then the train loader alone (images/s) and the model's forward+backward alone (images/s).

``--study``: the study's own setting, Mask R-CNN R-101-FPN at 512 px, batch 4 (its PixelLib /
TensorFlow 2.15 stack measured 13.9-15.2 s/iter on this machine type), nothing downloaded, in
two variants: the paper config's FrozenBN network (target <= 4.8 s/iter, a third of the study's)
and the GroupNorm scratch config the project trains from scratch (target < 13.9 s/iter). Each
runs the engine's own training step (``SimpleTrainer`` in fp32, ``CPUAutocastTrainer`` for
bf16, i.e. ``SOLVER.AMP.ENABLED`` on a CPU) with the SGD optimizer the trainer builds, on
synthetic 512-px scenes made here and loaded once (the loader is timed by the default mode).
The FrozenBN layers get per-channel statistics from the first batch
(:func:`sperm_d2.benchmark.study_setting.calibrate_frozen_bn`: random FrozenBN weights overflow),
so the RPN hands its post-NMS top-k to ROI heads that sample their full batch per image (the
table shows proposals, sampled ROIs and foreground ROIs per image). Convolution weights are in
channels-last layout (``--layout``). Variants and precisions alternate one iteration at a time.
One table: s/iter wall and CPU, the study's 13.9 s over ours, pass/fail against the target, and
each step's compute floor: its convolution and matmul FLOPs at the best rate this CPU's kernels
reach on large operands, measured in the same run (no step can run faster).
KEY VALUE overrides apply to every run; ``--lever "KEY VALUE ..."`` adds runs of each variant
with those overrides, alternated with the config as it is (a config lever, measured).

Usage:
    python benchmarks/bench_train.py --config-file configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml \
        --iters 20 --rounds 2 SPERM.DATA_ROOT datasets/sperm
    python benchmarks/bench_train.py --study --iters 2 --rounds 2
    python benchmarks/bench_train.py --study --variants gn --precisions bf16 --iters 1 \
        --lever "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE 256" --lever "MODEL.ROI_BOX_HEAD.NUM_CONV 2"
"""

import argparse
import dataclasses
import itertools
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import sperm_d2.cli_warnings  # noqa: F401 isort: skip (first: hides known-harmless warnings)

import torch
from detectron2.engine import DefaultTrainer, HookBase, SimpleTrainer
from detectron2.utils.events import EventStorage, get_event_storage
from detectron2.utils.logger import setup_logger

from sperm_d2.benchmark.study_setting import (
    STUDY_BATCH,
    STUDY_SIZE,
    calibrate_frozen_bn,
    gemm_peak,
    step_flops,
    synthetic_batch,
    use_channels_last,
)
from sperm_d2.config import setup_cfg
from sperm_d2.engine.cpu_amp import CPUAutocastTrainer
from sperm_d2.engine.trainer import SpermTrainer
from sperm_d2.engine.training import prepare_config
from sperm_d2.precision import cpu_has_native_bf16

REPO = Path(__file__).resolve().parents[1]
#: the study's stack (PixelLib / TensorFlow 2.15) at its setting on this machine type, s/iter
STUDY_S_PER_ITER = (13.9, 15.2)
#: the dtype the convolutions and matmuls of each --precisions run compute in
STUDY_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclasses.dataclass(frozen=True)
class StudyVariant:
    """One network at the study's setting and the wall s/iter it has to reach."""

    key: str
    name: str
    config_file: str
    target: float
    strict: bool  # True: below the target; False: at or below

    def passes(self, s_per_iter: float) -> bool:
        return s_per_iter < self.target if self.strict else s_per_iter <= self.target

    def target_text(self) -> str:
        return f"{'<' if self.strict else '<='} {self.target:g}"


STUDY_VARIANTS = {
    v.key: v
    for v in (
        # the study's own network (it freezes its BatchNorm): a third of the study's time
        StudyVariant(
            "frozen", "R-101 FrozenBN", "configs/sperm_mask_rcnn_R_101_FPN.yaml", 4.8, False
        ),
        # what the project trains from scratch: faster than the study's lower figure
        StudyVariant(
            "gn", "R-101 GN scratch", "configs/sperm_mask_rcnn_R_101_FPN_scratch.yaml", 13.9, True
        ),
    )
}


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


@dataclasses.dataclass
class StudyRun:
    """One (variant, precision) of ``--study``: its trainer and what its timed steps saw."""

    variant: StudyVariant
    precision: str
    trainer: SimpleTrainer
    proposal_log: list  # proposals per image, appended by a hook on the RPN (shared per model)
    lever: str = ""  # KEY VALUE overrides of this run only ("" = the config as it is)
    times: list = dataclasses.field(default_factory=list)  # (wall, CPU) s per step
    proposals: list = dataclasses.field(default_factory=list)  # RPN proposals per image
    rois: list = dataclasses.field(default_factory=list)  # sampled ROIs (fg + bg) per image
    fg: list = dataclasses.field(default_factory=list)  # foreground ROIs per image
    flops: float = 0.0  # one step's convolution and matmul FLOPs (forward and backward)

    def step(self, timed: bool) -> None:
        """One training step (the engine's own ``run_step``); its times and counts if timed."""
        seen = len(self.proposal_log)
        t, c = time.perf_counter(), time.process_time()
        self.trainer.run_step()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        self.trainer.iter += 1
        if timed:
            self.times.append((wall, cpu))
            self.proposals.extend(self.proposal_log[seen:])
            storage = get_event_storage()
            fg = storage.history("roi_head/num_fg_samples").latest()
            self.fg.append(fg)
            self.rois.append(fg + storage.history("roi_head/num_bg_samples").latest())

    def count_flops(self) -> None:
        """One untimed step with its FLOPs counted (the counter slows the step)."""
        self.flops = step_flops(lambda: self.step(timed=False))

    def median(self, i: int) -> float:
        """Median wall (``i`` 0) or CPU (``i`` 1) seconds per step."""
        return statistics.median(x[i] for x in self.times)


def study_cfg(variant: StudyVariant, opts: list[str]):
    """The variant's config at the study's setting, nothing downloaded, on the CPU."""
    setting = ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "INPUT.MIN_SIZE_TRAIN"]
    setting += [f"({STUDY_SIZE},)", "SOLVER.IMS_PER_BATCH", str(STUDY_BATCH)]
    return setup_cfg(str(REPO / variant.config_file), setting + list(opts))


def build_study_runs(
    variant: StudyVariant, args: argparse.Namespace, lever: str = ""
) -> list[StudyRun]:
    """The variant's model (FrozenBN calibrated, layout set) and one trainer per precision.

    The precisions share the model and optimizer, so their steps alternate on one network as
    in one training run (a step costs the same whatever the weights' values). ``lever``: extra
    ``KEY VALUE`` overrides for this model only.
    """
    cfg = study_cfg(variant, list(args.opts) + lever.split())
    torch.manual_seed(0)
    model = SpermTrainer.build_model(cfg)
    model.train()
    classes = list(cfg.SPERM.CLASSES)
    batches = [synthetic_batch(classes, seed=i) for i in range(args.study_batches)]
    calibrated = calibrate_frozen_bn(model, batches[0])
    if args.layout == "channels_last":
        use_channels_last(model)
    optimizer = SpermTrainer.build_optimizer(cfg, model)
    log: list[int] = []
    model.proposal_generator.register_forward_hook(
        lambda module, inputs, output: log.extend(len(p) for p in output[0])
    )
    print(
        f"{variant.name}: {variant.config_file}{' + ' + lever if lever else ''}, "
        f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, "
        f"{calibrated} FrozenBN layers calibrated, RPN post-NMS top-k "
        f"{cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN}, ROI batch {cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE}"
        "/image",
        flush=True,
    )
    runs = []
    for precision in args.precisions:
        trainer_cls = CPUAutocastTrainer if precision == "bf16" else SimpleTrainer
        trainer = trainer_cls(model, itertools.cycle(batches), optimizer)
        runs.append(StudyRun(variant, precision, trainer, log, lever))
    return runs


def study(args: argparse.Namespace) -> None:
    """Time the study's setting (see the module docstring) and print the table."""
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}, "
        f"layout {args.layout}, load average {load:.1f} on {os.cpu_count()} CPUs"
    )
    runs = [
        run
        for key in args.variants
        for lever in ["", *args.lever]
        for run in build_study_runs(STUDY_VARIANTS[key], args, lever)
    ]
    with EventStorage():  # the step writes its losses and ROI counts here
        for _ in range(args.study_warmup):  # one-off costs: allocation, oneDNN set-up per shape
            for run in runs:
                run.step(timed=False)
        for run in runs:
            run.count_flops()
        for r in range(args.rounds):
            for _ in range(args.iters):
                for run in runs:  # interleaved: load that comes and goes hits all alike
                    run.step(timed=True)
            print(
                f"  round {r + 1}: "
                + ", ".join(
                    f"{x.variant.key}{' + ' + x.lever if x.lever else ''} {x.precision} "
                    f"{x.times[-1][0]:.1f} s "
                    f"({x.times[-1][1]:.1f} CPU-s)"
                    for x in runs
                ),
                flush=True,
            )
    peaks = {p: gemm_peak(STUDY_DTYPES[p]) for p in args.precisions}
    print_study_table(runs, args, (load, os.getloadavg()[0]), peaks)


def print_study_table(
    runs: list[StudyRun], args: argparse.Namespace, load: tuple, peaks: dict
) -> None:
    """One row per (variant, precision, lever): s/iter, the study's time over ours, pass/fail,
    the step's compute floor (its GEMM FLOPs at ``peaks[precision]`` FLOP/s); a lever's row also
    gives the config as it is over the lever in CPU time (> 1: faster)."""
    study_s = STUDY_S_PER_ITER[0]
    head = (
        f"{'variant':17s} {'precision':9s} {'s/iter wall':>11s} {'s/iter CPU':>10s} "
        f"{'13.9 s / ours':>13s} {'target':>7s} {'result':6s} {'proposals':>9s} {'ROIs':>5s} "
        f"{'fg ROIs':>7s} {'GFLOP':>6s} {'floor s':>7s}  config (CPU speed-up over as is)"
    )
    as_is = {(r.variant.key, r.precision): r.median(1) for r in runs if not r.lever}
    print(
        f"\nStudy setting: R-101-FPN, {STUDY_SIZE} px, batch {STUDY_BATCH}, {args.layout}, "
        f"{torch.get_num_threads()} threads; median of {args.rounds * args.iters} timed "
        f"iterations each; the study's stack {STUDY_S_PER_ITER[0]}-{STUDY_S_PER_ITER[1]} s/iter. "
        "Per image (mean): RPN proposals, sampled ROIs, foreground ROIs."
    )
    print(head)
    print("-" * len(head))
    for run in runs:
        wall, cpu = run.median(0), run.median(1)
        print(
            f"{run.variant.name:17s} {run.precision:9s} {wall:11.2f} {cpu:10.2f} "
            f"{study_s / wall:12.2f}x {run.variant.target_text():>7s} "
            f"{'pass' if run.variant.passes(wall) else 'FAIL':6s} "
            f"{statistics.mean(run.proposals):9.0f} {statistics.mean(run.rois):5.0f} "
            f"{statistics.mean(run.fg):7.1f} {run.flops / 1e9:6.0f} "
            f"{run.flops / peaks[run.precision]:7.2f}  "
            + (
                f"{run.lever} ({as_is[run.variant.key, run.precision] / cpu:.2f}x)"
                if run.lever
                else "as is"
            )
        )
    print(
        "(the targets judge wall time; CPU is this process's CPU seconds per iteration; load "
        f"average {load[0]:.1f} at the start, {load[1]:.1f} at the end)"
    )
    rates = ", ".join(f"{p} {r / 1e9:.0f} GFLOP/s" for p, r in peaks.items())
    print(
        "floor: the step's convolution and matmul FLOPs (forward + backward, torch's "
        f"FlopCounterMode) at the best rate measured here on large operands ({rates}); no step "
        "runs faster, wall time above it is the rest of the step and GEMMs below that rate"
    )


def main(args: argparse.Namespace) -> None:
    setup_logger(name="sperm_d2")
    if args.study:
        study(args)
        return
    if not args.config_file:
        raise SystemExit("bench_train.py: --config-file is needed (or --study)")
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


def _choices(allowed) -> Callable[[str], list[str]]:
    """argparse type: a comma-separated list of names out of ``allowed``."""

    def parse(text: str) -> list[str]:
        names = [t for t in text.split(",") if t]
        bad = [n for n in names if n not in allowed]
        if bad or not names:
            raise argparse.ArgumentTypeError(f"{text!r}: use names out of {', '.join(allowed)}")
        return names

    return parse


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", help="config of the default mode (not with --study)")
    p.add_argument("--iters", type=int, default=20, help="timed iterations per trainer and round")
    p.add_argument("--warmup", type=int, default=3, help="untimed first iterations")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    p.add_argument("--study", action="store_true", help="time the study's setting instead")
    p.add_argument(
        "--variants",
        type=_choices(STUDY_VARIANTS),
        default=list(STUDY_VARIANTS),
        help=f"comma-separated, of {','.join(STUDY_VARIANTS)} (--study)",
    )
    p.add_argument(
        "--precisions",
        type=_choices(("fp32", "bf16")),
        default=["fp32", "bf16"],
        help="comma-separated, of fp32,bf16 (--study)",
    )
    p.add_argument(
        "--layout",
        choices=("channels_last", "nchw"),
        default="channels_last",
        help="memory format of the conv weights (--study)",
    )
    p.add_argument(
        "--lever",
        action="append",
        default=[],
        metavar="'KEY VALUE ...'",
        help="(--study, repeatable) also time each variant with these overrides, alternated",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (--study; 0: torch's)")
    p.add_argument("--study-warmup", type=int, default=1, help="untimed steps per run (--study)")
    p.add_argument(
        "--study-batches", type=int, default=2, help="synthetic batches cycled (--study)"
    )
    p.add_argument("--checkpoint-period", type=int, default=10**6, help="SOLVER.CHECKPOINT_PERIOD")
    p.add_argument("--loader-batches", type=int, default=20)
    p.add_argument("--model-steps", type=int, default=5)
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    return p


if __name__ == "__main__":
    main(get_parser().parse_args())
