"""Deterministic stratified splits (train/val[/test]) and k-fold partitions.

Items are identified by a sortable key (the labelme path) and carry a stratum (the image-level
class). The same keys, strata and seed always give the same partition, whatever order the items
came in; every stratum is spread over the parts in proportion to the ratios.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from sperm_d2.data.problems import InputError

SPLIT_NAMES = {1: ("train",), 2: ("train", "val"), 3: ("train", "val", "test")}


def parse_ratios(text: str) -> tuple[float, ...]:
    """``"0.7,0.15,0.15"`` -> (0.7, 0.15, 0.15); 1-3 positive finite numbers, normalised to sum 1.

    A zero ratio is refused (it would write an empty split): leave the part out instead.
    """
    try:
        ratios = tuple(float(v) for v in str(text).split(","))
    except ValueError:
        raise InputError(f"--split {text!r}: expected 1-3 comma-separated numbers") from None
    if not 1 <= len(ratios) <= 3:
        raise InputError(f"--split {text!r}: expected 1-3 numbers (train,val[,test])")
    if not all(math.isfinite(r) and r > 0 for r in ratios):
        raise InputError(
            f"--split {text!r}: every ratio must be a positive finite number, e.g. 0.7,0.15,0.15 "
            "(leave a part out rather than giving it 0)"
        )
    if not math.isfinite(sum(ratios)):  # 1e308,1e308: scaled first, not normalised to 0, 0
        top = max(ratios)
        ratios = tuple(r / top for r in ratios)
    total = sum(ratios)
    return tuple(r / total for r in ratios)


def _groups(keys: Sequence[str], strata: Sequence[str], seed: int) -> list[list[int]]:
    if len(set(keys)) != len(keys):
        raise ValueError("split keys must be unique")
    by_stratum: dict[str, list[int]] = defaultdict(list)
    for i in sorted(range(len(keys)), key=lambda i: keys[i]):
        by_stratum[strata[i]].append(i)
    rng = np.random.default_rng(seed)
    out = []
    for stratum in sorted(by_stratum):
        idx = by_stratum[stratum]
        out.append([idx[j] for j in rng.permutation(len(idx))])
    return out


def stratified_split(
    keys: Sequence[str], strata: Sequence[str], ratios: Sequence[float], seed: int = 0
) -> list[list[int]]:
    """Partition item indices into ``len(ratios)`` parts, stratified; parts are sorted by key.

    Rounding is carried across strata (cumulative boundaries over the concatenated shuffled
    strata) so the overall sizes match the ratios as closely as possible.
    """
    total = float(sum(ratios))
    cum = np.cumsum([r / total for r in ratios])
    parts: list[list[int]] = [[] for _ in ratios]
    done, acc = 0, np.zeros(len(ratios))  # per-part counts so far
    for group in _groups(keys, strata, seed):
        n_after = done + len(group)
        bounds = np.round(cum * n_after).astype(int)
        want = np.diff(np.concatenate([[0], bounds])) - acc  # per-part quota for this stratum
        want = np.maximum(want, 0).astype(int)
        # Fix rounding so the stratum is fully assigned; give leftovers to the largest ratio.
        while want.sum() > len(group):
            want[np.argmax(want)] -= 1
        while want.sum() < len(group):
            want[int(np.argmax(ratios))] += 1
        start = 0
        for p, n in enumerate(want):
            parts[p].extend(group[start : start + n])
            start += n
        acc += want
        done = n_after
    return [sorted(p, key=lambda i: keys[i]) for p in parts]


def kfold_split(
    keys: Sequence[str], strata: Sequence[str], k: int, seed: int = 0
) -> list[tuple[list[int], list[int]]]:
    """``k`` (train, val) index pairs; the val parts are disjoint and together cover every item."""
    if k < 2:
        raise InputError(f"--kfold {k}: need at least 2 folds")
    if k > len(keys):
        raise InputError(f"--kfold {k}: only {len(keys)} images")
    folds: list[list[int]] = [[] for _ in range(k)]
    pos = 0  # continue round-robin across strata so fold sizes differ by at most one
    for group in _groups(keys, strata, seed):
        for i in group:
            folds[pos % k].append(i)
            pos += 1
    out = []
    for f in range(k):
        val = sorted(folds[f], key=lambda i: keys[i])
        train = sorted(
            (i for g, fold in enumerate(folds) if g != f for i in fold), key=lambda i: keys[i]
        )
        out.append((train, val))
    return out
