"""Find, outline and grade sperm heads in images, folders, globs and videos.

Usage:
    python tools/infer.py --run output/demo/train --input data/sample_A data/clip.mp4 \\
        --output output/infer [--confidence-threshold 0.5] [--um-per-px 0.1] [--frame-stride 2] \\
        [--labelme] [--parts output/parts/train [output/head_parts]] [--opts MODEL.DEVICE cpu]
    python tools/infer.py --config-file configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml \\
        --weights model_best.pth --input "images/**/*.png" --output output/infer

Writes overlays/, videos/<name>_annotated.mp4, instances.csv (one row per head, with
morphometrics), images.jsonl (one line per image/frame), summary.json, report.html (open it in a
browser: % good per sample with its 95 % interval against the WHO reference, morphometric
plots, a gallery of heads, skipped files) and REPORT.md, and labelme/ with --labelme; with
--parts (a part segmenter run) each head also gets its parts, the WHO strict criteria in
instances.csv / images.jsonl / the report, and its parts as polygons in labelme/; prints the
per-sample table (% good). The outputs are built beside --output and
replace it whole at the end; an existing --output is replaced only with --overwrite (and only if
it holds an earlier infer.py output). Unreadable images/videos are skipped, one warning each,
and listed in summary.json (a video that ends early is listed under "incomplete").

Exit code: 0 clean; 1 when inputs were skipped or a video ended early; 2 when nothing was written
(bad arguments, model, inputs or output folder, or nothing processed), with one line saying why.
"""

import argparse
import json
from pathlib import Path

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.cli import start, tool_main
from sperm_d2.errors import InputError
from sperm_d2.inference import InferOptions, SpermPredictor, add_model_arguments, run_inference
from sperm_d2.inference.arguments import non_negative, positive_int, unit_interval
from sperm_d2.inference.job import INFER_OUTPUTS
from sperm_d2.inference.model_source import check_model_source
from sperm_d2.inference.records import format_summary_table
from sperm_d2.inference.sources import check_inputs, input_anchors
from sperm_d2.output_folder import check_output_dir
from sperm_d2.parts.parser import check_part_runs, part_runs

PROG = "infer.py"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_model_arguments(p)
    p.add_argument(
        "--parts",
        nargs="+",
        default=None,
        help="part segmenter run folder(s), a field and/or a head segmenter: each head gets its "
        "parts and the WHO criteria (default: the detector run's SPERM.PARTS.RUN, if set; "
        "'none': no parts)",
    )
    p.add_argument("--input", nargs="+", required=True, help="images, folders, globs, videos")
    p.add_argument("--output", required=True, help="output folder (new, empty, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier infer.py output")
    p.add_argument(
        "--confidence-threshold",
        type=unit_interval,
        default=None,
        help="score in [0, 1] a head needs to be reported: heads below it are left out of every "
        "output (default: SPERM.CONFIDENCE_THRESHOLD)",
    )
    p.add_argument("--um-per-px", type=non_negative, default=None, help="µm per pixel (>= 0)")
    p.add_argument("--frame-stride", type=positive_int, default=1, help="every n-th video frame")
    p.add_argument("--labelme", action="store_true", help="also write labelme JSON + image copies")
    p.add_argument("--no-overlays", action="store_true", help="do not write overlay images")
    p.add_argument(
        "--no-report", action="store_true", help="do not write report.html and REPORT.md"
    )
    return p


@tool_main(PROG)
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    # every check before a model loads or a folder is made
    src = check_model_source(args.run, args.config_file, args.weights, args.opts, args.grader)
    runs = part_runs(args.parts, src.cfg)
    if runs:
        check_part_runs(runs)  # part segmenter runs with checkpoints, or one line saying why not
    check_inputs(args.input)
    reads = [("--input", p) for i in args.input for p in input_anchors(i)]
    reads += [("the model", p) for p in src.reads]
    check_output_dir(args.output, args.overwrite, INFER_OUTPUTS, keep=reads)
    predictor = SpermPredictor.from_source(src, args.confidence_threshold, parts_run=args.parts)
    um = predictor.cfg.SPERM.UM_PER_PX if args.um_per_px is None else args.um_per_px
    opts = InferOptions(
        Path(args.output),
        um_per_px=um,
        frame_stride=args.frame_stride,
        labelme=args.labelme,
        overlays=not args.no_overlays,
        report=not args.no_report,
        overwrite=args.overwrite,
    )
    summary = run_inference(predictor, args.input, opts)
    if not summary["processed"]:
        first = summary["skipped"][0] if summary["skipped"] else {"path": "?", "reason": "?"}
        raise InputError(
            f"nothing processed: {len(summary['skipped'])} input(s) skipped "
            f"(first: {first['path']}: {first['reason']}); {args.output} not written"
        )
    print(format_summary_table(summary, predictor.class_names))
    print(json.dumps({k: summary[k] for k in ("processed", "images_per_second", "seconds")}))
    return 1 if summary["skipped"] or summary["incomplete"] else 0


if __name__ == "__main__":
    start(main)
