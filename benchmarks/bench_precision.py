#!/usr/bin/env python
"""fp32 vs CPU bf16 autocast (and channels-last): detector and head grader, training step and
inference, on synthetic data made here (random weights, nothing downloaded).

Every variant gets its own copy of the same initial model; the variants run interleaved one
iteration at a time in this one process (fp32, bf16, fp32+CL, bf16+CL, fp32, ...), so that load
from other processes hits them alike. Each prints s/iter (wall and this process's CPU seconds)
and its speed-up over fp32, paired iteration by iteration (see :func:`report`).
Training steps are the engine's own (``SimpleTrainer`` for fp32, ``CPUAutocastTrainer`` for
bf16) on batches loaded once beforehand, so the data loader is not timed; inference is
``SpermPredictor`` / ``HeadGrader`` per image. Random GN weights score every class ~1/3, so a
zero score threshold makes the detector's box and mask heads run (the count is printed).

Usage:
    python benchmarks/bench_precision.py --rounds 2 --iters 10
    python benchmarks/bench_precision.py --only detector-train --rounds 3 --iters 10
"""

import argparse
import copy
import itertools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import sperm_d2.cli_warnings  # noqa: F401 isort: skip (first: hides known-harmless warnings)

import cv2
import numpy as np
import torch
from detectron2.data import DatasetCatalog
from detectron2.engine import SimpleTrainer
from detectron2.utils.events import EventStorage
from detectron2.utils.logger import setup_logger

from sperm_d2.config import setup_cfg
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import prepare_dataset
from sperm_d2.data.synthetic_io import make_synthetic_dataset
from sperm_d2.engine.cpu_amp import CPUAutocastTrainer
from sperm_d2.engine.trainer import SpermTrainer
from sperm_d2.engine.training import prepare_config
from sperm_d2.grading.samples import annotation_mask
from sperm_d2.inference import HeadGrader, SpermPredictor
from sperm_d2.precision import cpu_has_native_bf16

REPO = Path(__file__).resolve().parents[1]
DETECTOR = "configs/sperm_mask_rcnn_R_18_FPN_real_cpu.yaml"
GRADER = "configs/sperm_grader_cpu.yaml"
PARTS = ("detector-train", "grader-train", "detector-infer", "grader-infer")


def make_data(root: Path, images: int, size: int) -> Path:
    """Synthetic labelme scenes -> COCO train/val (2:1) under ``root``."""
    labelme = make_synthetic_dataset(root / "labelme", num_images=images, size=size, seed=0)
    labels = LabelMap.load(REPO / "configs/labels/default.yaml")
    prepare_dataset(labelme, root, labels, ratios=(2, 1))
    return root


def alternate(variants: dict[str, Callable[[int], None]], rounds: int, iters: int, warmup: int):
    """Time each variant one iteration at a time, the variants interleaved (a, b, c, a, b, c,
    ...: load that comes and goes hits them alike), ``rounds`` x ``iters`` iterations after
    ``warmup`` untimed ones; returns ``{name: [(wall, cpu) seconds of each iteration]}``."""
    for run in variants.values():
        run(warmup)  # one-off costs: allocation, oneDNN primitives for each input shape
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for r in range(rounds):
        for _ in range(iters):
            for name, run in variants.items():
                t, c = time.perf_counter(), time.process_time()
                run(1)
                times[name].append((time.perf_counter() - t, time.process_time() - c))
        print(
            f"  round {r + 1}: "
            + ", ".join(
                f"{n} {statistics.median(x[0] for x in v[-iters:]):.4f} s" for n, v in times.items()
            ),
            flush=True,
        )
    return times


def report(title: str, times: dict[str, list[tuple[float, float]]], unit: str) -> None:
    """Each variant's median and best s per ``unit`` and its speed-up over fp32 (> 1: faster):
    the median of the ratios of paired iterations (the same input, run back to back under the
    same load), and the ratio of the best iterations (the least disturbed by other load)."""
    base = times["fp32"]
    print(f"{title} ({len(base)} interleaved iterations each):")
    for name, t in times.items():
        wall, cpu = (statistics.median(x[i] for x in t) for i in (0, 1))
        paired = [statistics.median(b[i] / x[i] for b, x in zip(base, t)) for i in (0, 1)]
        best = min(x[0] for x in t)
        print(
            f"  {name:8s} median {wall:.4f} s/{unit} wall ({cpu:.4f} CPU-s), best {best:.4f} s; "
            f"fp32/{name}: {paired[0]:.2f}x wall, {paired[1]:.2f}x CPU (paired median), "
            f"{min(x[0] for x in base) / best:.2f}x (best)"
        )


def _variants(channels_last: bool) -> list[tuple[str, bool, bool]]:
    """(name, bf16, channels_last) of the variants to time."""
    out = [("fp32", False, False), ("bf16", True, False)]
    if channels_last:
        out += [("fp32+CL", False, True), ("bf16+CL", True, True)]
    return out


