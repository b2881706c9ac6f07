#!/usr/bin/env python
"""Balance classes offline: add augmented copies of minority-class images (labelme in and out).

The output folder holds a labelme JSON for every original (pointing at the untouched original
image) plus PNG + JSON for each augmented copy; copies follow their source into the same split.
The folder appears whole or not at all; a rerun replaces an earlier run's output, never files
it did not write. Unusable input files are skipped, one line each on stderr.

Exit code: 0 clean; 1 when input files were skipped; 2 when nothing was written (one line why).

Example:
    python tools/balance_data.py --input my_labelme/ --output my_balanced/ --target 650
    python tools/prepare_data.py --input my_balanced/ --image-root my_labelme/ \\
        --output datasets/sperm
"""

import argparse
import json
import sys

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.cli import deprecated_alias, start, tool_main
from sperm_d2.data.balance import balance_labelme
from sperm_d2.data.labels import LabelMap

PROG = "balance_data.py"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--input", required=True, help="labelme folder (not modified)")
    p.add_argument("--output", required=True, help="folder for the balanced labelme dataset")
    p.add_argument("--label-map", default="configs/labels/default.yaml", help="label map YAML")
    deprecated_alias(p, "--labels", "--label-map")
    p.add_argument("--target", type=int, default=None, help="images per class (default: largest)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    return p


@tool_main(PROG)  # InputError, LabelMapError, a full disk...: one line, exit 2
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    counts = balance_labelme(
        args.input, args.output, LabelMap.load(args.label_map), target=args.target, seed=args.seed
    )
    lines = counts["skipped"].pop("lines")
    print(json.dumps(counts, indent=2))
    for line in lines:
        print(f"{PROG}: skipped {line}", file=sys.stderr)
    return 1 if lines else 0


if __name__ == "__main__":
    start(main)
