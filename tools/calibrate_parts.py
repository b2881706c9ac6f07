#!/usr/bin/env python
"""Choose a trained part segmenter's per-class logit biases on val and write them into its run.

The segmenter's plain arg-max over-calls thin parts (its loss weights them up) and is not the
best decision for IoU; a bias per class, chosen on the val split's pixels to maximise the mean
part IoU, fixes each class's threshold. The run's config.yaml gets SPERM.PARTS.LOGIT_BIAS (then
infer.py --parts, --eval-only and the benchmarks use them), calibration.json what was chosen
and the val mIoU before and after (on the sampled pixels). Calibrate on val, never on test;
calibrate again after training into the folder anew.

Exit code: 0 done; 2 on an input problem (one line: not a part run, no such split...).

Examples:
    python tools/calibrate_parts.py --run output/parts                 # the run's val split
    python tools/calibrate_parts.py --run output/head_parts --dataset sperm_val
"""

import argparse
import json

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.cli import start, tool_main
from sperm_d2.engine.part_calibration import calibrate_part_run

PROG = "calibrate_parts.py"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--run", required=True, help="part segmenter run folder (config.yaml updated)")
    p.add_argument(
        "--dataset", default=None, help="registered split (default: the run's DATASETS.TEST[0])"
    )
    p.add_argument(
        "--weights", default=None, help="checkpoint (default: the run's model_best/model_final)"
    )
    return p


@tool_main(PROG)  # InputError, a config problem, a full disk...: one line, exit 2
def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    result = calibrate_part_run(args.run, dataset=args.dataset, weights=args.weights)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    start(main)
