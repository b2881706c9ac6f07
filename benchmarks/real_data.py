#!/usr/bin/env python
"""Real-data accuracy benchmark: HuSHeM and SMIDS class-folder crops, end to end.

For each dataset: auto-annotate the crops and write a stratified train/val/test split
(tools/prepare_data.py), train (tools/train_net.py, model selected on val), then evaluate on the
TEST split (tools/evaluate.py): COCO segm AP/AP50, pixellib/mAP50, and image-level good/bad
accuracy, sensitivity and specificity for bad (score threshold chosen on val). On HuSHeM it also
runs K-fold cross-validation (the literature's protocol): each fold trains on K-1 parts and is
reported on the held-out part (final checkpoint, threshold chosen on the fold's training part,
so nothing is selected on the reported part); the table gives mean +- std over folds.

Every step is a subprocess call to the tools, printed as a command anyone can rerun; their logs
and run folders go under --output. Writes OUTPUT/results.json and OUTPUT/results.md (a Markdown
table for README's "Results" section, next to the study's 0.891 / 98 %).

Real data are read from --data or $SPERM_D2_REAL_DATA (a folder holding hushem/ and
smids_train/); they are never copied, except that --smoke copies a few crops per class into a
temporary folder that is removed at the end.

Examples:
    python benchmarks/real_data.py --data ../shared/data --output output/real_data
    python benchmarks/real_data.py --data ../shared/data --datasets hushem --kfold 5 --folds 0,1
    python benchmarks/real_data.py --data ../shared/data --smoke --output output/real_data_smoke
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[1]
ENV_REAL_DATA = "SPERM_D2_REAL_DATA"
#: benchmark name -> folder under the real-data root
DATASETS = {"hushem": "hushem", "smids": "smids_train"}
DEFAULT_CONFIG = "configs/sperm_mask_rcnn_R_18_FPN_real_cpu.yaml"
LABELS = "configs/labels/default.yaml"
IMAGE_EXTS = {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
#: the PixelLib/TensorFlow study this project reproduces (DESIGN.md)
STUDY = {
    "pixellib/mAP50": "0.891 (study's own labelme test images)",
    "accuracy": "98 % / 98.8 % (SMIDS normal/abnormal)",
}
#: table rows: (result key, label, kind) -- kind "ap" is COCO x100, "frac" is 0-1
ROWS = [
    ("segm/AP", "COCO segm AP (x100)", "ap"),
    ("segm/AP50", "COCO segm AP50 (x100)", "ap"),
    ("bbox/AP", "COCO bbox AP (x100)", "ap"),
    ("pixellib/mAP50", "pixellib/mAP50 (0-1)", "frac"),
    ("accuracy", "image-level accuracy good/bad", "frac"),
    ("balanced_accuracy", "balanced accuracy (mean of the two recalls)", "frac"),
    ("sensitivity_bad", "sensitivity (bad)", "frac"),
    ("specificity_bad", "specificity (bad)", "frac"),
    ("f1_bad", "F1 (bad)", "frac"),
    ("no_head", "images with no head found", "count"),
    ("bias_bad", "bias on the bad score (chosen on val)", "num"),
    ("top_head/accuracy", "accuracy, plain top-head rule (bias 0)", "frac"),
    ("top_head/balanced_accuracy", "balanced accuracy, plain top-head rule", "frac"),
    ("majority_accuracy", "accuracy of calling every crop bad", "frac"),
]
#: what ``prepare_data.py`` exit codes mean: 1 = files skipped (SMIDS duplicates), still usable
PREPARE_OK = (0, 1)


class StepError(RuntimeError):
    """A tool call failed; the message names the command's log file."""


# ---------------------------------------------------------------- arguments and data location


