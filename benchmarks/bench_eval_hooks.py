"""Evaluation hooks' cost in training (issue 13; not a test). Every ratio is measured in one run.

(a) one evaluation round on the val split of ``--run``'s data with its weights: the two passes a
    round used to be (validation loss: the model per image in training mode; then
    ``DefaultTrainer.test``) vs the shared pass (``ValRound``: one preprocessing, backbone and RPN
    head for both, ``SPERM.EVAL_BATCH_SIZE`` same-size images per pass), alternated, best of
    ``--rounds``; wall and process CPU seconds; both rounds' numbers side by side (the metrics must
    agree; the validation loss samples anchors and ROIs at random, so batched images draw other
    samples: it agrees to within that sampling noise, and exactly with ``--batch-size 1``).
(b) with ``--iters N``: a training of N iterations of ``--run``'s config and data in a fresh
    process (``tools/train_net.py``, period ``TEST.EVAL_PERIOD``); detectron2's "Total training
    time: T (H on hooks)" gives the hook share H / T, next to the share the two-pass round would
    have had (the same training with (a)'s two-pass round in place of its shared one) and the
    target, <= 10 %.

Usage:
    python benchmarks/bench_eval_hooks.py --run output/real_data/smids/split/train --rounds 2
    python benchmarks/bench_eval_hooks.py --run output/real_data/smids/split/train --limit 96 \
        --iters 130
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

import sperm_d2.cli_warnings  # noqa: F401  (first: hides known-harmless library warnings)
from sperm_d2.engine.training import prepare_config

TARGET_SHARE = 0.10
REPO = Path(__file__).resolve().parents[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--run", required=True, help="a trained detector run folder (config + weights)")
    p.add_argument("--rounds", type=int, default=2, help="timed rounds of each kind (best kept)")
    p.add_argument("--limit", type=int, default=0, help="(a) on the first N val images only")
    p.add_argument("--batch-size", type=int, default=0, help="SPERM.EVAL_BATCH_SIZE; 0: config's")
    p.add_argument("--iters", type=int, default=0, help="(b): train this many iterations")
    p.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides (KEY VALUE ...)")
    return p.parse_args(argv)


def load(args):
    """The run's config (val split limited to ``--limit`` images) and its model with weights."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from sperm_d2.engine.trainer import SpermTrainer
    from sperm_d2.inference.run_folder import find_run_weights
    from sperm_d2.model_weights import load_model_weights

    cfg = prepare_config(str(Path(args.run) / "config.yaml"), list(args.opts), training=False)
    cfg.defrost()
    cfg.OUTPUT_DIR = tempfile.mkdtemp(prefix="bench_eval_hooks_")
    if args.batch_size:
        cfg.SPERM.EVAL_BATCH_SIZE = args.batch_size
    if args.limit:
        name = cfg.DATASETS.TEST[0]
        records = DatasetCatalog.get(name)[: args.limit]
        sub = f"{name}_first{args.limit}"
        DatasetCatalog.register(sub, lambda: records)
        meta = MetadataCatalog.get(name).as_dict()
        # no json_file: COCOEvaluator writes the subset's own COCO json
        MetadataCatalog.get(sub).set(
            **{k: v for k, v in meta.items() if k not in ("name", "json_file")}
        )
        cfg.DATASETS.TEST = (sub,)
    cfg.freeze()
    model = SpermTrainer.build_model(cfg)
    load_model_weights(model, find_run_weights(args.run))
    return cfg, model


def two_passes(cfg, model, bf16: bool) -> dict:
    """The round as it was (commit 8e556c9): the validation loss one image at a time in training
    mode, then DefaultTrainer.test."""
    from detectron2.data import build_detection_test_loader, get_detection_dataset_dicts
    from detectron2.evaluation.testing import flatten_results_dict

    from sperm_d2.engine.trainer import SpermTrainer
    from sperm_d2.engine.val_round import val_mapper
    from sperm_d2.precision import autocast, for_inference

    dicts = get_detection_dataset_dicts(list(cfg.DATASETS.TEST), filter_empty=False)
    loader = build_detection_test_loader(
        dicts, mapper=val_mapper(cfg), num_workers=cfg.DATALOADER.NUM_WORKERS
    )
    sums, count = defaultdict(float), 0
    model.train()
    with torch.no_grad(), autocast(bf16):
        for inputs in loader:
            for k, v in model(inputs).items():
                sums[k] += float(v) * len(inputs)
            count += len(inputs)
    parts = {f"val_{k}": v / count for k, v in sorted(sums.items())}
    results = SpermTrainer.test(cfg, for_inference(model, bf16))
    return {"validation_loss": sum(parts.values()), **parts, **flatten_results_dict(results)}


class _Trainer:
    """What ValRound reads of a trainer: a periodic round's iteration."""

    def __init__(self, model) -> None:
        self.model, self.iter, self.max_iter = model, 119, 10**9


