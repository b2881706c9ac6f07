#!/usr/bin/env python
"""Turn labelme files (or class folders of single-cell crops) into validated COCO splits.

Writes DATA_ROOT/annotations/{train,val,test}.json (or fold{i}_{train,val}.json with --kfold)
and report.json, and prints the data report. Images are not copied: COCO file_name is the image
path relative to DATA_ROOT. Bad files are skipped, one line each on stderr, and the run goes on.
Nothing is written when the run cannot produce every split; only files an earlier run of this
tool wrote (unchanged since) are replaced or removed; --input may not overlap what is written.

Exit code: 0 clean; 1 when files were skipped (or, with --strict, on any warning); 2 when
nothing was written (bad arguments, no usable file, an empty split), with one line saying why.

Examples:
    python tools/prepare_data.py --input my_labelme/ --output datasets/sperm --split 0.7,0.15,0.15
    python tools/prepare_data.py --input ../shared/data/hushem --from-folders \\
        --output datasets/hushem --kfold 5 --contact-sheet /tmp/contact_hushem.png
    python tools/prepare_data.py --input my_balanced/ --image-root my_labelme/ \\
        --output datasets/sperm    # after tools/balance_data.py
"""

import argparse
import sys
from pathlib import Path

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.cli import deprecated_alias, start, tool_main
from sperm_d2.data.contact_sheet import write_contact_sheets
from sperm_d2.data.dataset_report import format_report, problem_line
from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import LABELME_DIR, exit_code, prepare_dataset
from sperm_d2.data.problems import InputError
from sperm_d2.data.split import parse_ratios

PROG = "prepare_data.py"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--input", required=True, help="labelme folder, or class folders with --from-folders"
    )
    p.add_argument(
        "--from-folders",
        action="store_true",
        help="input holds one folder per class of single-cell crops: auto-annotate them",
    )
    p.add_argument("--output", required=True, help="data root to write annotations/ into")
    p.add_argument("--label-map", default="configs/labels/default.yaml", help="label map YAML")
    deprecated_alias(p, "--labels", "--label-map")
    p.add_argument("--split", default="0.7,0.15,0.15", help="train,val[,test] ratios")
    p.add_argument("--seed", type=int, default=0, help="split seed")
    p.add_argument("--kfold", type=int, default=0, help="write K train/val folds (test held out)")
    p.add_argument("--strict", action="store_true", help="exit non-zero on warnings too")
    p.add_argument(
        "--contact-sheet",
        default=None,
        help="with --from-folders: write overlay contact sheets PATH_<folder>.png to review",
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--image-root",
        action="append",
        default=[],
        help="another folder images may live in (e.g. the originals of a balanced set)",
    )
    return p


@tool_main(PROG)  # InputError, LabelMapError, a full disk...: one line, exit 2
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.contact_sheet and not args.from_folders:
        raise InputError("--contact-sheet needs --from-folders")
    report = prepare_dataset(
        args.input,
        args.output,
        LabelMap.load(args.label_map),
        ratios=parse_ratios(args.split),
        seed=args.seed,
        kfold=args.kfold,
        workers=args.workers,
        from_folders=args.from_folders,
        image_roots=args.image_root,
    )
    print(format_report(report, max_problems=0))
    for problem in report["problems"]["list"]:
        print(f"{PROG}: {problem_line(problem)}", file=sys.stderr)
    if args.contact_sheet:
        write_contact_sheets(Path(args.output) / LABELME_DIR, args.contact_sheet)
    return exit_code(report, args.strict)


if __name__ == "__main__":
    start(main)
