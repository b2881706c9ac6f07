"""Find, outline and grade sperm heads in images, folders, globs and videos.

Usage:
    python tools/infer.py --run output/demo/train --input data/sample_A data/clip.mp4 \\
        --output output/infer [--confidence-threshold 0.5] [--um-per-px 0.1] [--frame-stride 2] \\
        [--labelme] [--opts MODEL.DEVICE cpu]
    python tools/infer.py --config-file configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml \\
        --weights model_best.pth --input "images/**/*.png" --output output/infer

Writes overlays/, videos/<name>_annotated.mp4, instances.csv (one row per head, with
morphometrics), images.jsonl (one line per image/frame), summary.json, and labelme/ with
--labelme; prints the per-sample table (% good). Exit code 0 only if an input was processed.
"""

import argparse
import json
import logging
import sys
from pathlib import Path

from sperm_d2.config import ConfigError
from sperm_d2.inference import InferOptions, SpermPredictor, add_model_arguments, run_inference
from sperm_d2.inference.records import format_summary_table


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--input", nargs="+", required=True, help="images, folders, globs, videos")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--confidence-threshold",
        type=float,
        default=None,
        help="minimum score (default: SPERM.CONFIDENCE_THRESHOLD)",
    )
    p.add_argument("--um-per-px", type=float, default=None, help="µm per pixel for morphometrics")
    p.add_argument("--frame-stride", type=int, default=1, help="process every n-th video frame")
    p.add_argument("--labelme", action="store_true", help="also write labelme JSON + image copies")
    p.add_argument("--no-overlays", action="store_true", help="do not write overlay images")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.frame_stride < 1:
        sys.exit("--frame-stride must be >= 1")
    predictor = SpermPredictor.load(
        args.run, args.config_file, args.weights, args.opts, args.confidence_threshold, args.grader
    )
    um = predictor.cfg.SPERM.UM_PER_PX if args.um_per_px is None else args.um_per_px
    opts = InferOptions(
        Path(args.output),
        um_per_px=um,
        frame_stride=args.frame_stride,
        labelme=args.labelme,
        overlays=not args.no_overlays,
    )
    summary = run_inference(predictor, args.input, opts)
    print(format_summary_table(summary, predictor.class_names))
    print(json.dumps({k: summary[k] for k in ("processed", "images_per_second", "seconds")}))
    return 0 if summary["processed"] > 0 else 1


if __name__ == "__main__":
    try:
        sys.exit(main(parse_args()))
    except (OSError, ValueError, KeyError, ConfigError) as e:  # one actionable line, no traceback
        sys.exit(f"infer.py: error: {e}")
