"""What the real-data benchmark runs on: its datasets, where their crops are, and the checks of
its command-line choices (one-line errors naming the option)."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Mapping, Sequence

ENV_REAL_DATA = "SPERM_D2_REAL_DATA"
#: benchmark name -> folder under the real-data root
DATASETS = {"hushem": "hushem", "smids": "smids_train", "sperm_parsing": "sperm_parsing"}
#: the protocols: a train/val/test split (every data set), K-fold CV (HuSHeM)
PROTOCOLS = ("split", "kfold")
#: the data sets of full fields as labelme files (the others are class folders of crops)
FIELD_DATASETS = ("sperm_parsing",)
#: training config, relative to the repo root (where the tools run)
DEFAULT_CONFIG = "configs/sperm_mask_rcnn_R_18_FPN_real_cpu.yaml"
#: the head grader's training config (second stage), relative to the repo root
DEFAULT_GRADER_CONFIG = "configs/sperm_grader_cpu.yaml"
#: the full-field detector's training config, relative to the repo root (PointRend mask head:
#: val segm AP 85.5 against the standard head's 84.5, README Results)
DEFAULT_FIELDS_CONFIG = "configs/sperm_mask_rcnn_R_18_FPN_fields_pointrend_cpu.yaml"


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


def check_args(args: argparse.Namespace) -> argparse.Namespace:
    """Check the parsed options and complete them: ``dataset_list`` and ``fold_list`` from
    ``--datasets``/``--folds``, ``protocol_list`` from ``--protocols``, ``--max-iter`` 4 and
    ``--grader-epochs`` 1 for ``--smoke``, ``--grader-config none`` as "". Raises ValueError
    naming the option."""
    args.dataset_list = parse_csv(args.datasets, list(DATASETS), "dataset")
    if args.kfold < 0 or args.kfold == 1:
        raise ValueError(f"--kfold {args.kfold}: use 0 (none) or at least 2")
    args.fold_list = parse_folds(args.folds, args.kfold)
    if args.max_iter is None and args.smoke:
        args.max_iter = 4
    if args.max_iter is not None and args.max_iter < 1:
        raise ValueError(f"--max-iter {args.max_iter}: must be at least 1")
    if args.grader_config.lower() == "none":
        args.grader_config = ""
    if (args.grader_opts or args.grader_name) and not args.grader_config:
        raise ValueError("--grader-opts/--grader-name with --grader-config none: no grader")
    if args.grader_name is not None and not re.fullmatch(
        r"[A-Za-z0-9][A-Za-z0-9_.-]*", args.grader_name
    ):
        raise ValueError(
            f"--grader-name {args.grader_name!r}: use letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )
    if args.grader_epochs is None and args.smoke:
        args.grader_epochs = 1
    if args.grader_epochs is not None and args.grader_epochs < 1:
        raise ValueError(f"--grader-epochs {args.grader_epochs}: must be at least 1")
    if args.smoke_images < 2:
        raise ValueError(f"--smoke-images {args.smoke_images}: must be at least 2")
    for flag, opts in (("--opts", args.opts), ("--grader-opts", args.grader_opts)):
        if len(opts) % 2:
            raise ValueError(f"{flag} {opts}: expected KEY VALUE pairs")
        for key, value in zip(opts[::2], opts[1::2]):
            # checked here, not after an hour of detector training (relative to this folder)
            if (
                key == "MODEL.WEIGHTS"
                and value
                and "://" not in value
                and not Path(value).is_file()
            ):
                raise ValueError(f"{flag} MODEL.WEIGHTS {value}: not a file")
    args.protocol_list = parse_csv(args.protocols, PROTOCOLS, "protocol")
    if "split" not in args.protocol_list:
        if not args.kfold:
            raise ValueError("--protocols kfold with --kfold 0: nothing to run")
        others = [d for d in args.dataset_list if d != "hushem"]
        if others:
            raise ValueError(
                f"--protocols kfold: only hushem has a K-fold protocol, not {', '.join(others)}"
            )
    return args


def resolve_data_root(data: str | None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """--data, else $SPERM_D2_REAL_DATA, else None."""
    root = data or environ.get(ENV_REAL_DATA)
    return Path(root).absolute() if root else None  # the tools run from the repo root


def skip_reason(data_root: Path | None, dataset: str) -> str | None:
    """Why ``dataset`` cannot run (one line), or None when its class folders (field data
    sets: labelme files) are there."""
    if data_root is None:
        return (
            f"no real data: pass --data DIR or set {ENV_REAL_DATA} to the folder holding "
            f"{', '.join(d + '/' for d in DATASETS.values())}"
        )
    folder = data_root / DATASETS[dataset]
    if not folder.is_dir():
        return f"{folder}: folder not found"
    if dataset in FIELD_DATASETS:
        if not any(folder.glob("*.json")):
            return f"{folder}: no labelme .json files inside"
    elif not any(p.is_dir() for p in folder.iterdir()):
        return f"{folder}: no class folders inside"
    return None