def one_pass(cfg, model, bf16: bool) -> dict:
    from detectron2.evaluation.testing import flatten_results_dict

    from sperm_d2.engine.trainer import SpermTrainer
    from sperm_d2.engine.val_round import ValRound

    val_round = ValRound(cfg, lambda n: SpermTrainer.build_evaluator(cfg, n), 120, 120, bf16)
    trainer = _Trainer(model)
    losses = val_round.losses(trainer)
    return {**losses, **flatten_results_dict(val_round.evaluation(trainer))}


def time_rounds(args, cfg, model) -> dict:
    """(a): best wall/CPU seconds of each kind of round, alternated; prints the numbers."""
    from detectron2.data import DatasetCatalog
    from detectron2.utils.events import EventStorage

    from sperm_d2.engine.trainer import inference_bf16

    bf16 = inference_bf16(cfg)
    kinds = {"two passes": two_passes, "one pass": one_pass}
    times, numbers = defaultdict(list), {}
    with EventStorage(0):
        for r in range(args.rounds):
            for kind, fn in kinds.items():
                torch.manual_seed(r)
                wall, cpu = time.perf_counter(), time.process_time()
                numbers[kind] = fn(cfg, model, bf16)
                times[kind].append((time.perf_counter() - wall, time.process_time() - cpu))
                print(f"round {r} {kind}: {times[kind][-1][0]:.1f} s wall", flush=True)
    n = sum(len(DatasetCatalog.get(name)) for name in cfg.DATASETS.TEST)
    print(
        f"\n(a) one round on {n} val images, {torch.get_num_threads()} threads, "
        f"EVAL_BATCH_SIZE {cfg.SPERM.EVAL_BATCH_SIZE}, bf16 {bf16}"
    )
    print(f"{'':24s}{'two passes':>14s}{'one pass':>14s}")
    for key in numbers["two passes"]:
        a, b = numbers["two passes"][key], numbers["one pass"].get(key, float("nan"))
        print(f"{key:24s}{a:14.6f}{b:14.6f}")
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in times.items()}
    for kind, (wall, cpu) in best.items():
        print(f"{kind:12s} best wall {wall:7.1f} s  CPU {cpu:7.1f} s  ({wall / n:.3f} s/image)")
    (w2, c2), (w1, c1) = best["two passes"], best["one pass"]
    print(f"one pass is {w2 / w1:.2f}x faster (wall), {c2 / c1:.2f}x (CPU)")
    return {"old": w2 / n, "new": w1 / n, "images": n}


def _seconds(hms: str) -> float:
    """detectron2's H:MM:SS -> seconds."""
    return sum(float(x) * 60**i for i, x in enumerate(reversed(hms.split(":"))))


def hook_share(args, per_image: dict) -> None:
    """(b): a real training's hook share, and what the two-pass round would have made it."""
    from detectron2.data import DatasetCatalog

    cfg = prepare_config(str(Path(args.run) / "config.yaml"), list(args.opts), training=True)
    val_images = sum(len(DatasetCatalog.get(n)) for n in cfg.DATASETS.TEST)
    out = Path(tempfile.mkdtemp(prefix="bench_eval_hooks_train_"))
    cmd = [sys.executable, str(REPO / "tools" / "train_net.py")]
    cmd += ["--config-file", str(Path(args.run) / "config.yaml")]
    cmd += [*args.opts, "OUTPUT_DIR", str(out), "SOLVER.MAX_ITER", str(args.iters)]
    if args.batch_size:
        cmd += ["SPERM.EVAL_BATCH_SIZE", str(args.batch_size)]
    print(f"\n(b) training {args.iters} iterations, TEST.EVAL_PERIOD {cfg.TEST.EVAL_PERIOD}:")
    print(" ", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = (out / "log.txt").read_text()
    m = re.search(r"Total training time: (\S+) \((\S+) on hooks\)", log)
    total, hooks = (_seconds(t) for t in m.groups())
    rounds = re.findall(r"evaluation round at iteration \d+ \(.*?\): ([\d.]+) s", log)
    rounds = [float(r) for r in rounds]
    periodic = rounds[: len(rounds) - 1]  # the last one runs after training, outside T
    print(
        f"  Total training time {total:.0f} s, {hooks:.0f} s on hooks: hook share "
        f"{hooks / total:.1%} (target <= {TARGET_SHARE:.0%}); its evaluation rounds inside the "
        f"total: {[round(r) for r in periodic]} s"
    )
    if periodic and per_image["images"]:
        # the same training with the two-pass round, by (a)'s per-image ratio on these val images
        extra = sum(r * (per_image["old"] / per_image["new"] - 1) for r in periodic)
        print(
            f"  with the two-pass round ({per_image['old'] / per_image['new']:.2f}x each): "
            f"hook share {(hooks + extra) / (total + extra):.1%} ({val_images} val images)"
        )


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg, model = load(args)
    per_image = time_rounds(args, cfg, model)
    if args.iters:
        hook_share(args, per_image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
