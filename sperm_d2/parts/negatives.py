"""Hard negatives for the head-part segmenter: what a detector calls a head that no sperm is.

On real smears a head detector also outlines round cells, debris and stain blobs with high
scores. The head-part segmenter sees each detection on its own and can say "no sperm head here"
(background over most of the mask): it learns that from these negatives. With
``SPERM.PARTS.NEGATIVES_RUN`` (a detector run folder) the head-part loaders run that detector
once over their fields; every detected head of which at most :data:`MAX_HEAD_SHARE` lies on an
annotated head becomes a patch whose target is background throughout. The result is cached in
``OUTPUT_DIR`` per split (keyed by the detector's checkpoint and the split's records), so a
resumed training and each evaluation do not run the detector again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sperm_d2.atomic import atomic_write
from sperm_d2.parts.head_crop import HeadPatch, head_patch
from sperm_d2.parts.targets import head_part_codes, label_map

logger = logging.getLogger(__name__)

#: a detection with at most this share of its pixels on annotated heads is a negative
MAX_HEAD_SHARE = 0.3


def _key(weights: str, records: list[dict]) -> str:
    stat = Path(weights).stat()
    ident = [str(Path(weights).resolve()), stat.st_size, stat.st_mtime_ns]
    ident += [(r["file_name"], len(r.get("annotations", []))) for r in records]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]


def _load(path: Path, key: str) -> list[tuple[int, HeadPatch]] | None:
    try:
        with np.load(path) as z:
            if str(z["key"]) != key:
                return None
            out = []
            for k, x0, y0, h, w, off in z["index"]:
                bits = z["bits"][off : off + (int(h) * int(w) + 7) // 8]
                mask = np.unpackbits(bits, count=int(h) * int(w)).astype(bool).reshape(h, w)
                labels = np.zeros((h, w), np.uint8)
                out.append((int(k), HeadPatch(int(x0), int(y0), mask, labels)))
            return out
    except (OSError, KeyError, ValueError):
        return None


def _save(path: Path, key: str, negatives: list[tuple[int, HeadPatch]]) -> None:
    index, bits, off = [], [], 0
    for k, p in negatives:
        packed = np.packbits(p.mask.ravel())
        index.append((k, p.x0, p.y0, *p.mask.shape, off))
        bits.append(packed)
        off += len(packed)
    with atomic_write(path, "wb") as f:
        np.savez(
            f,
            key=np.array(key),
            index=np.array(index, np.int64).reshape(-1, 6),
            bits=np.concatenate(bits) if bits else np.zeros(0, np.uint8),
        )


def _detector(run: Path):
    """``(weights, detect)`` of a detector run folder: ``detect(image)`` gives the (N, H, W) bool
    masks of the heads scoring at least its ``SPERM.CONFIDENCE_THRESHOLD`` in a BGR image (the
    whole image at the run's test size; a plain detectron2 forward, as its evaluation runs it)."""
    import torch
    from detectron2.data import transforms as T
    from detectron2.modeling import build_model

    from sperm_d2.config import setup_cfg
    from sperm_d2.errors import InputError
    from sperm_d2.model_weights import load_model_weights

    if not (run / "config.yaml").is_file():
        raise InputError(f"SPERM.PARTS.NEGATIVES_RUN {run}: not a run folder (no config.yaml)")
    weights = next((run / n for n in CHECKPOINTS if (run / n).is_file()), None)
    if weights is None:
        raise InputError(
            f"SPERM.PARTS.NEGATIVES_RUN {run}: no checkpoint ({', '.join(CHECKPOINTS)})"
        )
    cfg = setup_cfg(str(run / "config.yaml"))
    model = build_model(cfg).eval()
    load_model_weights(model, weights)  # as data: no pickled code runs
    resize = T.ResizeShortestEdge(cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST)
    floor = float(cfg.SPERM.CONFIDENCE_THRESHOLD)

    def detect(image: np.ndarray) -> np.ndarray:
        h, w = image.shape[:2]
        x = resize.get_transform(image).apply_image(image)
        x = torch.as_tensor(np.ascontiguousarray(x.transpose(2, 0, 1)))
        with torch.inference_mode():
            inst = model([{"image": x, "height": h, "width": w}])[0]["instances"].to("cpu")
        keep = inst.scores >= floor
        return inst.pred_masks[keep].numpy().astype(bool).reshape(-1, h, w)

    return str(weights), detect


#: checkpoints tried, in order, in the detector's run folder
CHECKPOINTS = ("model_best.pth", "model_final.pth")


def mine_negatives(
    detector_run: str | os.PathLike,
    records: list[dict],
    class_names,
    cache: Path | None = None,
    read=None,
) -> list[tuple[int, HeadPatch]]:
    """(record index, negative patch) of every detection of ``detector_run`` on ``records``
    that is no annotated head (module docstring); ``read(k)`` gives record ``k``'s BGR image."""
    weights, detect = _detector(Path(detector_run))
    key = _key(weights, records)
    if cache is not None and cache.is_file():
        found = _load(cache, key)
        if found is not None:
            logger.info("%d hard negatives from %s (cached)", len(found), cache)
            return found
    head_ids = head_part_codes(class_names)
    out: list[tuple[int, HeadPatch]] = []
    for k, record in enumerate(tqdm(records, desc="hard negatives", unit="field")):
        image = read(k)
        h, w = image.shape[:2]
        annotated = np.isin(label_map(record.get("annotations", []), class_names, h, w), head_ids)
        for mask in detect(image):
            area = int(mask.sum())
            if area and (mask & annotated).sum() <= MAX_HEAD_SHARE * area:
                p = head_patch(mask)
                out.append((k, HeadPatch(p.x0, p.y0, p.mask, np.zeros(p.mask.shape, np.uint8))))
    logger.info("%d hard negatives from %s on %d fields", len(out), detector_run, len(records))
    if cache is not None:
        _save(cache, key, out)
    return out
