#!/usr/bin/env python
"""Head-grader runs scored on the ground-truth heads of a split, alone and every combination
averaged (the way ``--grader A B`` averages them): which runs, views or ensembles to keep,
chosen on val.

Each run is scored on its own crops (its ``SPERM.GRADER.VIEW``, crop size...), cut once and
cached in its ``grader_crops/`` as training does; the combinations average the runs' class
probabilities head by head. Prints balanced accuracy, accuracy and log loss per line.

Usage:
    python benchmarks/score_graders.py --data output/real_data/smids/split/data \\
        --runs output/grader output/grader_ensemble output/grader_unaligned --split sperm_val
"""

import argparse
import itertools
from pathlib import Path

import sperm_d2.cli_warnings  # noqa: F401 isort: skip (first: hides known-harmless warnings)

import numpy as np
import torch
from detectron2.modeling import build_model

from sperm_d2.config import setup_cfg
from sperm_d2.data.register import register_sperm_datasets
from sperm_d2.grading.evaluator import grading_metrics
from sperm_d2.grading.samples import load_samples
from sperm_d2.model_weights import load_model_weights


def run_probabilities(run: Path, data: str, split: str, checkpoint: str) -> tuple:
    """``(probs (N, K), labels (N,), class names)`` of ``run``'s grader on ``split``'s heads."""
    cfg = setup_cfg(str(run / "config.yaml"), ["SPERM.DATA_ROOT", data, "MODEL.DEVICE", "cpu"])
    register_sperm_datasets(cfg)
    samples = load_samples(cfg, split, cache_dir=run / "grader_crops")
    model = build_model(cfg).eval()
    load_model_weights(model, run / checkpoint)
    batch = int(cfg.SPERM.GRADER.TEST_BATCH_SIZE)
    crops = torch.from_numpy(samples.images).permute(0, 3, 1, 2)  # (N, C, S, S) channels-last
    with torch.inference_mode():
        probs = [
            model({"images": crops[i : i + batch]})["probs"].float().numpy()
            for i in range(0, len(crops), batch)
        ]
    return np.concatenate(probs), samples.labels, list(cfg.SPERM.CLASSES)


def main(args: argparse.Namespace) -> None:
    runs = [Path(r) for r in args.runs]
    scored = {r: run_probabilities(r, args.data, args.split, args.checkpoint) for r in runs}
    labels, names = scored[runs[0]][1], scored[runs[0]][2]
    for r in runs[1:]:
        if not np.array_equal(scored[r][1], labels):
            raise SystemExit(f"{r}: other heads or labels than {runs[0]} on {args.split}")
    print(f"{args.split}: {len(labels)} heads, {args.checkpoint}")
    for k in range(1, len(runs) + 1):
        for combo in itertools.combinations(runs, k):
            m = grading_metrics(np.mean([scored[r][0] for r in combo], 0), labels, names)
            print(
                f"balanced {m['balanced_accuracy']:.4f}  accuracy {m['accuracy']:.4f}  "
                f"loss {m['loss']:.3f}  " + " + ".join(str(r) for r in combo)
            )


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", required=True, help="the split's data root (SPERM.DATA_ROOT)")
    p.add_argument("--runs", nargs="+", required=True, help="grader run folders")
    p.add_argument("--split", default="sperm_val", help="registered split (never test to choose)")
    p.add_argument("--checkpoint", default="model_best.pth", help="checkpoint file in each run")
    return p


if __name__ == "__main__":
    main(get_parser().parse_args())