def parse_csv(text: str, allowed: Sequence[str] | None = None, what: str = "value") -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (stripped, no empties, no repeats); checks ``allowed``."""
    items = list(dict.fromkeys(t.strip() for t in str(text).split(",") if t.strip()))
    if not items:
        raise ValueError(f"empty {what} list {text!r}")
    if allowed is not None:
        bad = [t for t in items if t not in allowed]
        if bad:
            raise ValueError(f"unknown {what} {bad}; choose from {', '.join(allowed)}")
    return items


def parse_folds(text: str | None, kfold: int) -> list[int]:
    """``--folds "0,2"`` -> [0, 2] (each < ``kfold``); ``None`` -> every fold."""
    if not kfold:
        return []
    if text is None:
        return list(range(kfold))
    try:
        folds = sorted({int(t) for t in parse_csv(text, what="fold")})
    except ValueError as e:
        raise ValueError(f"--folds {text!r}: expected comma-separated fold numbers ({e})") from None
    bad = [f for f in folds if not 0 <= f < kfold]
    if bad:
        raise ValueError(f"--folds {text!r}: folds {bad} are outside 0..{kfold - 1}")
    return folds


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--data",
        default=None,
        help=f"folder holding hushem/ and smids_train/ (default: ${ENV_REAL_DATA})",
    )
    p.add_argument("--output", default="output/real_data", help="run folders, logs, results")
    p.add_argument("--config", default=DEFAULT_CONFIG, help="training config YAML")
    p.add_argument("--datasets", default="hushem,smids", help="which of: hushem,smids")
    p.add_argument("--seed", type=int, default=0, help="split seed (same seed, same split)")
    p.add_argument("--split", default="0.7,0.15,0.15", help="train,val,test ratios (stratified)")
    p.add_argument("--kfold", type=int, default=5, help="K-fold CV on HuSHeM (0: none)")
    p.add_argument("--folds", default=None, help="run only these folds, e.g. 0,1 (default all)")
    p.add_argument(
        "--max-iter", type=int, default=None, help="override the config's SOLVER.MAX_ITER"
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
        args.dataset_list = parse_csv(args.datasets, list(DATASETS), "dataset")
        if args.kfold < 0 or args.kfold == 1:
            raise ValueError(f"--kfold {args.kfold}: use 0 (none) or at least 2")
        args.fold_list = parse_folds(args.folds, args.kfold)
        if args.max_iter is None and args.smoke:
            args.max_iter = 4
        if args.max_iter is not None and args.max_iter < 1:
            raise ValueError(f"--max-iter {args.max_iter}: must be at least 1")
        if args.smoke_images < 2:
            raise ValueError(f"--smoke-images {args.smoke_images}: must be at least 2")
        if len(args.opts) % 2:
            raise ValueError(f"--opts {args.opts}: expected KEY VALUE pairs")
    except ValueError as e:
        parser.error(str(e))
    return args


def resolve_data_root(data: str | None, environ=os.environ) -> Path | None:
    """--data, else $SPERM_D2_REAL_DATA, else None."""
    root = data or environ.get(ENV_REAL_DATA)
    return Path(root).absolute() if root else None  # the tools run from the repo root


def skip_reason(data_root: Path | None, dataset: str) -> str | None:
    """Why ``dataset`` cannot run (one line), or None when its class folders are there."""
    if data_root is None:
        return (
            f"no real data: pass --data DIR or set {ENV_REAL_DATA} to the folder holding "
            f"{', '.join(d + '/' for d in DATASETS.values())}"
        )
    folder = data_root / DATASETS[dataset]
    if not folder.is_dir():
        return f"{folder}: folder not found"
    if not any(p.is_dir() for p in folder.iterdir()):
        return f"{folder}: no class folders inside"
    return None


# ---------------------------------------------------------------- results: aggregation, table


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def mean_std(values: Sequence) -> dict:
    """``{"mean", "std", "n", "values"}`` over the finite values (sample std, ddof=1; 0 for one
    value). Undefined values (None/NaN, e.g. sensitivity without bad images) are left out and
    counted by ``n`` < ``len(values)``; with none left mean and std are None."""
    vals = [float(v) for v in values if _finite(v)]
    mean = statistics.fmean(vals) if vals else None
    std = (statistics.stdev(vals) if len(vals) > 1 else 0.0) if vals else None
    return {"mean": mean, "std": std, "n": len(vals), "values": list(values)}


def aggregate_folds(fold_metrics: Sequence[dict]) -> dict:
    """Per metric key (union over folds, in first-seen order): :func:`mean_std` over folds."""
    keys = list(dict.fromkeys(k for m in fold_metrics for k in m))
    return {k: mean_std([m.get(k) for m in fold_metrics]) for k in keys}


def fmt_value(v, kind: str) -> str:
    """One number for the table: AP x100 with 1 decimal, fractions with 3, counts as ints."""
    if not _finite(v):
        return "n/a"
    if kind == "ap":
        return f"{v:.1f}"
    if kind == "count":
        return f"{int(round(v))}"
    if kind == "num":
        return f"{v:+.3f}"
    return f"{v:.3f}"


def fmt_mean_std(agg: dict | None, kind: str) -> str:
    """``mean ± std`` (with ``(n=…)`` when some folds had no defined value)."""
    if not agg or agg.get("mean") is None:
        return "n/a"
    text = f"{fmt_value(agg['mean'], kind)} ± {fmt_value(agg['std'], kind)}"
    total = len(agg.get("values", []))
    return text + (f" (n={agg['n']})" if agg["n"] < total else "")


def format_table(results: dict) -> str:
    """Markdown: header lines (date, machine, config, commands) and one table whose columns say
    which split each number is on, next to the study's figures."""
    meta = results["meta"]
    lines = [
        f"Real-data benchmark, {meta['date']} on {meta['machine']}",
        f"(config `{meta['config']}`, {meta['iterations']}, split seed {meta['seed']}"
        + (", **SMOKE RUN: a few crops, a few iterations; not a result**" if meta["smoke"] else "")
        + ").",
        "",
    ]
    cols, labels = [], []
    runs = list(results["datasets"].items())
    for name, res in runs:
        if res.get("split"):
            cols.append((res["split"]["test"], False))
            labels.append(f"{name} test split ({res['split'].get('test_images', '?')} images)")
        if res.get("kfold"):
            k = res["kfold"]
            cols.append((k["aggregate"], True))
            labels.append(f"{name} {k['k']}-fold CV, held-out folds {k['folds_run']} (mean ± std)")
    if cols:
        header = ["metric", *labels, "study (PixelLib R-101)"]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for key, label, kind in ROWS:
            cells = [
                fmt_mean_std(c.get(key), kind) if agg else fmt_value(c.get(key), kind)
                for c, agg in cols
            ]
            lines.append("| " + " | ".join([label, *cells, STUDY.get(key, "")]) + " |")
        lines += [
            "",
            "Test split: stratified train/val/test "
            f"{meta['split']}; model (segm/AP50) and score thresholds chosen on val, reported "
            "on test. K-fold: final checkpoint, threshold chosen on the fold's training part, "
            "reported on the held-out part. Image-level: each crop is graded by its best head's "
            "class after adding a bias to the bad score, the bias chosen on the same part as the "
            "threshold by balanced accuracy (bias 0 is the plain top-head rule, shown too); no "
            "head found counts as wrong. SMIDS non_sperm crops are negatives for COCO AP and "
            "left out of the image-level grading.",
        ]
    trainings = [(f"{n} split", r["split"].get("train")) for n, r in runs if r.get("split")]
    trainings += [
        (f"{n} {tag}", f.get("train"))
        for n, r in runs
        if r.get("kfold")
        for tag, f in r["kfold"].get("folds", {}).items()
    ]
    trainings = [(name, t) for name, t in trainings if t]
    if trainings:
        lines += [
            "",
            "Trainings (iterations, median s/iter): "
            + "; ".join(
                f"{name} {t.get('iterations', '?')} at {fmt_value(t.get('s_per_iter'), 'frac')}"
                for name, t in trainings
            )
            + ".",
        ]
    skipped = {n: r["skipped"] for n, r in runs if r.get("skipped")}
    failed = {n: r["error"] for n, r in runs if r.get("error")}
    lines += [f"- {n}: skipped ({why})" for n, why in skipped.items()]
    lines += [f"- {n}: FAILED ({why})" for n, why in failed.items()]
    if meta.get("commands"):
        lines += ["", "Commands (rerun with `" + meta["command"] + "`):", "", "```"]
        lines += meta["commands"] + ["```"]
    return "\n".join(lines) + "\n"


