#!/usr/bin/env python
"""bf16 parity: is CPU bf16 as accurate as fp32? The accuracy half of issue 13's "bf16 training
>= 1.4x fp32 at equal accuracy" and the evidence "auto" precision waits for
(``sperm_d2.precision.BF16_PARITY_SHOWN``).

On one prepared data root (``prepare_data.py`` output with train/val/test) it trains the detector
(and, with ``--grader-config``, the head grader) twice with the same seed: fp32, and bf16
(``SOLVER.AMP.ENABLED True``, evaluation during training at bf16 too). Then it evaluates with
``tools/evaluate.py`` on the test split (COCO metrics) and on class folders (image-level
grading), four ways:

* ``fp32``: fp32 training, fp32 inference (the reference);
* ``bf16 inference``: the fp32 models run at ``SPERM.INFER_PRECISION bf16``;
* ``bf16 training``: the bf16-trained models at fp32 inference;
* ``bf16``: bf16 training and bf16 inference.

Each row prints segm/AP, segm/AP50, pixellib/mAP50 (x100) and the image-level accuracy and
balanced accuracy (%), their difference to the reference, and "ok" when every difference is within
``--tolerance`` points (1 by default, as the issue asks). ``--fp32-run`` (and ``--fp32-grader``)
compare against runs trained before instead of training fp32 here; ``--inference-only`` leaves
out the bf16 training. ``--noise-seed S`` adds a fifth row, an fp32 training with another seed:
two fp32 trainings differ too, and a small test split moves in steps of 100/n points, so that
row says how much of a difference is noise. The training rows
also print the trainings' CPU seconds and their ratio to fp32 (CPU time does not grow with other
jobs' load as wall time does). Trainings are stamped and reused/resumed like
``real_data.py``'s; evaluations rerun every time. Results: ``OUTPUT/parity.json`` and
``OUTPUT/parity.md``.

``--grader-seeds S [S ...]``: the head grader alone (``--grader-config``), trained fp32 and bf16
with each seed, scored on the ground-truth head masks of the test split (and its best val
balanced accuracy, the selection metric); per seed and as mean ± std over seeds, with the bf16
mean's difference to fp32 next to the spread between fp32 seeds, and the trainings' CPU seconds.
One grader training moves test accuracy by a few points from seed to seed, so the means decide.

Usage:
    # the head grader alone, 3 seeds per precision, on real_data.py's SMIDS split:
    python benchmarks/bench_bf16_parity.py --data-root output/real_data/smids/split/data \
        --grader-config configs/sperm_grader_cpu.yaml --grader-seeds 0 1 2 \
        --output output/parity/smids_grader
    # the demo's data (make demo first):
    python benchmarks/bench_bf16_parity.py --data-root output/demo/data \
        --folders output/demo/crops/test --val-folders output/demo/crops/val \
        --grader-config configs/sperm_grader_cpu.yaml --output output/parity/demo
    # a real split (real_data.py's HuSHeM split):
    python benchmarks/bench_bf16_parity.py --data-root output/real_data/hushem/split/data \
        --config configs/sperm_mask_rcnn_R_18_FPN_real_cpu.yaml \
        --grader-config configs/sperm_grader_cpu.yaml --output output/parity/hushem
    # bf16 inference only, on models trained before:
    python benchmarks/bench_bf16_parity.py --data-root output/real_data/smids/split/data \
        --fp32-run output/real_data/smids/split/train \
        --fp32-grader output/real_data/smids/split/grader --inference-only \
        --output output/parity/smids_inference
"""

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

from sperm_d2.atomic import atomic_write, write_json_atomic
from sperm_d2.benchmark.protocol import evaluate_step, grader_step
from sperm_d2.benchmark.runner import Runner
from sperm_d2.benchmark.training import train_step

