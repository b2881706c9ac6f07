#!/usr/bin/env python
"""Balance classes offline: add augmented copies of minority-class images (labelme in and out).

The output folder holds a labelme JSON for every original (pointing at the untouched original
image) plus PNG + JSON for each augmented copy; copies follow their source into the same split.

Example:
    python tools/balance_data.py --input my_labelme/ --output my_balanced/ --target 650
    python tools/prepare_data.py --input my_balanced/ --image-root my_labelme/ \
        --output datasets/sperm
"""

import argparse
import json
import logging

from sperm_d2.data.balance import balance_labelme
from sperm_d2.data.labels import LabelMap


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--input", required=True, help="labelme folder (not modified)")
    p.add_argument("--output", required=True, help="folder for the balanced labelme dataset")
    p.add_argument("--labels", default="configs/labels/default.yaml", help="label map YAML")
    p.add_argument("--target", type=int, default=None, help="images per class (default: largest)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    return p


def main(args: argparse.Namespace) -> None:
    counts = balance_labelme(
        args.input, args.output, LabelMap.load(args.labels), args.target, args.seed
    )
    print(json.dumps(counts, indent=2))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(get_parser().parse_args())