def machine_description() -> str:
    """CPU model, core count and torch version, e.g. for the results header."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    try:
        import torch

        extra = f", torch {torch.__version__}, " + (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
        )
    except ImportError:  # the table is still worth writing
        extra = ""
    return f"{cpu}, {os.cpu_count()} CPU cores{extra}"


# ---------------------------------------------------------------- steps (subprocess calls)


class Runner:
    """Runs tool commands from the repo root, logging each to ``log_dir`` and keeping the list."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.commands: list[str] = []
        self.seconds: dict[str, float] = {}  # log name -> wall time of the step
        # log name -> CPU time (user + sys) of the step: unlike wall time it does not grow when
        # other jobs share the cores, so it is what estimates the time on an idle machine
        self.cpu_seconds: dict[str, float] = {}

    def __call__(self, cmd: Sequence[str], log_name: str, ok: Sequence[int] = (0,)) -> int:
        # shown as users would type it in their environment; run with this interpreter
        shown = " ".join(_quote("python" if c == sys.executable else c) for c in cmd)
        self.commands.append(shown)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_dir / f"{log_name}.log"
        print(f"$ {shown}", flush=True)
        t0, cpu0 = time.perf_counter(), _children_cpu_seconds()
        with open(log, "w", encoding="utf-8") as f:
            rc = subprocess.call(list(cmd), cwd=REPO, stdout=f, stderr=subprocess.STDOUT)
        self.seconds[log_name] = round(time.perf_counter() - t0, 1)
        self.cpu_seconds[log_name] = round(_children_cpu_seconds() - cpu0, 1)
        print(
            f"  -> exit {rc} in {self.seconds[log_name]:.0f} s "
            f"({self.cpu_seconds[log_name]:.0f} CPU s), log {log}",
            flush=True,
        )
        if rc not in ok:
            tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
            raise StepError(f"{Path(cmd[1]).name} exited {rc} (see {log}): {' | '.join(tail)}")
        return rc


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _quote(s: str) -> str:
    return shlex.quote(str(s))


