#!/usr/bin/env python
"""Part segmenter on the Sperm Parsing fields: part IoU, head IoU, acrosome share, vacuoles.

Prepares the parts split like the head detector's split (same test fields), trains the part
segmenters (--models: the field segmenter, configs/sperm_parts_cpu.yaml, and the head segmenter,
configs/sperm_head_parts_cpu.yaml, each selected on val by parts/mIoU) unless --no-train, and
reports on --split (test) with the detector's heads (--detector): semantic IoU per part and
their mean, head IoU, and per annotated head matched at mask IoU 0.5 the acrosome share error
(points; also without the heads annotated with no acrosome and a nucleus of 2+ polygons,
sperm_d2.data.label_checks) and the vacuole count (sperm_d2.benchmark.parts). Writes
OUTPUT/parts_results_<split>.json and .md.

Examples:
    python benchmarks/parts_real_data.py --data ../shared/data \
        --reference output/real_data/sperm_parsing/split/data \
        --output output/real_data/sperm_parsing/parts
    python benchmarks/parts_real_data.py ... --no-train --split val
    python benchmarks/parts_real_data.py ... --no-train --detector output/.../split/train
    python benchmarks/parts_real_data.py ... --no-train --models head --annotated-heads --split val
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.benchmark.parts import PART_MODELS, format_results, run_parts_benchmark


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], epilog=__doc__)
    p.add_argument(
        "--data",
        default=os.environ.get("SPERM_D2_REAL_DATA", ""),
        help="folder holding sperm_parsing/ (default $SPERM_D2_REAL_DATA)",
    )
    p.add_argument("--reference", required=True, help="the head detector's split root")
    p.add_argument("--output", default="output/real_data/sperm_parsing/parts")
    p.add_argument("--split", default="test", help="split to report on (default test)")
    p.add_argument("--detector", default=None, help="detector run: its heads get the parts")
    p.add_argument("--no-train", action="store_true", help="evaluate the trained runs as they are")
    p.add_argument(
        "--annotated-heads",
        action="store_true",
        help="give the head segmenter the annotated heads instead of --detector's (the outline "
        "taken as known: the part model's own error; with --no-train)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        choices=sorted(PART_MODELS),
        default=["field", "head"],
        help="part segmenters: field (OUTPUT/train) and/or head (OUTPUT/head_train; needs "
        "--detector)",
    )
    return p  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if args.annotated_heads and (args.detector or not args.no_train):
        parser.error("--annotated-heads evaluates trained runs: give --no-train, not --detector")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    fields = Path(args.data) / "sperm_parsing"
    if not fields.is_dir():
        raise SystemExit(f"parts_real_data.py: error: {fields} not found (--data)")
    results = run_parts_benchmark(
        fields,
        Path(args.reference),
        Path(args.output),
        args.split,
        Path(args.detector) if args.detector else None,
        train=not args.no_train,
        models=tuple(args.models),
        annotated=args.annotated_heads,
    )
    print(format_results(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
