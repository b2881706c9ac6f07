#!/usr/bin/env python
"""Draw ground-truth masks and classes of a registered split to PNGs (raw or augmented).

Registers the splits under SPERM.DATA_ROOT (else $SPERM_D2_DATASETS, else ./datasets/sperm)
first; --split takes the split suffix ("train") or the full dataset name ("sperm_train").

Exit code: 0 done; 1 when images were skipped (unreadable: one warning each); 2 when nothing was
drawn (bad arguments, config or split, no readable image), with one line saying why.

Example:
    python tools/visualize_data.py --config-file configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml \\
        --split train --source augmented --output output/vis --num 8 --opts SPERM.AUG.ROT90 True
"""

import argparse

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.cli import add_opts_argument, config_overrides, deprecated_alias, start, tool_main
from sperm_d2.config import setup_cfg
from sperm_d2.data.register import register_sperm_datasets
from sperm_d2.data.visualize import draw_dataset
from sperm_d2.errors import InputError

PROG = "visualize_data.py"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config-file", default=None, help="experiment YAML")
    p.add_argument("--split", default="train", help="split suffix or registered dataset name")
    p.add_argument(
        "--source",
        choices=["annotation", "augmented"],
        default="annotation",
        help="draw the annotations as stored, or after the training augmentations",
    )
    p.add_argument("--output", default=None, help="folder for the PNGs (required)")
    deprecated_alias(p, "--output-dir", "--output")
    p.add_argument("--num", type=int, default=16, help="number of images to draw")
    p.add_argument("--seed", type=int, default=0, help="augmentation seed")
    add_opts_argument(p, trailing=True)
    p.add_argument(
        "opts",
        nargs=argparse.REMAINDER,
        help="the same overrides without --opts (detectron2's way)",
    )
    return p


@tool_main(PROG)
def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    if not args.output:  # not required=True: its deprecated spelling --output-dir fills it too
        parser.error("the following arguments are required: --output")
    cfg = setup_cfg(args.config_file, config_overrides(args))
    names = register_sperm_datasets(cfg)
    name = args.split if args.split in names else f"{cfg.SPERM.DATASET_PREFIX}_{args.split}"
    if name not in names:
        raise InputError(f"--split {args.split}: no such split; registered: {names}")
    augmented = args.source == "augmented"
    written, skipped = draw_dataset(
        name, args.output, num=args.num, cfg=cfg, augmented=augmented, seed=args.seed
    )
    if not written:
        raise InputError(f"--split {args.split}: none of {len(skipped)} image(s) readable")
    return 1 if skipped else 0


if __name__ == "__main__":
    start(main)
