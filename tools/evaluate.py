"""Evaluate a trained model on a COCO split or on class folders of single-cell crops.

Usage:
    # registered split (data root from the run's SPERM.DATA_ROOT or $SPERM_D2_DATASETS):
    python tools/evaluate.py --run output/demo/train --dataset sperm_test --val-dataset sperm_val \\
        --output output/demo/eval
    # class folders (SMIDS/HuSHeM style), threshold chosen on val folders, reported on test:
    python tools/evaluate.py --run output/demo/train --folders crops/test --val-folders crops/val \\
        --label-map configs/labels/default.yaml --output output/eval_folders

COCO mode prints the AP table (per class), pixellib/mAP50 and the instance metrics at the
val-chosen threshold; folder mode prints accuracy, sensitivity/specificity for bad, F1, the
no-head count and the confusion matrix, and writes confusion_matrix.png and misclassified.png.
Both write metrics.json into --output.
"""

import argparse
import logging
import sys

from sperm_d2.config import ConfigError
from sperm_d2.evaluation.run import run_evaluation
from sperm_d2.inference import SpermPredictor, add_model_arguments


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_arguments(p)
    p.add_argument("--dataset", default=None, help="registered split to report on (<prefix>_test)")
    p.add_argument("--val-dataset", default=None, help="split to choose the threshold on")
    p.add_argument("--folders", default=None, help="class-folder root to report on")
    p.add_argument(
        "--val-folders", default=None, help="class-folder root to choose the threshold on"
    )
    p.add_argument("--label-map", default="configs/labels/default.yaml", help="label map YAML")
    p.add_argument("--min-score", type=float, default=0.05, help="model score floor (AP needs low)")
    p.add_argument("--output", required=True, help="output folder")
    return p.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    predictor = SpermPredictor.load(
        args.run, args.config_file, args.weights, args.opts, args.min_score, args.grader
    )
    _, text = run_evaluation(
        predictor,
        args.output,
        args.dataset,
        args.val_dataset,
        args.folders,
        args.val_folders,
        args.label_map,
    )
    print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(parse_args()))
    except (OSError, ValueError, KeyError, ConfigError) as e:  # one actionable line, no traceback
        sys.exit(f"evaluate.py: error: {e}")
