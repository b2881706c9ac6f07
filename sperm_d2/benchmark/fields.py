"""The benchmark on full microscope fields (Sperm Parsing: labelme files with every sperm in
parts): prepare the labelme files into one "head" class and a train/val/test split, train the
full-field detector (selected on val), evaluate on test (COCO AP, head recall, outline IoU,
border flags; threshold chosen on val), and time ``infer.py`` on the test fields (with a head
grader when one is given: these fields have no grades, so its grades are shown, not scored)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from sperm_d2.benchmark.crops import split_images
from sperm_d2.benchmark.runner import Runner
from sperm_d2.benchmark.training import train_step

#: field data sets: benchmark name -> label map (relative to the repo root, where tools run)
FIELD_LABELS = {"sperm_parsing": "configs/labels/sperm_parsing_heads.yaml"}
#: what ``prepare_data.py`` exit codes mean: 1 = some files skipped or clipped, still usable
PREPARE_OK = (0, 1)
#: the registered datasets' prefix (SPERM.DATASET_PREFIX's default)
PREFIX = "sperm"
#: the numbers kept from evaluate.py's metrics.json ("test" part)
COCO_KEYS = (
    "segm/AP",
    "segm/AP50",
    "segm/AP75",
    "bbox/AP",
    "heads/recall50",
    "heads/precision50",
    "heads/median_iou",
    "heads/mean_iou",
    "heads/border_accuracy",
    "heads/gt_heads",
    "heads/gt_at_border",
)


def smoke_fields(src: Path, dst: Path, count: int) -> Path:
    """Copy the first ``count`` labelme files (sorted) of ``src`` and the images they name."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.glob("*.json"))[:count]:
        shutil.copy2(f, dst / f.name)
        image = json.loads(f.read_text(encoding="utf-8")).get("imagePath") or ""
        if image and (src / Path(image).name).is_file():
            shutil.copy2(src / Path(image).name, dst / Path(image).name)
    return dst


def collect_field_metrics(coco_json: Path, infer_summary: Path | None) -> dict:
    """The benchmark's field numbers: COCO and head-level metrics on test, and ``infer.py``'s
    seconds per field and heads found per field (``infer_summary``: its summary.json)."""
    coco = json.loads(Path(coco_json).read_text(encoding="utf-8"))
    out = {k: coco["test"].get(k) for k in COCO_KEYS}
    out["instance_threshold"] = coco.get("threshold")
    if infer_summary is not None and infer_summary.is_file():
        s = json.loads(infer_summary.read_text(encoding="utf-8"))
        total = s.get("totals", {}).get("total", {})
        images = s.get("images_processed") or 0
        out["infer/s_per_field"] = s["seconds"] / images if images else None
        out["infer/heads_per_field"] = total.get("heads_per_image")
        out["infer/heads_at_border"] = total.get("heads_at_border")
        out["infer/pct_good"] = total.get("pct_good")
        out["infer/graded"] = bool(s.get("grader"))
    return out


def run_fields(run: Runner, args: argparse.Namespace, name: str, src: Path, out: Path) -> dict:
    """Prepare, train (selected on val), evaluate on test, time ``infer.py`` on the test fields."""
    data_root = out / "data"
    prepare = [sys.executable, "tools/prepare_data.py", "--input", str(src)]
    prepare += ["--output", run.rel(data_root), "--label-map", FIELD_LABELS[name]]
    prepare += ["--seed", str(args.seed), "--workers", str(args.workers), "--split", args.split]
    run(prepare, f"{name}_prepare", ok=PREPARE_OK)
    field_args = argparse.Namespace(**{**vars(args), "config": args.fields_config})
    train = train_step(run, field_args, name, data_root, out / "train", [])
    evaluate = [sys.executable, "tools/evaluate.py", "--run", run.rel(out / "train")]
    evaluate += ["--dataset", f"{PREFIX}_test", "--val-dataset", f"{PREFIX}_val"]
    evaluate += ["--output", run.rel(out / "eval"), "--overwrite"]
    run([*evaluate, *(["--opts", *args.opts] if args.opts else [])], f"{name}_eval")
    fields = [run.rel(p) for p in split_images(data_root, "test")]
    infer = [sys.executable, "tools/infer.py", "--run", run.rel(out / "train")]
    infer += ["--grader", run.rel(args.field_grader) if args.field_grader else "none"]
    infer += ["--input", *fields, "--output", run.rel(out / "infer"), "--overwrite"]
    run(infer, f"{name}_infer")
    return {
        "kind": "fields",
        "data_root": str(data_root),
        "train": train,
        "test": collect_field_metrics(
            out / "eval" / "metrics.json", out / "infer" / "summary.json"
        ),
        "test_images": len(fields),
    }
