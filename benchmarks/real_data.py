#!/usr/bin/env python
"""Real-data accuracy benchmark: HuSHeM and SMIDS class-folder crops and Sperm Parsing full
microscope fields, end to end.

For each dataset: auto-annotate the crops and write a stratified train/val/test split
(tools/prepare_data.py), train (tools/train_net.py, model selected on val), then evaluate on the
TEST split (tools/evaluate.py): COCO segm AP/AP50, pixellib/mAP50, and image-level good/bad
accuracy, sensitivity and specificity for bad (score threshold chosen on val). A head grader
(--grader-config, second stage) is trained on the same split and the evaluation is repeated
with it (detector + grader, side by side with detector only), and the grader alone is scored on
the ground-truth head masks of the reported part (grading errors apart from detection errors).
A grader other than the default trains into its own folder (grader_<config name>, or
grader_<--grader-name>) beside the detector's run, with its own results files, so several
graders are compared on the same detectors (a finished detector training is reused).
On HuSHeM it also runs K-fold cross-validation (the literature's protocol): each fold trains
on K-1 parts and is reported on the held-out part (final checkpoint, threshold chosen on the
fold's training part, so nothing is selected on the reported part); the table gives mean +- std
over folds.

On Sperm Parsing (--datasets sperm_parsing: labelme fields, every sperm annotated in parts) the
heads (acrosome + nucleus + vacuoles of one sperm) are split train/val/test, the full-field
detector (--fields-config) is trained and selected on val, and test gets COCO segm/bbox AP,
AP50, AP75, head recall at mask IoU 0.5, the median IoU of matched heads, the accuracy of the
"cut by the border" flag, and infer.py's seconds per field (--field-grader: a head grader grades
the fields' heads there; these fields have no grades, so nothing scores them).

Every step is a subprocess call to the tools, printed as a command anyone can rerun; their logs
and run folders go under --output. Writes OUTPUT/results.json and OUTPUT/results.md (a Markdown
table for README's "Results" section, next to the study's 0.891 / 98 %; results_<grader>.* for a
grader other than the default).

Real data are read from --data or $SPERM_D2_REAL_DATA (a folder holding hushem/, smids_train/
and sperm_parsing/); they are never copied, except that --smoke copies a few crops per class (a
few fields) into a temporary folder that is removed at the end.

Examples:
    python benchmarks/real_data.py --data ../shared/data --output output/real_data
    python benchmarks/real_data.py --data ../shared/data --datasets hushem --kfold 5 --folds 0,1
    python benchmarks/real_data.py --data ../shared/data --smoke --output output/real_data_smoke
    python benchmarks/real_data.py --data ../shared/data --datasets sperm_parsing
    python benchmarks/real_data.py --data ../shared/data --datasets hushem --protocols kfold \
        --grader-config configs/sperm_grader_part_unet_cpu.yaml \
        --grader-opts MODEL.WEIGHTS output/head_parts/model_best.pth
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path
from typing import Sequence

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.benchmark.options import (
    DEFAULT_CONFIG,
    DEFAULT_FIELDS_CONFIG,
    DEFAULT_GRADER_CONFIG,
    ENV_REAL_DATA,
    check_args,
    resolve_data_root,
)
from sperm_d2.benchmark.protocol import results_stem, run_benchmark
from sperm_d2.benchmark.results_table import format_table


def get_parser() -> argparse.ArgumentParser:
    """The benchmark's options; :func:`parse_args` checks their values."""
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        default=None,
        help=f"folder holding hushem/ and smids_train/ (default: ${ENV_REAL_DATA})",
    )
    p.add_argument("--output", default="output/real_data", help="run folders, logs, results")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="training config YAML (crops)")
    p.add_argument(
        "--fields-config", default=DEFAULT_FIELDS_CONFIG, help="training config YAML (fields)"
    )
    p.add_argument(
        "--datasets", default="hushem,smids", help="which of: hushem,smids,sperm_parsing"
    )
    p.add_argument(
        "--field-grader",
        default=None,
        help="head-grader run folder that grades the fields' heads in the infer.py step "
        "(shown, not scored: the fields have no grades)",
    )
    p.add_argument("--seed", type=int, default=0, help="split seed (same seed, same split)")
    p.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test ratios (stratified)")
    p.add_argument("--kfold", type=int, default=5, help="K-fold CV on HuSHeM (0: none)")
    p.add_argument("--folds", default=None, help="run only these folds, e.g. 0,1 (default all)")
    p.add_argument(
        "--max-iter", type=int, default=None, help="override the config's SOLVER.MAX_ITER"
    )
    p.add_argument(
        "--grader-config",
        default=DEFAULT_GRADER_CONFIG,
        help="head-grader config trained per split and fold ('none': detector only)",
    )
    p.add_argument(
        "--grader-epochs", type=int, default=None, help="override the grader's SPERM.EPOCHS"
    )
    p.add_argument(
        "--grader-opts",
        nargs="+",
        default=[],
        metavar="KEY VALUE",
        help="config KEY VALUE pairs for the grader's training alone (e.g. MODEL.WEIGHTS of a "
        "pretrained backbone; --opts reaches the detector's)",
    )
    p.add_argument(
        "--grader-name",
        default=None,
        help="names the grader's folders and results (grader_<name>, results_<name>.json; "
        "default: the config's file name, none for the default config): two settings of one "
        "config compared on the same detectors",
    )
    p.add_argument(
        "--protocols",
        default="split,kfold",
        help="which of: split (train/val/test), kfold (HuSHeM's K-fold CV; --datasets hushem)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="end-to-end check in minutes: a few crops per class, a handful of iterations",
    )
    p.add_argument("--smoke-images", type=int, default=8, help="crops per class folder in --smoke")
    p.add_argument("--workers", type=int, default=1, help="prepare_data.py worker processes")
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="extra config KEY VALUE")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and check the arguments; bad values exit with status 2 and a one-line message."""
    parser = get_parser()
    args = parser.parse_args(argv)
    try:
        check_args(args)
    except ValueError as e:
        parser.error(str(e))
    return args


def setup_logging() -> None:
    """The steps' commands and progress on stdout, failures on stderr, as plain lines."""
    progress = logging.StreamHandler(sys.stdout)
    progress.addFilter(lambda record: record.levelno < logging.ERROR)
    failures = logging.StreamHandler(sys.stderr)
    failures.setLevel(logging.ERROR)
    failures.setFormatter(logging.Formatter("real_data.py: %(message)s"))
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[progress, failures])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 when every dataset ran or was skipped, 1 when one failed."""
    args = parse_args(argv)
    setup_logging()
    out = Path(args.output).absolute()
    argv = sys.argv[1:] if argv is None else argv
    command = shlex.join(["python", "benchmarks/real_data.py", *argv])
    results = run_benchmark(args, resolve_data_root(args.data), out, command)
    if results is None:  # every dataset skipped (the reasons are logged), nothing written
        return 0
    print(format_table(results))
    stem = out / results_stem(args)
    print(f"wrote {stem}.json and {stem}.md")
    return 1 if any("error" in res for res in results["datasets"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
