#!/usr/bin/env python
"""Generate synthetic microscope data for demos and tests: labelme scenes (PNG + JSON, the
default), single-head crops in class folders (--crops) or a microscope video (--video).

Examples:
    # labelme scenes, then COCO splits
    python tools/make_synthetic.py --output datasets/synthetic_labelme --num-images 160 --size 192
    python tools/prepare_data.py --input datasets/synthetic_labelme --output datasets/sperm
    # 24 crops per split in OUTPUT/{val,test}/{normal,abnormal}/ (SMIDS layout), for
    # tools/evaluate.py --folders OUTPUT/test --val-folders OUTPUT/val
    python tools/make_synthetic.py --output datasets/synthetic_crops --crops 24
    # a 60-frame 320x256 video at 10 fps, for tools/infer.py --input
    python tools/make_synthetic.py --output clips/microscope.mp4 --video 60 --seed 7
"""

import argparse

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.cli import start, tool_main
from sperm_d2.data.synthetic_io import (
    make_synthetic_crops,
    make_synthetic_dataset,
    write_synthetic_video,
)

PROG = "make_synthetic.py"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--output", required=True, help="folder to write into; with --video the video file"
    )
    kind = p.add_mutually_exclusive_group()
    kind.add_argument(
        "--num-images", type=int, default=160, help="labelme scenes to write (default 160)"
    )
    kind.add_argument(
        "--crops",
        type=int,
        metavar="N",
        help="write N single-head crops per split into OUTPUT/{val,test}/{normal,abnormal}/",
    )
    kind.add_argument(
        "--video", type=int, metavar="FRAMES", help="write a FRAMES-frame video (.mp4 or .avi)"
    )
    p.add_argument("--size", type=int, help="image side in pixels (default 192; 170 with --crops)")
    p.add_argument(
        "--frame-size",
        type=int,
        nargs=2,
        metavar=("HEIGHT", "WIDTH"),
        help="with --video: frame size (default 256 320)",
    )
    p.add_argument("--fps", type=float, help="with --video: frame rate (default 10)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    return p


@tool_main(PROG)
def main(argv: list[str] | None = None) -> int:
    p = get_parser()
    args = p.parse_args(argv)
    # options that do not apply to the chosen output are errors, not ignored
    if args.video is None and (args.frame_size is not None or args.fps is not None):
        p.error("--frame-size and --fps only apply to --video")
    if args.video is not None and args.size is not None:
        p.error("--size does not apply to --video; use --frame-size HEIGHT WIDTH")
    if args.video is not None:
        height, width = args.frame_size or (256, 320)
        fps = 10.0 if args.fps is None else args.fps
        write_synthetic_video(
            args.output, num_frames=args.video, height=height, width=width, seed=args.seed, fps=fps
        )
    elif args.crops is not None:
        make_synthetic_crops(args.output, args.crops, args.size or 170, args.seed)
    else:
        make_synthetic_dataset(args.output, args.num_images, args.size or 192, args.seed)
    return 0


if __name__ == "__main__":
    start(main)
