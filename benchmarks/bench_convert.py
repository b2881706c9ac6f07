#!/usr/bin/env python
"""Benchmark labelme -> COCO conversion: files/s, 1 worker vs N, and against labelme2coco.

Two modes, both by default (``--mode small|real|both``):

small
    N unique synthetic labelme files (PNG beside the JSON, a few heads each, 192 px) are timed
    through ``prepare_dataset`` (read, validate, decode every image in full, rasterise masks, hash
    images, split, write COCO) with 1 worker and with --workers; prints files/s and the speed-up.
    It also prints what decoding each image in full (so a truncated file is caught at
    conversion, issue 11) costs against reading its header only.
real
    Real-sized labelme files as labelme writes them: 1280x1024 images embedded as base64
    ``imageData`` (JPEG re-encoded by PIL, as labelme does for a .jpg; ``--real-format png`` for
    PNG), ~40 polygons per file, most heads drawn as several part polygons sharing a
    ``group_id`` (merged into one instance by us). ``prepare_dataset`` with ONE worker and
    labelme2coco 0.2.6's ``convert`` (``pip install -e .[bench]``; skipped with the reason when
    it is missing) run on the same files in the same process (imports and process start
    excluded), alternating ours, peer, ours, peer... for --rounds rounds; prints files/s per
    round, the best and the median, and the ratio ours/peer. labelme2coco does less: no
    group_id merge, no image decode, no validation, no split.

Examples:
    python benchmarks/bench_convert.py --num-files 2000 --workers 2 --mode small
    python benchmarks/bench_convert.py --mode real --real-files 256 --rounds 5
"""

import argparse
import base64
import contextlib
import io
import json
import logging
import math
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.data.image_checks import image_size
from sperm_d2.data.labelme_io import write_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import prepare_dataset
from sperm_d2.data.synthetic import render_scene_detailed

REPO = Path(__file__).resolve().parents[1]
REAL_LABELS = ("good morphological quality", "bad morphological quality")  # the study's labels