#: (metric, scale to points): COCO APs are x100 already; the others are fractions
METRICS = (
    ("segm/AP", 1),
    ("segm/AP50", 1),
    ("pixellib/mAP50", 100),
    ("accuracy", 100),
    ("balanced_accuracy", 100),
)
#: row name -> (trained at, inferred at)
ROWS = {
    "fp32": ("fp32", "fp32"),
    "bf16 inference": ("fp32", "bf16"),
    "bf16 training": ("bf16", "fp32"),
    "bf16": ("bf16", "bf16"),
}
TRAIN_OPTS = {"fp32": ["SOLVER.AMP.ENABLED", "False"], "bf16": ["SOLVER.AMP.ENABLED", "True"]}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--data-root", required=True, help="prepare_data.py output (train/val/test)")
    p.add_argument("--config", default="configs/sperm_mask_rcnn_R_50_FPN_cpu.yaml")
    p.add_argument("--grader-config", default=None, help="also train and use the head grader")
    p.add_argument("--grader-epochs", type=int, default=None, help="grader SPERM.EPOCHS")
    p.add_argument("--max-iter", type=int, default=None, help="detector schedule (default: its)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--folders",
        default=None,
        help="class folders (or a COCO split .json) for image-level grading "
        "(default: DATA_ROOT/annotations/test.json)",
    )
    p.add_argument("--val-folders", default=None, help="the same, to choose the threshold on")
    p.add_argument(
        "--noise-seed",
        type=int,
        default=None,
        help="also train fp32 with this seed: how far two fp32 trainings differ (the yardstick)",
    )
    p.add_argument(
        "--fp32-run",
        default=None,
        help="an fp32 detector run to compare against instead of training one (e.g. "
        "real_data.py's); its grader: --fp32-grader",
    )
    p.add_argument("--fp32-grader", default=None, help="the grader run that goes with --fp32-run")
    p.add_argument(
        "--inference-only",
        action="store_true",
        help="no bf16 training: only the fp32 and 'bf16 inference' rows",
    )
    p.add_argument(
        "--grader-seeds",
        type=int,
        nargs="+",
        default=None,
        help="only the head grader (--grader-config): fp32 and bf16 trainings with each seed",
    )
    p.add_argument("--tolerance", type=float, default=1.0, help="points allowed (default 1)")
    p.add_argument("--output", required=True)
    p.add_argument("--opts", nargs=argparse.REMAINDER, default=[], help="detector KEY VALUE")
    args = p.parse_args(argv)
    if args.grader_seeds and not args.grader_config:
        p.error("--grader-seeds needs --grader-config")
    root = Path(args.data_root)
    if not (root / "annotations" / "test.json").is_file():
        p.error(f"--data-root {root}: no annotations/test.json (run prepare_data.py first)")
    args.folders = args.folders or str(root / "annotations" / "test.json")
    args.val_folders = args.val_folders or str(root / "annotations" / "val.json")
    return args


def train(run: Runner, args, precision: str, seed: int, out: Path) -> dict:
    """Detector (and grader) trained at ``precision`` with ``seed`` into ``out``; returns the run
    folders and the trainings' CPU seconds."""
    data, tag = Path(args.data_root), out.name
    opts = [*TRAIN_OPTS[precision], "SEED", str(seed), "SPERM.INFER_PRECISION", precision]
    info = {"detector": out / "train", "grader": None, "cpu_s": 0.0}
    d = train_step(run, args, f"{tag}_detector", data, info["detector"], opts)
    info["cpu_s"] += run.cpu_seconds.get(f"{tag}_detector_train", 0.0)
    info["reused"] = bool(d.get("reused"))
    if args.grader_config:
        info["grader"] = out / "grader"
        g = train_step(run, args, f"{tag}_grader", data, info["grader"], opts, grader=True)
        info["cpu_s"] += run.cpu_seconds.get(f"{tag}_grader_train", 0.0)
        info["reused"] = info["reused"] or bool(g.get("reused"))
    return info


def evaluate(run: Runner, args, trained: dict, inferred: str, out: Path, name: str) -> dict:
    """tools/evaluate.py on the test split and the class folders at ``inferred`` precision
    (without a grader run: none, even if the detector run names one)."""
    opts = ["SPERM.INFER_PRECISION", inferred]
    opts += [] if trained["grader"] else ["SPERM.GRADER.RUN", "none"]
    return evaluate_step(
        run,
        name,
        trained["detector"],
        out,
        Path(args.data_root),
        "test",
        "val",
        grader=trained["grader"],
        folders=(args.folders, args.val_folders),
        opts=opts,
    )


def table(rows: dict, wanted: dict, trainings: dict, tolerance: float) -> str:
    """The markdown table: metrics, differences to fp32 in points, ok, training CPU time."""
    head = "| run | " + " | ".join(f"{m} (Δ)" for m, _ in METRICS)
    lines = [head + " | within ±%g | training CPU s (fp32/bf16) |" % tolerance]
    lines.append("|" + "---|" * (len(METRICS) + 3))
    ref = rows["fp32"]
    for name, metrics in rows.items():
        cells, ok = [], True
        for m, scale in METRICS:
            v, r = metrics.get(m), ref.get(m)
            if v is None or r is None:
                cells.append("n/a")
                continue
            delta = (v - r) * scale
            ok = ok and abs(delta) <= tolerance
            cells.append(f"{v * scale:.1f} ({delta:+.1f})")
        cpu, ref_cpu = trainings[wanted[name][0]]["cpu_s"], trainings["fp32"]["cpu_s"]
        speed = f"{cpu:.0f}" if cpu else "not timed here"
        speed += f" ({ref_cpu / cpu:.2f}x)" if cpu and ref_cpu else ""
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {'ok' if ok else 'NO'} | {speed} |")
    return "\n".join(lines)


#: the grader-only metrics compared (test split, ground-truth masks; val: the selection metric)
GRADER_METRICS = ("test accuracy", "test balanced accuracy", "val balanced accuracy")


