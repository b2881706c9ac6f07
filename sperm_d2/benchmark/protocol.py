"""The benchmark protocol, one tool call per step: prepare (auto-annotate and split the crops),
train the detector, evaluate; train the head grader, score it alone, evaluate detector + grader;
per dataset a stratified train/val/test split, and K-fold cross-validation on HuSHeM.
:func:`run_benchmark` runs it all and writes the results."""

from __future__ import annotations

import argparse
import copy
import datetime
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

from sperm_d2.benchmark.crops import smoke_subset, split_images
from sperm_d2.benchmark.fields import run_fields, smoke_fields
from sperm_d2.benchmark.options import (
    DATASETS,
    DEFAULT_GRADER_CONFIG,
    FIELD_DATASETS,
    skip_reason,
)
from sperm_d2.benchmark.results import aggregate_folds, collect_grader_only, collect_metrics
from sperm_d2.benchmark.results_table import machine_description, write_results
from sperm_d2.benchmark.runner import REPO, Runner, StepError, repo_relative
from sperm_d2.benchmark.training import train_step

logger = logging.getLogger(__name__)

#: label map, relative to the repo root (where the tools run)
LABELS = "configs/labels/default.yaml"
#: what ``prepare_data.py`` exit codes mean: 1 = files skipped (SMIDS duplicates), still usable
PREPARE_OK = (0, 1)
#: the registered datasets' prefix (SPERM.DATASET_PREFIX's default)
PREFIX = "sperm"


def prepare_step(
    run: Runner,
    name: str,
    src: Path,
    data_root: Path,
    args: argparse.Namespace,
    extra: Sequence[str],
) -> None:
    """tools/prepare_data.py: auto-annotate the class folders of ``src`` into ``data_root``."""
    run(
        [
            sys.executable,
            "tools/prepare_data.py",
            "--input",
            str(src),
            "--from-folders",
            "--output",
            run.rel(data_root),
            "--label-map",
            LABELS,
            "--seed",
            str(args.seed),
            "--workers",
            str(args.workers),
            *extra,
        ],
        f"{name}_prepare",
        ok=PREPARE_OK,
    )


def evaluate_step(
    run: Runner,
    name: str,
    run_dir: Path,
    out_dir: Path,
    data_root: Path,
    test: str,
    val: str,
    weights: str | None = None,
    grader: Path | None = None,
    folders: tuple[str, str] | None = None,
    opts: Sequence[str] = (),
) -> dict:
    """tools/evaluate.py twice: COCO metrics on the registered split ``<prefix>_<test>``
    (threshold chosen on ``<prefix>_<val>``) and image-level grading of the same splits' images
    (``--folders data_root/annotations/<test>.json``: each crop classed by its class folder), or
    of the ``(test, val)`` class folders ``folders``, with the head grader of the run folder
    ``grader`` when given and evaluate.py's config overrides ``opts``; returns
    :func:`collect_metrics` of the two."""
    w = ["--weights", weights] if weights else []
    w += ["--grader", run.rel(grader)] if grader else []
    coco_out, folder_out = out_dir / "coco", out_dir / "folders"
    # --overwrite: evaluations rerun on every run of the benchmark, into the same folders
    evaluate = [sys.executable, "tools/evaluate.py", "--run", run.rel(run_dir), *w, "--overwrite"]
    extra = ["--opts", *opts] if opts else []
    splits = ["--dataset", f"{PREFIX}_{test}", "--val-dataset", f"{PREFIX}_{val}"]
    run([*evaluate, *splits, "--output", run.rel(coco_out), *extra], f"{name}_eval_coco")
    if folders is None:
        folders = tuple(run.rel(data_root / "annotations" / f"{s}.json") for s in (test, val))
    run(
        [
            *evaluate,
            "--folders",
            folders[0],
            "--val-folders",
            folders[1],
            "--label-map",
            LABELS,
            "--output",
            run.rel(folder_out),
            *extra,
        ],
        f"{name}_eval_folders",
    )
    return collect_metrics(coco_out / "metrics.json", folder_out / "metrics.json")


