#!/usr/bin/env python
"""Train the sperm-head Mask R-CNN (or evaluate a checkpoint), detectron2 style.

Usage:
    python tools/train_net.py --config-file configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml \
        SPERM.DATA_ROOT datasets/sperm OUTPUT_DIR output/run1
    python tools/train_net.py --config-file configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml --resume \
        OUTPUT_DIR output/run1                       # continue a stopped run
    python tools/train_net.py --config-file output/run1/config.yaml --eval-only \
        MODEL.WEIGHTS output/run1/model_best.pth     # COCO AP + pixellib/mAP50 on DATASETS.TEST
    python tools/train_net.py --config-file ... --num-gpus 2   # 2 processes (GPUs, or CPU/gloo)

Config overrides KEY VALUE ... come last, bare (detectron2's train_net.py) or after --opts as in
every other tool (--opts OUTPUT_DIR output/run1); both forms may be combined.

The config, datasets, OUTPUT_DIR and MODEL.WEIGHTS are checked before the run folder is made;
any problem is one line on stderr (exit 2: config/data, 1: checkpoint or a failed run); an
unexpected error is a bug: its traceback, one line asking for a report, exit 70.

The run folder (OUTPUT_DIR) receives config.yaml, run_info.json, checkpoints, model_best.pth with
best_model.json, metrics.json, results.csv and plot_*.png (see sperm_d2.engine); training into a
folder that holds a run needs --resume. --eval-only writes eval_results.json, eval_config.yaml,
eval_info.json and eval_inference/, leaving a training's own files alone.
"""

import argparse

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.cli import INPUT_ERRORS, start, tool_main
from sperm_d2.config import ConfigError
from sperm_d2.engine import (
    CheckpointError,
    TrainingDivergedError,
    build_argument_parser,
    launch_from_args,
)

PROG = "train_net.py"
#: config/data problems: exit 2; a checkpoint, a diverged run or a full disk: exit 1; anything
#: else is a bug (traceback, sperm_d2.cli.BUG)
ERRORS = [((ConfigError,), 2), ((TrainingDivergedError, CheckpointError), 1), INPUT_ERRORS]


def get_parser() -> argparse.ArgumentParser:
    return build_argument_parser(epilog=__doc__)


@tool_main(
    PROG,
    errors=ERRORS,
    interrupted="interrupted (Ctrl-C); continue it with --resume",
    environment=1,
)
def main(argv: list[str] | None = None) -> int:
    launch_from_args(get_parser().parse_args(argv))
    return 0


if __name__ == "__main__":
    start(main, basic_logging=False)  # detectron2's loggers, set up per run folder