def grader_seeds(run: Runner, args, out: Path) -> dict:
    """``--grader-seeds``: the grader alone, fp32 and bf16, each seed; returns per (precision,
    seed) its metrics (fractions) and training CPU seconds."""
    results = {}
    for seed in args.grader_seeds:
        for precision in ("fp32", "bf16"):
            tag = f"{precision}_seed{seed}"
            opts = [*TRAIN_OPTS[precision], "SEED", str(seed), "SPERM.INFER_PRECISION", precision]
            step = grader_step(run, args, tag, Path(args.data_root), out / tag, opts, "sperm_test")
            best = json.loads((out / tag / "best_model.json").read_text(encoding="utf-8"))
            results[precision, seed] = {
                "test accuracy": step["test"]["grader_only/accuracy"],
                "test balanced accuracy": step["test"]["grader_only/balanced_accuracy"],
                "val balanced accuracy": best["value"],
                "cpu_s": run.cpu_seconds.get(f"{tag}_grader_train", 0.0),
            }
    return results


def grader_table(results: dict, seeds: list[int]) -> str:
    """Per seed and mean ± std (points), the bf16 mean's difference to fp32's, the fp32 seeds'
    spread (max - min: what one training differs from another by), training CPU seconds."""
    points = {
        (p, m): [100 * results[p, s][m] for s in seeds]
        for p in ("fp32", "bf16")
        for m in GRADER_METRICS
    }
    cpu = {p: [results[p, s]["cpu_s"] for s in seeds] for p in ("fp32", "bf16")}
    lines = ["| run | " + " | ".join(GRADER_METRICS) + " | training CPU s |", "|---" * 5 + "|"]
    for p in ("fp32", "bf16"):
        for i, seed in enumerate(seeds):
            cells = [f"{points[p, m][i]:.1f}" for m in GRADER_METRICS]
            time = f"{cpu[p][i]:.0f}" if cpu[p][i] else "reused"
            lines.append(f"| {p} seed {seed} | " + " | ".join(cells) + f" | {time} |")
    for p in ("fp32", "bf16"):
        cells = [
            f"**{statistics.mean(points[p, m]):.1f}** ± "
            f"{statistics.stdev(points[p, m]) if len(seeds) > 1 else 0.0:.1f}"
            for m in GRADER_METRICS
        ]
        time = f"{statistics.mean(cpu[p]):.0f}" if all(cpu[p]) else "n/a"
        lines.append(f"| {p} mean ± std | " + " | ".join(cells) + f" | {time} |")
    diffs = [
        f"{statistics.mean(points['bf16', m]) - statistics.mean(points['fp32', m]):+.1f}"
        for m in GRADER_METRICS
    ]
    ratio = "n/a"
    if all(cpu["fp32"]) and all(cpu["bf16"]):
        ratio = f"{statistics.mean(cpu['fp32']) / statistics.mean(cpu['bf16']):.2f}x less"
    lines.append("| bf16 mean - fp32 mean | " + " | ".join(diffs) + f" | {ratio} |")
    spread = [f"{max(points['fp32', m]) - min(points['fp32', m]):.1f}" for m in GRADER_METRICS]
    lines.append("| fp32 seeds' spread (max - min) | " + " | ".join(spread) + " | |")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    out = Path(args.output)
    run = Runner(out / "logs")
    if args.grader_seeds:
        results = grader_seeds(run, args, out)
        text = grader_table(results, args.grader_seeds)
        print(text)
        rows = {f"{p} seed {s}": r for (p, s), r in results.items()}
        write_json_atomic(out / "parity.json", {"grader_seeds": rows, "commands": run.commands})
        with atomic_write(out / "parity.md") as f:
            f.write(text + "\n\nCommands:\n\n" + "\n".join(run.commands) + "\n")
        return 0
    trainings = {}
    if args.fp32_run:
        grader = Path(args.fp32_grader) if args.fp32_grader else None
        trainings["fp32"] = {"detector": Path(args.fp32_run), "grader": grader, "cpu_s": 0.0}
    for p in ("fp32",) if args.inference_only else ("fp32", "bf16"):
        if p not in trainings:
            trainings[p] = train(run, args, p, args.seed, out / p)
    rows_wanted = {name: row for name, row in ROWS.items() if row[0] in trainings}
    if args.noise_seed is not None:  # the yardstick: how far two fp32 trainings differ
        noise = f"fp32 seed {args.noise_seed}"
        trainings[noise] = train(
            run, args, "fp32", args.noise_seed, out / f"fp32_seed{args.noise_seed}"
        )
        rows_wanted[noise] = (noise, "fp32")
    rows = {}
    for name, (trained, inferred) in rows_wanted.items():
        tag = name.replace(" ", "_")
        rows[name] = evaluate(run, args, trainings[trained], inferred, out / "eval" / tag, tag)
    text = table(rows, rows_wanted, trainings, args.tolerance)
    print(text)
    result = {
        "rows": rows,
        "trainings": {p: {k: str(v) for k, v in t.items()} for p, t in trainings.items()},
        "commands": run.commands,
    }
    write_json_atomic(out / "parity.json", result)
    with atomic_write(out / "parity.md") as f:
        f.write(text + "\n\nCommands:\n\n" + "\n".join(run.commands) + "\n")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sys.exit(main(parse_args()))