def make_files(folder: Path, num: int, size: int, unique_scenes: int = 50) -> None:
    """``num`` labelme files; images differ by a pixel so the duplicate check passes them."""
    scenes = [render_scene_detailed(i, size, size) for i in range(min(unique_scenes, num))]
    for i in range(num):
        img, heads = scenes[i % len(scenes)]
        img = img.copy()
        img[0, 0] = (i % 256, (i // 256) % 256, (i // 65536) % 256)
        sub = folder / f"d{i // 500:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"f{i:06d}.png"), img)
        shapes = [{"label": kind, "points": np.round(p, 2).tolist()} for kind, _, p in heads]
        write_labelme_json(sub / f"f{i:06d}.json", sub / f"f{i:06d}.png", size, size, shapes)


def _part_polygons(rng, cx, cy, a, b, angle, parts) -> list[np.ndarray]:
    """A head (ellipse) drawn as ``parts`` overlapping wedges from its centre, 8-16 points on
    the outline each: how annotators outline a head piece by piece."""
    cuts = np.sort(rng.uniform(0, 2 * np.pi, parts)) if parts > 1 else np.array([0.0])
    rot = np.array([[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]])
    polys = []
    for k in range(parts):
        t0 = cuts[k] - 0.1
        t1 = (cuts[(k + 1) % parts] if k + 1 < parts else cuts[0] + 2 * np.pi) + 0.1
        t = np.linspace(t0, t1, int(rng.integers(8, 17)))
        outline = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)
        pts = outline if parts == 1 else np.vstack([[0.0, 0.0], outline])
        polys.append(pts @ rot + [cx, cy])
    return polys


def real_labelme_file(i: int, width: int, height: int, polygons: int, fmt: str) -> tuple:
    """(labelme JSON text as labelme 5 writes it, number of instances) for file ``i``."""
    rng = np.random.default_rng(i)
    small = rng.normal(175, 14, (height // 8, width // 8, 3)).clip(0, 255).astype(np.uint8)
    img = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    noise = rng.normal(0, 5, (height, width, 1)).astype(np.int16)
    img = (img.astype(np.int16) + noise).clip(0, 255).astype(np.uint8)
    n_inst = max(1, round(polygons / 5.7))  # the real files: 10,253 polygons, 1,786 heads
    parts = rng.multinomial(polygons - n_inst, [1 / n_inst] * n_inst) + 1
    shapes, group = [], 0
    for k, n in enumerate(parts):
        a = float(rng.uniform(25, 45))
        b = a * float(rng.uniform(0.55, 0.75))
        edge = k == 0 and i % 4 == 0  # a head cut by the image border now and then
        cx = float(rng.uniform(-a / 2, a / 2) if edge else rng.uniform(60, width - 60))
        cy = float(rng.uniform(60, height - 60))
        polys = _part_polygons(rng, cx, cy, a, b, float(rng.uniform(0, np.pi)), int(n))
        cv2.fillPoly(img, [np.round(polys[0]).astype(np.int32)], (90, 60, 120))
        gid = None
        if n > 1:
            group += 1
            gid = group
        label = REAL_LABELS[int(rng.integers(2))]
        for p in polys:
            shapes.append(
                {
                    "label": label,
                    "points": p.tolist(),
                    "group_id": gid,
                    "description": "",
                    "shape_type": "polygon",
                    "flags": {},
                }
            )
    buf = io.BytesIO()  # labelme re-encodes the image with PIL's defaults (JPEG quality 75)
    Image.fromarray(img[:, :, ::-1]).save(buf, format="JPEG" if fmt == "jpg" else "PNG")
    doc = {
        "version": "5.2.1",
        "flags": {},
        "shapes": shapes,
        "imagePath": f"r{i:05d}.{fmt}",  # not on disk: the embedded imageData is the image
        "imageData": base64.b64encode(buf.getvalue()).decode("utf-8"),
        "imageHeight": height,
        "imageWidth": width,
    }
    return json.dumps(doc, ensure_ascii=False, indent=2), len(parts)


def make_real_files(
    folder: Path, num: int, width: int, height: int, polygons: int, fmt: str
) -> tuple[int, int]:
    """``num`` real-sized labelme files in ``folder``; returns (polygons, instances)."""
    folder.mkdir(parents=True, exist_ok=True)
    instances = 0
    for i in range(num):
        text, n = real_labelme_file(i, width, height, polygons, fmt)
        (folder / f"r{i:05d}.json").write_text(text, encoding="utf-8")
        instances += n
    return num * polygons, instances


def bench_small(args: argparse.Namespace, label_map: LabelMap) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "labelme"
        t0 = time.perf_counter()
        make_files(src, args.num_files, args.size)
        print(f"made {args.num_files} files of {args.size}px in {time.perf_counter() - t0:.1f}s")
        pngs = [p.read_bytes() for p in sorted(src.rglob("*.png"))]
        t0 = time.perf_counter()
        for data in pngs:
            with Image.open(io.BytesIO(data)) as im:
                im.size
        header = (time.perf_counter() - t0) / len(pngs)
        t0 = time.perf_counter()
        for data in pngs:
            image_size(data)
        full = (time.perf_counter() - t0) / len(pngs)
        print(
            f"image check per file: header only {header * 1e3:.3f} ms, full decode "
            f"{full * 1e3:.3f} ms (+{(full - header) * 1e3:.3f} ms, {full / header:.1f}x)"
        )
        rates = {}
        for workers in sorted({1, args.workers}):
            t0 = time.perf_counter()
            report = prepare_dataset(src, Path(tmp) / f"out{workers}", label_map, workers=workers)
            dt = time.perf_counter() - t0
            assert report["files"]["converted"] == args.num_files, report["files"]
            rates[workers] = args.num_files / dt
            print(f"workers={workers}: {dt:.2f}s, {rates[workers]:.0f} files/s")
        if args.workers != 1:
            print(f"ratio {args.workers} workers / 1 worker: {rates[args.workers] / rates[1]:.2f}x")


def image_check_costs(json_paths: list[Path], repeat: int = 3) -> dict[str, float]:
    """CPU ms per file of: decoding imageData's base64, reading the image header only, our
    image check (:func:`image_size`) and the full decode it replaced (best of ``repeat``)."""
    datas = [base64.b64decode(json.loads(p.read_bytes())["imageData"]) for p in json_paths]
    texts = [base64.b64encode(d).decode() for d in datas]

    def header(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as im:
            im.size

    def full(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as im:
            im.load()

    def cost(fn, items) -> float:
        best = math.inf
        for _ in range(repeat):
            c0 = time.process_time()
            for x in items:
                fn(x)
            best = min(best, time.process_time() - c0)
        return best / len(items) * 1e3

    return {
        "base64": cost(lambda t: base64.b64decode(t, validate=True), texts),
        "header": cost(header, datas),
        "ours": cost(image_size, datas),
        "full": cost(full, datas),
    }


def _quiet():
    """Silence progress bars and prints (tqdm, labelme2coco's file count) while timing."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


def bench_real(args: argparse.Namespace, label_map: LabelMap) -> None:
    try:
        import labelme2coco  # noqa: F401  (imported here: its import is not timed)
    except ImportError as e:
        peer = None
        print(f"labelme2coco not installed ({e}): timing ours only (pip install -e '.[bench]')")
    else:
        peer = labelme2coco
        if peer.__version__ != "0.2.6":
            print(f"note: labelme2coco {peer.__version__} installed, the reference is 0.2.6")
    n = args.real_files
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "real"
        t0 = time.perf_counter()
        polys, insts = make_real_files(
            src, n, args.real_width, args.real_height, args.real_polygons, args.real_format
        )
        mb = sum(p.stat().st_size for p in src.iterdir()) / 2**20
        print(
            f"made {n} real-sized files ({args.real_width}x{args.real_height} {args.real_format} "
            f"embedded, {polys} polygons in {insts} instances, {mb:.0f} MB) "
            f"in {time.perf_counter() - t0:.1f}s"
        )

        check = image_check_costs([p for p in sorted(src.iterdir())][:64])
        print(
            "image check per file (CPU): header only {header:.2f} ms, ours (JPEG at 1/8 scale: "
            "all entropy-coded data decoded) {ours:.2f} ms, full decode (before issue 13) "
            "{full:.2f} ms".format(**check)
        )

        def run_ours(k: int) -> tuple[float, float]:
            out = Path(tmp) / f"ours{k}"
            t0, c0 = time.perf_counter(), time.process_time()
            with _quiet():
                report = prepare_dataset(src, out, label_map, workers=1)
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            assert report["files"]["converted"] == n, report["files"]
            assert sum(report["total"]["instances"].values()) == insts, report["total"]
            shutil.rmtree(out)
            return n / dt, n / dc

        def run_peer(k: int) -> tuple[float, float]:
            out = Path(tmp) / f"peer{k}"
            t0, c0 = time.perf_counter(), time.process_time()
            with _quiet():
                peer.convert(str(src), str(out))
            dt, dc = time.perf_counter() - t0, time.process_time() - c0
            with open(out / "dataset.json", encoding="utf-8") as f:
                assert len(json.load(f)["annotations"]) == polys
            shutil.rmtree(out)
            return n / dt, n / dc

        ours, theirs = [], []
        for k in range(args.rounds):
            ours.append(run_ours(k))
            line = f"round {k + 1}/{args.rounds}: ours {ours[-1][0]:.1f} files/s"
            if peer is not None:
                theirs.append(run_peer(k))
                line += f", labelme2coco {theirs[-1][0]:.1f} files/s"
            print(line)
        _summary("ours (prepare_dataset, 1 worker)", ours)
        per_file = 1e3 / statistics.median(r[1] for r in ours)
        print(
            f"the image check is {check['ours'] / per_file:.0%} of ours' {per_file:.2f} ms CPU "
            f"per file; the base64 decode of imageData {check['base64'] / per_file:.0%}"
        )
        if peer is None:
            return
        _summary(f"labelme2coco {peer.__version__}", theirs)
        for i, what in enumerate(("wall clock", "CPU time")):
            best = max(r[i] for r in ours) / max(r[i] for r in theirs)
            med = statistics.median(r[i] for r in ours) / statistics.median(r[i] for r in theirs)
            print(f"ratio ours/labelme2coco, 1 worker, {what}: best {best:.2f}x, median {med:.2f}x")


def _summary(name: str, runs: list[tuple[float, float]]) -> None:
    wall, cpu = [r[0] for r in runs], [r[1] for r in runs]
    print(
        f"{name}: best {max(wall):.1f}, median {statistics.median(wall):.1f} files/s "
        f"(per CPU second: best {max(cpu):.1f}, median {statistics.median(cpu):.1f})"
    )


def main(args: argparse.Namespace) -> None:
    label_map = LabelMap.load(REPO / "configs/labels/default.yaml")
    if args.mode in ("small", "both"):
        bench_small(args, label_map)
    if args.mode in ("real", "both"):
        bench_real(args, label_map)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--mode", choices=("small", "real", "both"), default="both")
    p.add_argument("--num-files", type=int, default=1000, help="small: labelme files to convert")
    p.add_argument("--size", type=int, default=192, help="small: image side in pixels")
    p.add_argument("--workers", type=int, default=2, help="small: worker processes to compare")
    p.add_argument("--real-files", type=int, default=256, help="real: labelme files")
    p.add_argument("--real-width", type=int, default=1280, help="real: image width")
    p.add_argument("--real-height", type=int, default=1024, help="real: image height")
    p.add_argument("--real-polygons", type=int, default=40, help="real: polygons per file")
    p.add_argument("--real-format", choices=("jpg", "png"), default="jpg", help="real: image")
    p.add_argument("--rounds", type=int, default=5, help="real: alternating rounds")
    main(p.parse_args())
