"""Inference speed benchmark (issue 5; not a test). Every ratio is measured in the same run.

(a) end-to-end crops/s of ``tools/infer.py``'s job (decode -> predict -> overlay + CSV written)
    vs a plain loop of detectron2's ``DefaultPredictor`` + ``Visualizer`` at detectron2's default
    test size (MIN_SIZE_TEST 800), same weights, same crops; target >= 5x;
(b) batch size: crops/s of the bare model forward and of infer.py's job at each fixed batch size
    (1, 2, 4, 8; runs alternated, best of ``--repeats``) next to the auto batch size (the size its
    calibration picked on this device, timed after it chose); auto must be within noise of the
    best fixed size (noise: the spread of those two sizes' repeats); infer.py's overhead over the
    bare forward at the size auto picked, target <= 15 %, and the same job without its end-of-run
    report (``--no-report``: report.html, REPORT.md and their plots, a fixed cost per run however
    many images it holds), which leaves the per-image outputs (decode, overlays, CSV, JSONL);
(c) video frames/s, peak RSS and the auto batch size for a short and a long video, each in a
    fresh process (calibration included; peak RSS must not grow with video length);
(d) with ``--grader RUN``: what grading every head with the head grader adds to infer.py's time
    per image (same detector, same crops, runs alternated, best of ``--repeats``); target <= 15 %.

Without ``--run`` the weights are random (saved once, loaded by both sides); the score threshold
is 0 and DETECTIONS_PER_IMAGE 5 on both sides, so the box and mask heads run on every crop as they
would with a trained model (random FrozenBN/GN weights otherwise find little or nothing).

Usage:
    python benchmarks/bench_infer.py                       # 200 crops of 170 px, videos 30/120
    python benchmarks/bench_infer.py --num-crops 40 --video-frames 20 80 --run output/demo/train
    python benchmarks/bench_infer.py --num-crops 40 --video-frames 20 --run output/demo/train \
        --grader output/demo/grader
"""

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.config import setup_cfg
from sperm_d2.data.synthetic import render_scene, render_video_frames
from sperm_d2.inference import HeadGrader, InferOptions, SpermPredictor, run_inference
from sperm_d2.inference.batch_size import CANDIDATES, forget_calibrations
from sperm_d2.inference.pass_memory import process_peak_rss
from sperm_d2.inference.video import VideoSink

