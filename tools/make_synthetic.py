#!/usr/bin/env python
"""Generate a synthetic microscope dataset (PNG + labelme JSON) for demos and tests.

Example:
    python tools/make_synthetic.py --output datasets/synthetic_labelme --num-images 160 --size 192
    python tools/prepare_data.py --input datasets/synthetic_labelme --output datasets/sperm
"""

import argparse
import logging

from sperm_d2.data.synthetic_io import make_synthetic_dataset


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--output", required=True, help="folder to write the labelme files into")
    p.add_argument("--num-images", type=int, default=160, help="number of images (default 160)")
    p.add_argument("--size", type=int, default=192, help="image side in pixels (default 192)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return p


def main(args: argparse.Namespace) -> None:
    make_synthetic_dataset(args.output, args.num_images, args.size, args.seed)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    main(get_parser().parse_args())
