"""Evaluate a trained model on a COCO split or on class folders of single-cell crops.

Usage:
    # registered split (data root from the run's SPERM.DATA_ROOT or $SPERM_D2_DATASETS):
    python tools/evaluate.py --run output/demo/train --dataset sperm_test --val-dataset sperm_val \\
        --output output/demo/eval
    # class folders (SMIDS/HuSHeM style), threshold chosen on val folders, reported on test:
    python tools/evaluate.py --run output/demo/train --folders crops/test --val-folders crops/val \\
        --label-map configs/labels/default.yaml --output output/eval_folders
    # the same on the images of COCO splits that prepare_data.py --from-folders wrote:
    python tools/evaluate.py --run output/hushem/train \\
        --folders datasets/hushem/annotations/test.json \\
        --val-folders datasets/hushem/annotations/val.json --output output/eval_hushem

COCO mode prints the AP table (per class), pixellib/mAP50 and the instance metrics at the
val-chosen threshold; folder mode prints accuracy, sensitivity/specificity for bad, F1, the
no-head count and the confusion matrix, and writes confusion_matrix.png and misclassified.png.
Both write metrics.json into --output, built beside it and moved into place at the end; an
existing --output is replaced only with --overwrite (and only if it holds an earlier evaluate.py
output). Class-folder images and split images that cannot be read are skipped, one warning
each, and listed in metrics.json and the summary (a split's skipped images leave every metric,
annotations too), those of --val-folders/--val-dataset as well: each file once, with the parts
that lost it ("val": the threshold was chosen without it, "test": reported without it).

Exit code: 0 clean; 1 when images were skipped (those listed in metrics.json); 2 when nothing was
written (bad arguments, model, inputs or output folder, nothing evaluated), with one line saying
why.
"""

import argparse

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.cli import deprecated_alias, start, tool_main
from sperm_d2.evaluation.job import check_evaluation, run_evaluation
from sperm_d2.inference import SpermPredictor, add_model_arguments
from sperm_d2.inference.arguments import unit_interval
from sperm_d2.inference.model_source import check_model_source

PROG = "evaluate.py"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_model_arguments(p)
    p.add_argument("--dataset", default=None, help="registered split to report on (<prefix>_test)")
    p.add_argument("--val-dataset", default=None, help="split to choose the threshold on")
    p.add_argument(
        "--folders",
        default=None,
        help="class-folder root (or a COCO split .json of prepare_data.py --from-folders) to "
        "report on",
    )
    p.add_argument("--val-folders", default=None, help="the same, to choose the threshold on")
    p.add_argument("--label-map", default="configs/labels/default.yaml", help="label map YAML")
    p.add_argument(
        "--score-floor",
        type=unit_interval,
        default=0.05,
        help="model score floor in [0, 1]: detections below it never reach the metrics (AP "
        "needs the low-scoring ones). Not the reporting threshold (infer.py's "
        "--confidence-threshold): that one is chosen on --val-dataset/--val-folders, else "
        "SPERM.CONFIDENCE_THRESHOLD",
    )
    deprecated_alias(p, "--min-score", "--score-floor")
    p.add_argument("--output", required=True, help="output folder (new, empty, or --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluate.py output")
    return p


@tool_main(PROG)
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    mode = dict(
        dataset=args.dataset,
        val_dataset=args.val_dataset,
        folders=args.folders,
        val_folders=args.val_folders,
        label_map_path=args.label_map,
        overwrite=args.overwrite,
    )
    # every check before a model loads or a folder is made
    src = check_model_source(args.run, args.config_file, args.weights, args.opts, args.grader)
    check_evaluation(src.cfg, args.output, reads=[("the model", p) for p in src.reads], **mode)
    predictor = SpermPredictor.from_source(src, args.score_floor)
    result, text = run_evaluation(predictor, args.output, **mode)
    print(text)
    return 1 if result.get("skipped") else 0


if __name__ == "__main__":
    start(main)