def _layout(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def bench_train(cfg, args, unit: str) -> None:
    """Training steps of ``cfg``'s model (detector or grader) on preloaded batches."""
    torch.manual_seed(0)
    model = SpermTrainer.build_model(cfg)
    loader = iter(SpermTrainer.build_train_loader(cfg))
    batches = [next(loader) for _ in range(args.batches)]
    variants = {}
    for name, bf16, cl in _variants(args.channels_last):
        m = copy.deepcopy(model).to(memory_format=_layout(cl))  # whatever the engine's default
        trainer_cls = CPUAutocastTrainer if bf16 else SimpleTrainer
        trainer = trainer_cls(m, itertools.cycle(batches), SpermTrainer.build_optimizer(cfg, m))

        def run(n: int, trainer=trainer) -> None:
            for _ in range(n):
                trainer.run_step()
                trainer.iter += 1

        variants[name] = run
    with EventStorage():  # the step writes its losses into an event storage
        # warm up on every preloaded batch: multi-scale inputs, one oneDNN set-up per shape
        times = alternate(variants, args.rounds, args.iters, max(args.warmup, len(batches)))
    report(f"{unit} training step ({cfg.SOLVER.IMS_PER_BATCH} per batch)", times, "iter")


def bench_detector_infer(cfg, images: list[np.ndarray], args) -> None:
    torch.manual_seed(0)
    base = SpermPredictor(cfg, weights="", score_threshold=0.0)
    variants = {}
    for name, bf16, cl in _variants(args.channels_last):
        opts = ["SPERM.INFER_PRECISION", "bf16" if bf16 else "fp32"]
        pred = SpermPredictor(cfg_with(cfg, opts), weights="", score_threshold=0.0)
        pred.model.load_state_dict(base.model.state_dict())
        pred.model.to(memory_format=_layout(cl))

        def run(n: int, pred=pred) -> None:
            for image in itertools.islice(itertools.cycle(images), n):
                pred(image)

        variants[name] = run
    print(f"detector inference: {len(base(images[0]))} detections on the first image")
    times = alternate(variants, args.rounds, args.iters, args.warmup)
    report(f"detector inference at {cfg.INPUT.MIN_SIZE_TEST} px, 1 image per pass", times, "image")


def bench_grader_infer(cfg, records: list[dict], args, work: Path) -> None:
    torch.manual_seed(0)
    weights = work / "grader_random.pth"
    torch.save({"model": SpermTrainer.build_model(cfg).state_dict()}, weights)
    samples = []
    for r in records:
        image = cv2.imread(r["file_name"])
        h, w = image.shape[:2]
        masks = [annotation_mask(a["segmentation"], h, w) for a in r["annotations"]][:3]
        if len(masks) == 3:
            samples.append((image, np.stack(masks)))
    variants = {}
    for name, bf16, _ in _variants(False):  # the grader is channels-last already
        grader = HeadGrader(cfg, weights, precision="bf16" if bf16 else "fp32")

        def run(n: int, grader=grader) -> None:
            for image, masks in itertools.islice(itertools.cycle(samples), n):
                grader.probabilities(image, masks)

        variants[name] = run
    times = alternate(variants, args.rounds, args.iters * 5, args.warmup)
    report(f"grader inference, 3 heads per image (TTA {cfg.SPERM.GRADER.TTA})", times, "image")


def cfg_with(cfg, opts: list[str]):
    out = cfg.clone()
    out.defrost()
    out.merge_from_list(opts)
    out.freeze()
    return out


def main(args: argparse.Namespace) -> None:
    setup_logger(name="sperm_d2")
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.only or PARTS
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}, native bf16: {cpu_has_native_bf16()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = make_data(work / "data", args.images, args.size)
        data = ["SPERM.DATA_ROOT", str(root), "DATALOADER.NUM_WORKERS", "0", "SPERM.EPOCHS", "0"]
        data += ["DATASETS.TEST", "()", "OUTPUT_DIR", str(work / "out")]
        if "detector-train" in parts:
            bench_train(prepare_config(args.detector, data + list(args.opts)), args, "detector")
        if "grader-train" in parts:
            bench_train(prepare_config(args.grader, data), args, "grader")
        val = [r for r in DatasetCatalog.get("sperm_val") if r["annotations"]]
        if "detector-infer" in parts:
            cfg = setup_cfg(args.detector, ["MODEL.DEVICE", "cpu", *args.opts])
            bench_detector_infer(cfg, [cv2.imread(r["file_name"]) for r in val], args)
        if "grader-infer" in parts:
            bench_grader_infer(setup_cfg(args.grader, ["MODEL.DEVICE", "cpu"]), val, args, work)
    print("(> 1: faster than fp32; CL = channels-last memory format)")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--detector", default=DETECTOR, help="detector config")
    p.add_argument("--grader", default=GRADER, help="head-grader config")
    p.add_argument("--only", nargs="+", choices=PARTS, help="time only these parts")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    p.add_argument("--iters", type=int, default=10, help="timed iterations per variant and round")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations per variant, once")
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); 1 makes this process's CPU seconds a steadier "
        "measure on a loaded machine (no threads spinning while their partner waits for a core)",
    )
    p.add_argument("--batches", type=int, default=6, help="training batches loaded and cycled")
    p.add_argument("--images", type=int, default=24, help="synthetic scenes (train:val 2:1)")
    p.add_argument("--size", type=int, default=192, help="synthetic scene size, px")
    p.add_argument(
        "--no-channels-last",
        dest="channels_last",
        action="store_false",
        help="skip the channels-last variants of the detector",
    )
    p.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE detector config overrides")
    return p


if __name__ == "__main__":
    main(get_parser().parse_args())