def grader_step(
    run: Runner,
    args: argparse.Namespace,
    name: str,
    data_root: Path,
    grader_dir: Path,
    opts: Sequence[str],
    test: str,
    suffix: str = "",
) -> dict:
    """Train the head grader (``opts``: its datasets) and score it alone on the ground-truth
    head masks of the registered split ``test`` (``train_net.py --eval-only``); returns the
    training's times and ``grader_only/*`` metrics. Its steps' logs are named
    ``<name>_grader<suffix>``."""
    name = f"{name}_grader{suffix}"
    train = train_step(run, args, name, data_root, grader_dir, opts, grader=True)
    # imported here: it loads detectron2, which the rest of the benchmark does not need
    from sperm_d2.inference.run_folder import find_run_weights

    weights = find_run_weights(grader_dir)  # best on val; a fold has none: final
    eval_dir = grader_dir / f"eval_{test}"
    run(
        [
            sys.executable,
            "tools/train_net.py",
            "--config-file",
            run.rel(grader_dir / "config.yaml"),
            "--eval-only",
            "SPERM.DATA_ROOT",
            run.rel(data_root),
            "MODEL.WEIGHTS",
            run.rel(weights),
            "DATASETS.TEST",
            f'("{test}",)',
            "OUTPUT_DIR",
            run.rel(eval_dir),
        ],
        f"{name}_eval",
    )
    return {"train": train, "test": collect_grader_only(eval_dir / "eval_results.json")}


def grader_suffix(args: argparse.Namespace) -> str:
    """What names a grader's folders, logs and results beside the detector's
    (``grader<suffix>``, ``eval_graded<suffix>``, ``results<suffix>.json``): ``_<name>`` for
    ``--grader-name``, else nothing for the default config and ``_<config name>`` for another,
    so that several graders are compared on the same detectors."""
    if getattr(args, "grader_name", None):
        return f"_{args.grader_name}"
    if not args.grader_config or _same_file(args.grader_config, DEFAULT_GRADER_CONFIG):
        return ""
    return f"_{Path(args.grader_config).stem}"


def _same_file(config: str, repo_config: str) -> bool:
    """Whether ``config`` (relative to this folder or to the repo root, or absolute) is the
    repo's ``repo_config``."""
    target = (REPO / repo_config).resolve()
    return target in {Path(config).resolve(), (REPO / config).resolve()}


def results_stem(args: argparse.Namespace) -> str:
    """The results files' name: ``results<grader suffix>`` (``.json`` and ``.md``)."""
    return f"results{grader_suffix(args)}"


def with_grader(
    run: Runner,
    args: argparse.Namespace,
    name: str,
    data_root: Path,
    out: Path,
    grader_opts: Sequence[str],
    test: str,
    evaluate,
) -> tuple[dict | None, dict]:
    """The grader's part of a split or fold: train it, score it alone, then ``evaluate(grader
    run folder)`` detector + grader; returns ``(grader training, metrics)`` with the
    detector + grader metrics under ``graded/`` and the grader alone under ``grader_only/``
    (``(None, {})`` without ``--grader-config``)."""
    if not args.grader_config:
        return None, {}
    suffix = grader_suffix(args)
    grader_dir = out / f"grader{suffix}"
    grader = grader_step(run, args, name, data_root, grader_dir, grader_opts, test, suffix)
    graded = evaluate(grader_dir)
    return grader["train"], {
        **{f"graded/{k}": v for k, v in graded.items()},
        **grader["test"],
    }


def run_split(run: Runner, args: argparse.Namespace, name: str, src: Path, out: Path) -> dict:
    """Stratified train/val/test: prepare, train (selected on val), evaluate on test."""
    data_root = out / "data"
    prepare_step(run, name, src, data_root, args, ["--split", args.split])
    train = train_step(run, args, name, data_root, out / "train", [])

    def evaluate(grader: Path | None = None) -> dict:
        return evaluate_step(
            run,
            f"{name}_graded{grader_suffix(args)}" if grader else name,
            out / "train",
            out / (f"eval_graded{grader_suffix(args)}" if grader else "eval"),
            data_root,
            "test",
            "val",
            grader=grader,
        )

    test = evaluate()
    grader_train, graded = with_grader(
        run, args, name, data_root, out, [], f"{PREFIX}_test", evaluate
    )
    return {
        "data_root": str(data_root),
        "train": train,
        "grader_train": grader_train,
        "test": {**test, **graded},
        "test_images": len(split_images(data_root, "test")),
    }


