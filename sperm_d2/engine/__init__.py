"""Training engine: ``SpermTrainer`` (DefaultTrainer + hooks) and the run entry point.

Run folder (``OUTPUT_DIR``): ``config.yaml`` (resolved), ``run_info.json`` (version, git commit,
seed, command), ``model_XXXXXXX.pth`` / ``model_final.pth`` / ``last_checkpoint``,
``model_best.pth`` + ``best_model.json`` (by ``SPERM.BEST_METRIC``), optionally
``model_best_val_loss.pth`` + ``best_val_loss.json``, ``metrics.json`` (training losses,
``validation_loss``/``val_*``, ``bbox/*``, ``segm/*``, ``pixellib/*``), ``results.csv`` (one row
per evaluation), ``plot_loss.png``, ``plot_validation_loss.png``, ``plot_ap.png``, TensorBoard
events, ``log.txt`` and ``inference/<dataset>/`` (COCO predictions). ``--eval-only`` adds
``eval_results.json``, ``eval_config.yaml``, ``eval_info.json`` and ``eval_inference/<dataset>/``
(never the training's files).
"""

from sperm_d2.engine.checkpoint import CheckpointError, SpermCheckpointer
from sperm_d2.engine.trainer import SpermTrainer
from sperm_d2.engine.training import (
    TrainingDivergedError,
    build_argument_parser,
    launch_from_args,
    train,
)

__all__ = [
    "CheckpointError",
    "SpermCheckpointer",
    "SpermTrainer",
    "TrainingDivergedError",
    "build_argument_parser",
    "launch_from_args",
    "train",
]
