"""``ValRound``: one pass over the validation split per evaluation round, shared by the hooks that
report on it (:class:`~sperm_d2.engine.val_loss.ValidationLoss` and detectron2's ``EvalHook``).

Each round used to load and run every val image twice: once in training mode for the validation
loss, once in inference mode for COCO evaluation. Here the first hook due at an iteration runs
one pass that gives whatever every hook due at that iteration needs (see
:func:`~sperm_d2.engine.val_pass.losses_and_predictions`: one preprocessing, backbone and RPN
head per image for both); the next hook takes its part from the round. Images are batched
``SPERM.EVAL_BATCH_SIZE`` at a time, but only with images that pad to the same input size, so each
image's numbers equal those of a batch of one (up to float rounding).

What is reported does not change: the same datasets, images and metrics (``validation_loss``,
``val_<loss>``, COCO ``bbox/*``, ``segm/*``, ``pixellib/*``), the val loss still averaged over
images, each process still taking its shard (detectron2's InferenceSampler) of each dataset.
The val loss samples anchors and ROIs at random as training does; batched images meet the random
stream in another order than one at a time, so its draws (not its definition) differ.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from contextlib import nullcontext
from typing import Callable, ContextManager

import torch
from detectron2.config import CfgNode
from detectron2.data import DatasetMapper, get_detection_dataset_dicts
from detectron2.data import transforms as T
from detectron2.data.build import trivial_batch_collator
from detectron2.data.common import DatasetFromList, MapDataset
from detectron2.data.samplers import InferenceSampler
from detectron2.evaluation import DatasetEvaluator, inference_on_dataset, print_csv_format
from detectron2.structures import ImageList
from detectron2.utils import comm
from torch.utils.data import DataLoader

from sperm_d2.engine.ema import bare
from sperm_d2.engine.val_pass import losses_and_predictions
from sperm_d2.precision import autocast, to_fp32

logger = logging.getLogger(__name__)


def val_mapper(cfg: CfgNode) -> DatasetMapper:
    """Val images with their annotations, resized like at test time and never augmented."""
    return DatasetMapper(
        cfg,
        is_train=True,  # keep the annotations: the model needs them to compute its losses
        augmentations=[
            T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST, "choice")
        ],
    )


def padded_size(cfg: CfgNode, module: torch.nn.Module, height: int, width: int) -> tuple:
    """The (H, W) an image of ``height`` x ``width`` has in ``module``'s input batch: resized as
    :func:`val_mapper` resizes it, then padded by detectron2's ImageList for the module's
    backbone (a module without one: the resized size)."""
    short, longest = cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST
    if short > 0:
        height, width = T.ResizeShortestEdge.get_output_shape(height, width, short, longest)
    backbone = getattr(module, "backbone", None)
    if backbone is None:
        return height, width
    empty = torch.empty(0, height, width)  # no channels: only ImageList's padding rule is wanted
    batch = ImageList.from_tensors(
        [empty], backbone.size_divisibility, padding_constraints=backbone.padding_constraints
    )
    return tuple(batch.tensor.shape[-2:])


def plan_batches(sizes: list, indices: list[int], batch_size: int) -> list[list[int]]:
    """``indices`` in batches of at most ``batch_size`` whose ``sizes`` are equal, each size's
    batches in the order of its first index; one at a time: in the order given."""
    if batch_size <= 1:
        return [[i] for i in indices]
    groups: dict[tuple, list[int]] = {}
    for i in indices:
        groups.setdefault(sizes[i], []).append(i)
    return [
        group[start : start + batch_size]
        for group in groups.values()
        for start in range(0, len(group), batch_size)
    ]


def build_val_loader(
    cfg: CfgNode, dataset_name: str, module: torch.nn.Module, batch_size: int
) -> DataLoader:
    """This process's shard of ``dataset_name`` (mapped by :func:`val_mapper`) in batches of
    same-size images (:func:`plan_batches`)."""
    dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    # a record without its size cannot be planned: it gets a pass of its own
    sizes = [
        padded_size(cfg, module, d["height"], d["width"]) if "height" in d and "width" in d else i
        for i, d in enumerate(dicts)
    ]
    batches = plan_batches(sizes, list(InferenceSampler(len(dicts))), batch_size)
    return DataLoader(
        MapDataset(DatasetFromList(dicts, copy=False), val_mapper(cfg)),
        batch_sampler=batches,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
    )


def _due(period: int | None, trainer) -> bool:
    """Whether a hook with ``period`` (None: no such hook) runs at the trainer's current point:
    every ``period`` iterations and after training (ValidationLoss's and EvalHook's rule)."""
    if period is None:
        return False
    next_iter = trainer.iter + 1
    return next_iter >= trainer.max_iter or (period > 0 and next_iter % period == 0)


class _Forward:
    """What inference_on_dataset calls per batch: predictions returned, losses summed aside."""

    def __init__(self, module: torch.nn.Module, losses: bool, bf16: bool) -> None:
        self.module = module
        self.losses = losses
        self.bf16 = bf16
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0

    def __call__(self, inputs: list[dict], predict: bool = True):
        with torch.no_grad(), autocast(self.bf16):
            image_losses, outputs = losses_and_predictions(
                self.module, inputs, self.losses, predict
            )
        for one in image_losses or ():
            for k, v in one.items():
                self.sums[k] += v
        self.count += len(inputs) if self.losses else 0
        return to_fp32(outputs)


class ValRound:
    """The validation split's pass at the trainer's current iteration, run once for every hook
    due there.

    Args:
        cfg: the run's config (``DATASETS.TEST``, ``SPERM.EVAL_BATCH_SIZE``, loader settings).
        build_evaluator: the evaluator of a dataset name (a fresh one per round).
        loss_period: the ValidationLoss hook's period; None when there is no such hook.
        eval_period: the EvalHook's period; None when there is no such hook.
        bf16: run under CPU bf16 autocast (``SPERM.INFER_PRECISION``), outputs back in fp32.
        weights: a context (factory) in which the model holds the weights to evaluate (the
            trainer's moving average, :mod:`sperm_d2.engine.ema`); None: its own.
    """

    def __init__(
        self,
        cfg: CfgNode,
        build_evaluator: Callable[[str], DatasetEvaluator],
        loss_period: int | None,
        eval_period: int | None,
        bf16: bool = False,
        weights: Callable[[], ContextManager] | None = None,
    ) -> None:
        self._cfg = cfg
        self._weights = weights or nullcontext
        self._build_evaluator = build_evaluator
        self._loss_period = loss_period
        self._eval_period = eval_period
        self._bf16 = bf16
        self._loaders: dict[str, DataLoader] = {}
        self._iter: int | None = None
        self._losses: dict[str, float] | None = None
        self._results: dict | None = None

    def losses(self, trainer) -> dict[str, float]:
        """``validation_loss`` and ``val_<loss>`` at this iteration, averaged over every val
        image on every process; {} when the split holds no images."""
        self._run(trainer, want_losses=True)
        return self._losses

    def evaluation(self, trainer) -> dict:
        """What ``DefaultTrainer.test`` returns: metrics per dataset (unwrapped for one)."""
        self._run(trainer, want_results=True)
        return self._results

    def _run(self, trainer, want_losses: bool = False, want_results: bool = False) -> None:
        if self._iter != trainer.iter:
            self._iter, self._losses, self._results = trainer.iter, None, None
        # Everything due now, so the hooks that follow this one find their part ready.
        losses = self._losses is None and (want_losses or _due(self._loss_period, trainer))
        results = self._results is None and (want_results or _due(self._eval_period, trainer))
        if losses or results:
            with self._weights():
                self._pass(trainer.model, losses, results)

    def _loader(self, dataset_name: str, module: torch.nn.Module) -> DataLoader:
        if dataset_name not in self._loaders:
            self._loaders[dataset_name] = build_val_loader(
                self._cfg, dataset_name, module, self._cfg.SPERM.EVAL_BATCH_SIZE
            )
        return self._loaders[dataset_name]

    def _pass(self, model: torch.nn.Module, losses: bool, results: bool) -> None:
        # The bare module: no DDP collectives in a forward pass that has no backward.
        module = bare(model)
        was_training = module.training
        forward = _Forward(module, losses, self._bf16)
        evaluated = OrderedDict()
        start = time.perf_counter()
        try:
            for name in self._cfg.DATASETS.TEST:
                loader = self._loader(name, module)
                if results:
                    evaluated[name] = self._evaluate(name, forward, loader)
                else:
                    for inputs in loader:
                        forward(inputs, predict=False)
        finally:
            module.train(was_training)
        logger.info(
            "evaluation round at iteration %d (%s): %.1f s for this process's shard",
            self._iter,
            " + ".join(["validation loss"] * losses + ["evaluation"] * results),
            time.perf_counter() - start,
        )
        if losses:
            self._losses = _mean_losses(forward.sums, forward.count, self._cfg.DATASETS.TEST)
        if results:
            self._results = evaluated if len(evaluated) != 1 else next(iter(evaluated.values()))

    def _evaluate(self, name: str, forward: _Forward, loader: DataLoader) -> dict:
        """DefaultTrainer.test's work for one dataset: inference_on_dataset, then the CSV lines."""
        results = inference_on_dataset(forward, loader, self._build_evaluator(name))
        if comm.is_main_process():
            assert isinstance(results, dict), f"evaluator of {name} returned {results!r}"
            logger.info("Evaluation results for %s in csv format:", name)
            print_csv_format(results)
        return results


def _mean_losses(sums: dict[str, float], count: int, dataset_names) -> dict[str, float]:
    """Per-image loss sums of every process -> their means over all images: the total and each
    part; {} (with a warning) when there were no images."""
    gathered = comm.all_gather((dict(sums), count))
    total = sum(c for _, c in gathered)
    if total == 0:
        logger.warning("validation loss: %s holds no images", list(dataset_names))
        return {}
    parts: dict[str, float] = defaultdict(float)
    for s, _ in gathered:
        for k, v in s.items():
            parts[k] += v / total
    result = {"validation_loss": sum(parts.values())}
    result.update({f"val_{k}": v for k, v in sorted(parts.items())})
    return result