def run_kfold(run: Runner, args: argparse.Namespace, name: str, src: Path, out: Path) -> dict:
    """K folds over all crops: train on K-1 parts (final checkpoint), report on the held-out one."""
    data_root = out / "data"
    # two ratios: no test part is held out, the K folds cover every crop (the literature's way)
    prepare_step(
        run,
        f"{name}_kfold",
        src,
        data_root,
        args,
        ["--split", "0.8,0.2", "--kfold", str(args.kfold)],
    )
    folds = {}
    for i in args.fold_list:
        tag, fold_out = f"fold{i}", out / f"fold{i}"
        opts = ["DATASETS.TRAIN", f'("{PREFIX}_{tag}_train",)', "DATASETS.TEST", "()"]
        train = train_step(run, args, f"{name}_{tag}", data_root, fold_out / "train", opts)

        def evaluate(grader: Path | None = None) -> dict:
            return evaluate_step(
                run,
                f"{name}_{tag}_graded{grader_suffix(args)}" if grader else f"{name}_{tag}",
                fold_out / "train",
                fold_out / (f"eval_graded{grader_suffix(args)}" if grader else "eval"),
                data_root,
                f"{tag}_val",
                f"{tag}_train",
                weights="model_final.pth",
                grader=grader,
            )

        metrics = evaluate()
        # the grader, like the detector, selects nothing on the held-out part: final checkpoint
        grader_train, graded = with_grader(
            run, args, f"{name}_{tag}", data_root, fold_out, opts, f"{PREFIX}_{tag}_val", evaluate
        )
        folds[tag] = {"train": train, "grader_train": grader_train, "test": {**metrics, **graded}}
    return {
        "k": args.kfold,
        "folds_run": ",".join(str(i) for i in args.fold_list),
        "data_root": str(data_root),
        "folds": folds,
        "aggregate": aggregate_folds([f["test"] for f in folds.values()]),
    }


def weights_relative(opts: Sequence[str], repo: Path = REPO) -> list[str]:
    """``opts`` with a ``MODEL.WEIGHTS`` file given relative to this folder made relative to the
    repo root (or absolute), where the tools run."""
    out = list(opts)
    for i in range(0, len(out) - 1, 2):
        if out[i] == "MODEL.WEIGHTS" and out[i + 1] and Path(out[i + 1]).is_file():
            out[i + 1] = repo_relative(out[i + 1], repo)
    return out


def run_benchmark(
    args: argparse.Namespace,
    data_root: Path | None,
    out: Path,
    command: str,
    repo: Path = REPO,
) -> dict | None:
    """Every dataset of ``args.dataset_list`` that has crops under ``data_root``: the split
    protocol and K-fold on HuSHeM (those of ``args.protocol_list``); writes
    ``out/<results_stem>.json`` and ``.md`` and returns the results. A dataset that fails is
    logged and recorded under its ``"error"``; the others still run. When every dataset is
    skipped nothing is written and None is returned.
    ``command`` is how the benchmark was started, for the table."""
    out = Path(out).absolute()
    args = copy.copy(args)  # the caller's namespace is left as it was
    # the config and weights files as the tools see them: they run in the repo root
    for key in ("config", "fields_config", "grader_config"):
        if getattr(args, key, None) and Path(getattr(args, key)).is_file():
            setattr(args, key, repo_relative(getattr(args, key), repo))
    for key in ("opts", "grader_opts"):
        setattr(args, key, weights_relative(getattr(args, key, []), repo))
    reasons = {n: skip_reason(data_root, n) for n in args.dataset_list}
    if all(reasons.values()):
        for n, why in reasons.items():
            logger.warning("skipping %s: %s", n, why)
        return None
    out.mkdir(parents=True, exist_ok=True)
    run = Runner(out / "logs", repo)
    iterations = f"{args.max_iter} iterations" if args.max_iter else "the config's schedule"
    results: dict = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_description(),
            "config": args.config,
            "fields_config": getattr(args, "fields_config", None),
            "grader_config": args.grader_config or None,
            "grader_opts": list(getattr(args, "grader_opts", [])),
            "grader_name": getattr(args, "grader_name", None),
            "iterations": iterations,
            "seed": args.seed,
            "split": args.split,
            "smoke": args.smoke,
            "command": command,
        },
        "datasets": {},
    }
    with tempfile.TemporaryDirectory(prefix="sperm_d2_smoke_") as tmp:
        for name in args.dataset_list:
            res: dict = {}
            results["datasets"][name] = res
            if reasons[name]:
                logger.warning("skipping %s: %s", name, reasons[name])
                res["skipped"] = reasons[name]
                continue
            src = data_root / DATASETS[name]
            fields = name in FIELD_DATASETS
            if args.smoke:
                smoke = smoke_fields if fields else smoke_subset
                src = smoke(src, Path(tmp) / name, args.smoke_images)
            t0 = time.perf_counter()
            try:
                split = run_fields if fields else run_split
                if "split" in args.protocol_list:
                    res["split"] = split(run, args, name, src, out / name / "split")
                if name == "hushem" and args.kfold and "kfold" in args.protocol_list:
                    res["kfold"] = run_kfold(run, args, name, src, out / name / "kfold")
            except (StepError, OSError, ValueError, KeyError) as e:
                logger.error("%s failed: %s", name, e)
                res["error"] = str(e)
            res["wall_s"] = round(time.perf_counter() - t0, 1)
    results["meta"]["commands"] = run.commands
    results["meta"]["step_seconds"] = run.seconds
    results["meta"]["step_cpu_seconds"] = run.cpu_seconds
    write_results(out, results, results_stem(args))
    return results