CPU_CONFIG = "configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml"
HEADS_RUN = ["MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "TEST.DETECTIONS_PER_IMAGE", "5"]


def build_cfg(args, work: Path):
    """The benchmark config and a weights file both sides load."""
    if args.run:
        cfg = setup_cfg(str(Path(args.run) / "config.yaml"), HEADS_RUN)
        from sperm_d2.inference.run_folder import find_run_weights

        return cfg, str(find_run_weights(args.run))
    cfg = setup_cfg(CPU_CONFIG, HEADS_RUN)
    torch.manual_seed(0)
    weights = work / "random_weights.pth"
    torch.save({"model": SpermPredictor(cfg, weights="").model.state_dict()}, weights)
    return cfg, str(weights)


def make_crops(folder: Path, n: int, size: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image, _ = render_scene(1000 + i, size, size, num_heads=1)
        paths.append(folder / f"crop_{i:04d}.png")
        cv2.imwrite(str(paths[-1]), image)
    return paths


def baseline_detectron2(cfg, weights: str, paths: list[Path], out: Path) -> float:
    """DefaultPredictor + Visualizer at MIN_SIZE_TEST 800; returns seconds."""
    from detectron2.data import MetadataCatalog
    from detectron2.engine import DefaultPredictor
    from detectron2.utils.visualizer import Visualizer

    cfg = cfg.clone()
    cfg.defrost()
    cfg.MODEL.DEVICE = "cpu" if not torch.cuda.is_available() else cfg.MODEL.DEVICE
    cfg.MODEL.WEIGHTS = weights
    cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST = 800, 1333  # detectron2's defaults
    predictor = DefaultPredictor(cfg)
    predictor(cv2.imread(str(paths[0])))  # warm-up, as for ours
    meta = MetadataCatalog.get("bench_infer_baseline").set(thing_classes=list(cfg.SPERM.CLASSES))
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(out / "instances.csv", "w", newline="") as f:
        writer = csv.writer(f)
        for p in paths:
            image = cv2.imread(str(p))
            inst = predictor(image)["instances"].to("cpu")
            vis = Visualizer(image[:, :, ::-1], meta).draw_instance_predictions(inst)
            cv2.imwrite(str(out / p.name), vis.get_image()[:, :, ::-1])
            for box, score, cls, mask in zip(
                inst.pred_boxes.tensor.tolist(),
                inst.scores.tolist(),
                inst.pred_classes.tolist(),
                inst.pred_masks,
            ):
                writer.writerow([p.name, cls, round(score, 4), *box, int(mask.sum())])
    return time.perf_counter() - start


def calibrate_auto(predictor: SpermPredictor, folder: Path, work: Path) -> list[float]:
    """Run infer.py's job with the auto batch size until its calibration has chosen (a short
    folder takes several runs); returns each run's seconds."""
    forget_calibrations()
    predictor.batch_size = 0
    seconds = []
    while not seconds or predictor.calibration.chosen is None:
        seconds.append(timed_inference(predictor, folder, work / f"calibrating_{len(seconds)}"))
        if len(seconds) > 20:
            raise RuntimeError("the auto batch size did not choose within 20 runs")
    return seconds


def batch_table(predictor: SpermPredictor, paths: list[Path], work: Path, repeats: int) -> dict:
    """Seconds per repeat: bare forward and infer.py's job at each fixed size, and infer.py's
    job with the auto size (already calibrated) next to the size it picked; every variant once
    per repeat, the two of a size back to back (compared under the same load), order reversed
    on odd repeats so a drift in the machine's load hits all alike."""
    images = [cv2.imread(str(p)) for p in paths]
    variants = []
    for b in CANDIDATES:
        variants += [("forward", b), ("job", b)]
        if b == predictor.calibration.chosen:
            variants += [("job", 0), ("no report", 0)]  # 0 = auto
    times: dict[tuple[str, int], list[float]] = {v: [] for v in variants}
    for r in range(repeats):
        for kind, size in variants if r % 2 == 0 else variants[::-1]:
            predictor.batch_size = size
            if kind == "forward":
                times[kind, size].append(bare_forward(predictor, images, size))
            else:
                out = work / f"{kind.replace(' ', '_')}_{size}_{r}"
                report = kind == "job"
                times[kind, size].append(timed_inference(predictor, paths[0].parent, out, report))
    predictor.batch_size = 0
    return times


def timed_inference(
    predictor: SpermPredictor, folder: Path, out: Path, report: bool = True
) -> float:
    """Seconds of ``run_inference`` (infer.py's job) on ``folder``; ``report`` False: without the
    end-of-run report (``--no-report``)."""
    start = time.perf_counter()
    summary = run_inference(predictor, [str(folder)], InferOptions(out, report=report))
    assert summary["images_processed"] > 0
    return time.perf_counter() - start


def grader_overhead(cfg, weights: str, grader_run: str, folder: Path, work: Path, repeats: int):
    """(seconds without, seconds with the grader, heads graded): best of ``repeats``, alternated."""
    plain = SpermPredictor(cfg, weights=weights)
    graded = SpermPredictor(cfg, weights=weights, grader=HeadGrader.from_run(grader_run))
    warm = cv2.imread(str(next(folder.glob("*.png"))))
    plain(warm), graded(warm)
    times: dict[str, list[float]] = {"plain": [], "graded": []}
    for i in range(repeats):
        for name, predictor in (("plain", plain), ("graded", graded)):
            times[name].append(timed_inference(predictor, folder, work / f"{name}_{i}"))
    heads = len((work / "graded_0" / "instances.csv").read_text().splitlines()) - 1
    return min(times["plain"]), min(times["graded"]), heads


def bare_forward(predictor: SpermPredictor, images: list, batch: int = 1) -> float:
    """Seconds of model forward passes alone (images decoded beforehand), ``batch`` per pass."""
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        predictor.predict_instances(images[i : i + batch])
    return time.perf_counter() - start


def video_child(cfg_args: list[str]) -> None:
    """In a fresh process: infer one video, print frames/s and peak RSS as JSON."""
    config, weights, video, out = cfg_args
    predictor = SpermPredictor(setup_cfg(config, HEADS_RUN), weights=weights)
    start = time.perf_counter()
    summary = run_inference(predictor, [video], InferOptions(Path(out)))
    seconds = time.perf_counter() - start
    # not ru_maxrss: the auto batch size's memory probe resets the kernel's peak before its
    # passes, process_peak_rss keeps what the resets erased
    peak_mb = process_peak_rss() / 2**20
    frames = summary["video_frames_processed"]
    cal = predictor.calibration
    result = {"frames": frames, "fps": frames / seconds, "peak_rss_mb": peak_mb}
    result["batch"] = cal.chosen if cal.chosen is not None else f"calibrating ({cal.timed_images})"
    print(json.dumps(result))


def bench_video(cfg, weights: str, work: Path, lengths: list[int], size: int) -> list[dict]:
    config = work / "bench_config.yaml"
    config.write_text(cfg.dump())
    results = []
    for n in lengths:
        video = work / f"video_{n}.mp4"
        with VideoSink(video, fps=10) as sink:
            for frame in render_video_frames(5, size, size, n):
                sink.write(frame)
        cmd = [
            sys.executable,
            __file__,
            "--video-child",
            str(config),
            weights,
            str(video),
            str(work / f"video_out_{n}"),
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def spread(values: list[float]) -> float:
    """Relative spread of repeated timings (max / min - 1): the noise of one variant."""
    return max(values) / min(values) - 1


def overhead(job: list[float], forward: list[float]) -> float:
    """Median over the repeats of infer.py's job time over the bare forward's, each repeat's
    pair run back to back."""
    return statistics.median(j / f - 1 for j, f in zip(job, forward))


def main(args: argparse.Namespace) -> None:
    if args.video_child:
        return video_child(args.video_child)
    with tempfile.TemporaryDirectory(prefix="bench_infer_") as tmp:
        work = Path(tmp)
        cfg, weights = build_cfg(args, work)
        paths = make_crops(work / "crops", args.num_crops, args.size)
        n, size = len(paths), cfg.INPUT.MIN_SIZE_TEST
        source = f"run {args.run}" if args.run else "random"
        print(
            f"crops: {n} x {args.size} px, weights: {source}, test size ours {size} px, "
            f"torch threads {torch.get_num_threads()}",
            flush=True,
        )
        predictor = SpermPredictor(cfg, weights=weights)
        predictor(cv2.imread(str(paths[0])))  # warm-up (one image; not a stream: no calibration)
        t_calib = calibrate_auto(predictor, work / "crops", work)
        cal = predictor.calibration
        rates = ", ".join(f"{b}: {r:.2f}" for b, r in cal.rates().items())
        print(
            f"auto batch size: {cal.chosen} (calibration: {cal.timed_images} timed crops in "
            f"{len(t_calib)} infer.py run(s) of {n}; images/s by size {rates})",
            flush=True,
        )
        times = batch_table(predictor, paths, work, args.repeats)
        t_base = baseline_detectron2(cfg, weights, paths, work / "baseline")
        best = {v: min(t) for v, t in times.items()}
        t_auto, t_fixed = best["job", 0], min(best["job", b] for b in CANDIDATES)
        fastest = min(CANDIDATES, key=lambda b: best["job", b])
        print(f"(a) detectron2 DefaultPredictor+Visualizer @800: {n / t_base:.2f} crops/s")
        print(
            f"    tools/infer.py job @{size}, auto batch {cal.chosen}: {n / t_auto:.2f} crops/s "
            f"-> {t_base / t_auto:.2f}x (target >= 5x); while calibrating: "
            + ", ".join(f"{n / t:.2f}" for t in t_calib)
            + " crops/s"
        )
        print(
            f"(b) batch size, crops/s (best of {args.repeats}, runs alternated; spread: of the "
            "repeats, the noise; overhead: infer.py over the forward, median of the repeats):"
        )
        print(f"    {'size':>6} {'forward':>9} {'infer.py':>9} {'spread':>7} {'overhead':>9}")
        for b in CANDIDATES:
            fwd, job = best["forward", b], best["job", b]
            print(
                f"    {b:>6} {n / fwd:9.2f} {n / job:9.2f} {100 * spread(times['job', b]):6.1f}% "
                f"{100 * overhead(times['job', b], times['forward', b]):+8.1f}%"
            )
        noise = max(spread(times["job", 0]), spread(times["job", fastest]))
        print(
            f"    {'auto':>6} {'':>9} {n / t_auto:9.2f} {100 * spread(times['job', 0]):6.1f}%  "
            f"(picked {cal.chosen})"
        )
        gain = t_fixed / t_auto - 1  # auto's throughput over the fastest fixed size's
        verdict = "within" if abs(gain) <= noise else "OUTSIDE"
        print(
            f"    auto vs the fastest fixed size ({fastest}): {100 * gain:+.1f} % throughput, "
            f"{verdict} noise ({100 * noise:.1f} %); batch {fastest} vs 1: "
            f"{100 * (best['job', 1] / best['job', fastest] - 1):+.1f} %"
        )
        t_fwd_auto = times["forward", cal.chosen]
        t_report = statistics.median(times["job", 0]) - statistics.median(times["no report", 0])
        print(
            f"    infer.py overhead over the bare forward at the auto size ({cal.chosen}): "
            f"{100 * overhead(times['job', 0], t_fwd_auto):+.1f} % (target <= 15 %); without the "
            f"end-of-run report: {100 * overhead(times['no report', 0], t_fwd_auto):+.1f} % (the "
            f"report: {t_report:.2f} s per run, whatever its size; this job is {n} crops)",
            flush=True,
        )
        for r in bench_video(cfg, weights, work, args.video_frames, args.size):
            print(
                f"(c) video {r['frames']:4d} frames: {r['fps']:.2f} frames/s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB, auto batch size {r['batch']}"
            )
        if args.grader:
            t_plain, t_graded, heads = grader_overhead(
                cfg, weights, args.grader, work / "crops", work, args.repeats
            )
            print(
                f"(d) head grader {args.grader}: infer.py {n / t_plain:.2f} crops/s without, "
                f"{n / t_graded:.2f} with ({heads} heads graded) -> "
                f"{100 * (t_graded / t_plain - 1):+.1f} % time per image (target <= 15 %)"
            )


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", default=None, help="trained run folder (default: random weights)")
    p.add_argument("--num-crops", type=int, default=200)
    p.add_argument("--size", type=int, default=170, help="crop side in px")
    p.add_argument("--video-frames", type=int, nargs="+", default=[30, 120])
    p.add_argument("--grader", default=None, help="head-grader run folder: measure (d)")
    p.add_argument("--repeats", type=int, default=2, help="(b), (d): runs of each, best kept")
    p.add_argument("--video-child", nargs=4, help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
