#!/usr/bin/env python
"""Grading cost per head: trained grader runs (one grader, an ensemble run, a ResNet trunk, or
several runs averaged as ``--grader A B`` does) timed on the same heads in this process,
alternated, best of ``--repeats``; prints ms per head and the ratio to the first entry.

Each entry is what ``infer.py --grader`` would be given: one run folder, or several joined by
``+`` (averaged; runs of another ``SPERM.GRADER.VIEW`` cut their own crops). The heads are
``--heads`` ellipses at random angles on a random ``--size``-px BGR field: cutting the crops is
part of the cost, as in infer.py; the numbers do not depend on what the heads look like.

Usage:
    python benchmarks/bench_grader.py --graders output/grader output/grader_ensemble \\
        output/grader+output/grader_unaligned --heads 64 --repeats 5
"""

import argparse
import time

import sperm_d2.cli_warnings  # noqa: F401 isort: skip (first: hides known-harmless warnings)

import cv2
import numpy as np
import torch

from sperm_d2.inference.grader import HeadGrader


def heads(count: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random BGR field and ``count`` elliptic head masks (~60 x 40 px) at random angles."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    masks = np.zeros((count, size, size), bool)
    for mask, (x, y), angle in zip(
        masks, rng.integers(40, size - 40, (count, 2)), rng.uniform(0, 180, count)
    ):
        canvas = np.zeros((size, size), np.uint8)
        cv2.ellipse(canvas, (int(x), int(y)), (30, 20), float(angle), 0, 360, 1, -1)
        mask[:] = canvas.astype(bool)
    return image, masks


def timed(grader: HeadGrader, image: np.ndarray, masks: np.ndarray) -> float:
    start = time.perf_counter()
    grader.probabilities(image, masks)
    return time.perf_counter() - start


def main(args: argparse.Namespace) -> None:
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.heads} heads")
    graders = [HeadGrader.from_run(entry.split("+")) for entry in args.graders]
    image, masks = heads(args.heads, args.size)
    for g in graders:  # warm-up: first calls allocate and pick kernels
        timed(g, image, masks)
    best = [float("inf")] * len(graders)
    for _ in range(args.repeats):
        for i, g in enumerate(graders):
            best[i] = min(best[i], timed(g, image, masks))
    base = best[0]
    for entry, seconds in zip(args.graders, best):
        ms = 1000 * seconds / args.heads
        print(f"{ms:8.2f} ms/head  {seconds / base:5.2f}x  {entry}")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--graders", nargs="+", required=True, help="run folders; A+B averages runs")
    p.add_argument("--heads", type=int, default=64, help="heads graded per call")
    p.add_argument("--size", type=int, default=512, help="side of the random field, px")
    p.add_argument("--repeats", type=int, default=5, help="alternated rounds; best is kept")
    return p


if __name__ == "__main__":
    main(get_parser().parse_args())
