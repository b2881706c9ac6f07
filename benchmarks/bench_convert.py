#!/usr/bin/env python
"""Benchmark labelme -> COCO conversion: files/s with 1 worker and with N, same files, same run.

Writes N unique synthetic labelme files (PNG + JSON, a few heads each) into a temporary folder,
then times ``prepare_dataset`` (read, validate, decode every image in full, rasterise masks,
hash images, split, write COCO) with 1 worker and with --workers, and prints files/s and the
speed-up ratio. It also prints what decoding each image in full (so a truncated file is caught
at conversion, issue 11) costs against reading its header only.

Example:
    python benchmarks/bench_convert.py --num-files 2000 --workers 2
"""

import argparse
import io
import logging
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.data.convert import image_size
from sperm_d2.data.labelme_io import write_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import prepare_dataset
from sperm_d2.data.synthetic import render_scene_detailed

REPO = Path(__file__).resolve().parents[1]


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


def main(args: argparse.Namespace) -> None:
    label_map = LabelMap.load(REPO / "configs/labels/default.yaml")
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


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--num-files", type=int, default=1000, help="labelme files to convert")
    p.add_argument("--size", type=int, default=192, help="image side in pixels")
    p.add_argument("--workers", type=int, default=2, help="worker processes to compare with 1")
    main(p.parse_args())
