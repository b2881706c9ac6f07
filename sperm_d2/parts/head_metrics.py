"""Head-level part metrics against the annotation: each annotated head matched to a predicted
one, the acrosome share error (percentage points) and the vacuole count of each matched head.

Pure numpy + OpenCV. Predicted heads are a detector's masks, the annotated heads themselves (to
measure the part model alone) or, for the field segmenter alone, the connected components of its
head pixels (acrosome + nucleus + vacuole).
"""

from __future__ import annotations

import dataclasses
from typing import Collection, Sequence

import cv2
import numpy as np

from sperm_d2.parts.targets import HEAD_PARTS, head_part_codes

#: a predicted head component smaller than this (px) is a speck, not a head
MIN_HEAD_PX = 100
#: an annotated and a predicted head match from this mask IoU
MATCH_IOU = 0.5


@dataclasses.dataclass
class HeadMatch:
    """One annotated head and the predicted head matched to it (if any)."""

    iou: float
    gt_acrosome_share: float  # % of the head area
    pred_acrosome_share: float | None
    gt_vacuoles: int
    pred_vacuoles: int | None
    # annotated with no acrosome and a split nucleus (sperm_d2.data.label_checks): its
    # annotated share is likely wrong, whatever the prediction
    split_nucleus: bool = False


def head_components(labels: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """(N, H, W) bool: the connected components of a label map's head pixels, specks dropped."""
    head_ids = head_part_codes(class_names)
    head = np.isin(labels, head_ids).astype(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(head, connectivity=8)
    keep = [k for k in range(1, n) if stats[k, cv2.CC_STAT_AREA] >= MIN_HEAD_PX]
    if not keep:
        return np.zeros((0, *labels.shape), bool)
    return np.stack([comp == k for k in keep])


def count_components(mask: np.ndarray) -> int:
    """Connected components (8-connected) of a mask."""
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def _annotated(
    gt_parts: dict[int, dict[str, np.ndarray]],
) -> list[tuple[int, dict[str, np.ndarray], np.ndarray]]:
    """(group_id, parts, head mask) of each annotated sperm that has head parts."""
    out = []
    for gid, parts in gt_parts.items():
        heads = [parts[p] for p in HEAD_PARTS if p in parts]
        if heads and np.any(heads):
            out.append((gid, parts, np.any(heads, axis=0)))
    return out


def annotated_heads(
    gt_parts: dict[int, dict[str, np.ndarray]], shape: tuple[int, int]
) -> np.ndarray:
    """(N, H, W) bool: each annotated sperm's head (acrosome | nucleus | vacuole), as
    :func:`match_heads` sees it; heads for the part model when the outline is to be taken as
    known (the part model's error alone, without a detector's)."""
    heads = [head for _, _, head in _annotated(gt_parts)]
    return np.stack(heads) if heads else np.zeros((0, *shape), bool)


def match_heads(
    gt_parts: dict[int, dict[str, np.ndarray]],
    pred_heads: np.ndarray,
    pred_parts: Sequence[dict[str, np.ndarray]],
    split_nuclei: Collection[int] = (),
) -> list[HeadMatch]:
    """Greedy one-to-one matching by mask IoU (>= :data:`MATCH_IOU`) of annotated heads
    (group_id -> part masks, :func:`sperm_d2.parts.targets.sperm_parts`) to predicted heads and
    their parts; one :class:`HeadMatch` per annotated head with a head. ``split_nuclei``: the
    group_ids :func:`sperm_d2.data.label_checks.split_nucleus_groups` flags."""
    gts = _annotated(gt_parts)
    iou = np.zeros((len(gts), len(pred_heads)))
    for i, (_, _, g) in enumerate(gts):
        for j, p in enumerate(pred_heads):
            inter = np.logical_and(g, p).sum()
            iou[i, j] = inter / max(np.logical_or(g, p).sum(), 1) if inter else 0.0
    matched: dict[int, int] = {}
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < MATCH_IOU:
            break
        if i not in matched and j not in matched.values():
            matched[int(i)] = int(j)
    out = []
    for i, (gid, parts, head) in enumerate(gts):
        acro, vac = parts.get("acrosome"), parts.get("vacuole")
        gt_share = 100.0 * (acro & head).sum() / head.sum() if acro is not None else 0.0
        gt_vac = count_components(vac & head) if vac is not None else 0
        split = gid in split_nuclei
        j = matched.get(i)
        if j is None:
            out.append(HeadMatch(0.0, float(gt_share), None, gt_vac, None, split))
            continue
        ph, pp = pred_heads[j], pred_parts[j]
        p_head = ph | np.any([pp[p] for p in HEAD_PARTS if p in pp], axis=0)
        p_acro = pp.get("acrosome", np.zeros_like(ph))
        share = 100.0 * (p_acro & p_head).sum() / max(p_head.sum(), 1)
        p_vac = count_components(pp.get("vacuole", np.zeros_like(ph)) & p_head)
        out.append(HeadMatch(float(iou[i, j]), float(gt_share), float(share), gt_vac, p_vac, split))
    return out


def summarise(matches: Sequence[HeadMatch], within: float = 5.0) -> dict[str, float]:
    """Matched share of annotated heads, acrosome share error (mean / median absolute, in
    points; % of matched heads within ``within`` points, also over the matched heads whose
    annotation is not flagged ``split_nucleus``) and vacuole count accuracy (%)."""
    m = [x for x in matches if x.pred_acrosome_share is not None]
    out = {
        "heads": float(len(matches)),
        "matched": float(len(m)),
        "split_nucleus_heads": float(sum(x.split_nucleus for x in matches)),
    }
    if not m:
        return out
    err = np.abs([x.pred_acrosome_share - x.gt_acrosome_share for x in m])
    clean = err[[not x.split_nucleus for x in m]]
    out.update(
        {
            "matched_pct": 100.0 * len(m) / len(matches),
            "median_head_iou": float(np.median([x.iou for x in m])),
            "acrosome_share_mae_pts": float(err.mean()),
            "acrosome_share_median_err_pts": float(np.median(err)),
            f"acrosome_share_within_{within:g}pts_pct": float(100.0 * (err <= within).mean()),
            "vacuole_count_accuracy_pct": float(
                100.0 * np.mean([x.pred_vacuoles == x.gt_vacuoles for x in m])
            ),
        }
    )
    if clean.size:
        out[f"acrosome_share_within_{within:g}pts_unflagged_pct"] = float(
            100.0 * (clean <= within).mean()
        )
    return out