def _rel(p: Path) -> str:
    """Paths in commands relative to the repo when inside it (shorter, copy-pasteable)."""
    p = Path(os.path.abspath(p))
    try:
        return str(p.relative_to(REPO))
    except ValueError:
        return str(p)


def schedule_opts(max_iter: int | None) -> list[str]:
    """SOLVER/TEST overrides for ``--max-iter``: LR steps at 73 % and 90 %, 5 evaluations."""
    if max_iter is None:
        return []
    steps = tuple(sorted({s for s in (int(0.73 * max_iter), int(0.9 * max_iter)) if 0 < s}))
    period = max(1, max_iter // 5)
    return [
        "SOLVER.MAX_ITER",
        str(max_iter),
        "SOLVER.STEPS",
        str(steps),
        "SOLVER.WARMUP_ITERS",
        str(min(100, max_iter // 10)),
        "SOLVER.CHECKPOINT_PERIOD",
        str(period),
        "TEST.EVAL_PERIOD",
        str(period),
    ]


def smoke_subset(src: Path, dst: Path, per_class: int) -> Path:
    """Copy the first ``per_class`` crops (sorted) of every class folder of ``src`` to ``dst``."""
    for folder in sorted(p for p in src.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTS)
        (dst / folder.name).mkdir(parents=True, exist_ok=True)
        for f in files[:per_class]:
            shutil.copy2(f, dst / folder.name / f.name)
    return dst


def split_images(data_root: Path, split: str) -> list[Path]:
    """Absolute image paths of ``annotations/<split>.json`` (file names are data-root relative)."""
    with open(data_root / "annotations" / f"{split}.json", encoding="utf-8") as f:
        images = json.load(f)["images"]
    return [Path(os.path.normpath(data_root / im["file_name"])) for im in images]


def class_folder_tree(images: Sequence[Path], dst: Path) -> Path:
    """``dst/<class folder>/<file>`` symlinks to ``images`` (their parent folder names the class),
    the layout ``evaluate.py --folders`` grades; nothing is copied."""
    if dst.exists():
        shutil.rmtree(dst)
    for img in images:
        link = dst / img.parent.name / img.name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            raise ValueError(f"{img}: two images named {link.relative_to(dst)} in one split")
        link.symlink_to(img.resolve())
    return dst


STAMP = "benchmark_train.json"


#: train_net.py arguments whose next token is a folder (absolute in the stamp)
PATH_KEYS = ("SPERM.DATA_ROOT", "OUTPUT_DIR")


def train_stamp(cmd: Sequence[str]) -> str:
    """What identifies a training: its command (without the interpreter) with the data and run
    folders made absolute, so a rerun that spells them differently still matches."""
    parts = [
        os.path.normpath(REPO / c) if i and cmd[i - 1] in PATH_KEYS else c
        for i, c in enumerate(cmd)
    ]
    return " ".join(_quote(c) for c in parts[1:])


def reuse_or_resume(run_dir: Path, cmd: Sequence[str]) -> bool:
    """True when ``run_dir`` holds a finished training by the same command (reuse it). A
    training killed part-way is resumed (``--resume``) when its command matches; a folder
    trained by another command is an error, never silently mixed."""
    stamp_path = run_dir / STAMP
    stamp = json.loads(stamp_path.read_text(encoding="utf-8")) if stamp_path.is_file() else None
    if stamp is None:
        if run_dir.is_dir() and any(run_dir.glob("*.pth")):
            raise StepError(
                f"{run_dir}: holds checkpoints of an unknown training (no {STAMP}); use "
                "another --output or delete the folder"
            )
        return False
    if stamp["command"] != train_stamp(cmd):
        raise StepError(
            f"{run_dir}: trained by another command ({stamp['command']}); use another "
            "--output or delete the folder"
        )
    return bool(stamp.get("finished")) and (run_dir / "model_final.pth").is_file()


def train_step(run, args, name: str, data_root: Path, run_dir: Path, opts: list[str]) -> dict:
    """tools/train_net.py into ``run_dir``; returns wall time and the measured s/iter. A finished
    training by the same command is reused; a killed one resumes from its last checkpoint."""
    from sperm_d2.atomic import write_json_atomic

    cmd = [
        sys.executable,
        "tools/train_net.py",
        "--config-file",
        args.config,
        "SPERM.DATA_ROOT",
        _rel(data_root),
        "OUTPUT_DIR",
        _rel(run_dir),
        *schedule_opts(args.max_iter),
        *opts,
        *args.opts,
    ]
    if reuse_or_resume(run_dir, cmd):
        print(f"  reusing the finished training in {run_dir}", flush=True)
        return {
            "run_dir": str(run_dir),
            "train_wall_s": None,
            "reused": True,
            **iteration_time(run_dir),
        }
    stamp = {"command": train_stamp(cmd), "finished": False}
    write_json_atomic(run_dir / STAMP, stamp)
    t0 = time.perf_counter()
    run([*cmd[:2], "--resume", *cmd[2:]], f"{name}_train")
    write_json_atomic(run_dir / STAMP, {**stamp, "finished": True})
    return {
        "run_dir": str(run_dir),
        "train_wall_s": round(time.perf_counter() - t0, 1),
        **iteration_time(run_dir),
    }


def iteration_time(run_dir: Path) -> dict:
    """Median training s/iter (detectron2's ``time``) and the last iteration from metrics.json."""
    from sperm_d2.engine.report import read_metrics

    rows = read_metrics(run_dir / "metrics.json")
    # detectron2's IterationTimer leaves out the first iterations (warm-up): None for tiny runs
    times = [r["time"] for r in rows.values() if _finite(r.get("time"))]
    trained = [it for it, r in rows.items() if "total_loss" in r]
    return {
        "s_per_iter": round(statistics.median(times), 3) if times else None,
        "iterations": (max(trained) + 1) if trained else None,
    }


def evaluate_step(run, name, run_dir, out_dir, test, val, test_tree, val_tree, weights=None):
    """tools/evaluate.py twice: COCO split metrics and image-level grading of the folders."""
    w = ["--weights", weights] if weights else []
    coco_out, folder_out = out_dir / "coco", out_dir / "folders"
    run(
        [
            sys.executable,
            "tools/evaluate.py",
            "--run",
            _rel(run_dir),
            *w,
            "--dataset",
            test,
            "--val-dataset",
            val,
            "--output",
            _rel(coco_out),
        ],
        f"{name}_eval_coco",
    )
    run(
        [
            sys.executable,
            "tools/evaluate.py",
            "--run",
            _rel(run_dir),
            *w,
            "--folders",
            _rel(test_tree),
            "--val-folders",
            _rel(val_tree),
            "--label-map",
            LABELS,
            "--output",
            _rel(folder_out),
        ],
        f"{name}_eval_folders",
    )
    return collect_metrics(coco_out / "metrics.json", folder_out / "metrics.json")


def collect_metrics(coco_json: Path, folders_json: Path) -> dict:
    """The benchmark's numbers from the two ``evaluate.py`` metrics.json files (test part)."""
    coco = json.loads(Path(coco_json).read_text(encoding="utf-8"))
    folders = json.loads(Path(folders_json).read_text(encoding="utf-8"))
    out = {k: coco["test"].get(k) for k in ("segm/AP", "segm/AP50", "bbox/AP", "pixellib/mAP50")}
    out["instance_threshold"] = coco.get("threshold")
    m = folders["test"]
    keys = ("accuracy", "balanced_accuracy", "sensitivity_bad", "specificity_bad", "f1_bad")
    for k in (*keys, "no_head", "images"):
        out[k] = m.get(k)
    out["image_threshold"] = folders.get("threshold")
    out["bias_bad"] = folders.get("bias_bad")
    plain = folders.get("test_top_head") or {}
    out["top_head/accuracy"] = plain.get("accuracy")
    out["top_head/balanced_accuracy"] = plain.get("balanced_accuracy")
    counts = folders.get("confusion_matrix", {}).get("counts")
    rows = folders.get("confusion_matrix", {}).get("rows_true", [])
    if counts and "bad" in rows:  # the trivial baseline on an imbalanced set (HuSHeM: 75 % bad)
        total = sum(map(sum, counts))
        out["majority_accuracy"] = sum(counts[rows.index("bad")]) / total if total else None
    return out


def prepare_step(run, name, src: Path, data_root: Path, args, extra: Sequence[str]) -> None:
    run(
        [
            sys.executable,
            "tools/prepare_data.py",
            "--input",
            str(src),
            "--from-folders",
            "--output",
            _rel(data_root),
            "--labels",
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


def run_split(run, args, name: str, src: Path, out: Path) -> dict:
    """Stratified train/val/test: prepare, train (selected on val), evaluate on test."""
    data_root = out / "data"
    prepare_step(run, name, src, data_root, args, ["--split", args.split])
    trees = {
        s: class_folder_tree(split_images(data_root, s), out / "folders" / s)
        for s in ("val", "test")
    }
    train = train_step(run, args, name, data_root, out / "train", [])
    test = evaluate_step(
        run,
        name,
        out / "train",
        out / "eval",
        "sperm_test",
        "sperm_val",
        trees["test"],
        trees["val"],
    )
    return {
        "data_root": str(data_root),
        "train": train,
        "test": test,
        "test_images": len(split_images(data_root, "test")),
    }


def run_kfold(run, args, name: str, src: Path, out: Path) -> dict:
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
        trees = {
            s: class_folder_tree(split_images(data_root, f"{tag}_{s}"), fold_out / "folders" / s)
            for s in ("train", "val")
        }
        opts = ["DATASETS.TRAIN", f'("sperm_{tag}_train",)', "DATASETS.TEST", "()"]
        train = train_step(run, args, f"{name}_{tag}", data_root, fold_out / "train", opts)
        metrics = evaluate_step(
            run,
            f"{name}_{tag}",
            fold_out / "train",
            fold_out / "eval",
            f"sperm_{tag}_val",
            f"sperm_{tag}_train",
            trees["val"],
            trees["train"],
            weights="model_final.pth",
        )
        folds[tag] = {"train": train, "test": metrics}
    return {
        "k": args.kfold,
        "folds_run": ",".join(str(i) for i in args.fold_list),
        "data_root": str(data_root),
        "folds": folds,
        "aggregate": aggregate_folds([f["test"] for f in folds.values()]),
    }


# ---------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    data_root = resolve_data_root(args.data)
    out = Path(args.output).absolute()
    if Path(args.config).is_file():  # else taken as relative to the repo root, where tools run
        args.config = _rel(Path(args.config))
    reasons = {n: skip_reason(data_root, n) for n in args.dataset_list}
    if all(reasons.values()):
        for n, why in reasons.items():
            print(f"real_data.py: skipping {n}: {why}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    run = Runner(out / "logs")
    iterations = f"{args.max_iter} iterations" if args.max_iter else "the config's schedule"
    results = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine_description(),
            "config": args.config,
            "iterations": iterations,
            "seed": args.seed,
            "split": args.split,
            "smoke": args.smoke,
            "command": " ".join(
                _quote(a)
                for a in [
                    "python",
                    "benchmarks/real_data.py",
                    *(sys.argv[1:] if argv is None else argv),
                ]
            ),
        },
        "datasets": {},
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="sperm_d2_smoke_") as tmp:
        for name in args.dataset_list:
            res: dict = {}
            results["datasets"][name] = res
            if reasons[name]:
                print(f"real_data.py: skipping {name}: {reasons[name]}")
                res["skipped"] = reasons[name]
                continue
            src = data_root / DATASETS[name]
            if args.smoke:
                src = smoke_subset(src, Path(tmp) / name, args.smoke_images)
            t0 = time.perf_counter()
            try:
                res["split"] = run_split(run, args, name, src, out / name / "split")
                if name == "hushem" and args.kfold:
                    res["kfold"] = run_kfold(run, args, name, src, out / name / "kfold")
            except (StepError, OSError, ValueError, KeyError) as e:
                print(f"real_data.py: {name} failed: {e}", file=sys.stderr)
                res["error"] = str(e)
                failed = True
            res["wall_s"] = round(time.perf_counter() - t0, 1)
    results["meta"]["commands"] = run.commands
    results["meta"]["step_seconds"] = run.seconds
    results["meta"]["step_cpu_seconds"] = run.cpu_seconds
    write_results(out, results)
    print(format_table(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 1 if failed else 0


def write_results(out: Path, results: dict) -> None:
    """``results.json`` (NaN -> null) and ``results.md``, each written atomically."""
    from sperm_d2.atomic import atomic_write, write_json_atomic

    write_json_atomic(out / "results.json", results)
    with atomic_write(out / "results.md") as f:
        f.write(format_table(results))


if __name__ == "__main__":
    sys.exit(main())
