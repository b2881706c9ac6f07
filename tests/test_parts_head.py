"""The head-part segmenter (``SPERM.PARTS.INPUT "head"``): the canonical head crop with its mask
and the way back onto the field, its loaders, training through train_net.py, and the parser
that gives each detected head the head segmenter's parts inside its mask (beside a field
segmenter's midpiece and tail). Tiny synthetic fields built at test time, no weights."""

import csv
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from sperm_d2.config import setup_cfg
from sperm_d2.errors import InputError
from sperm_d2.parts.head_crop import (
    PATCH_MARGIN,
    crop_matrix,
    cut_head,
    head_patch,
    jitter_mask,
    to_patch,
)
from sperm_d2.parts.head_loader import HeadPartTrainLoader, record_heads
from sperm_d2.parts.targets import HEAD_PARTS, PART_CLASSES, label_map

from .conftest import REPO, split_opts
from .part_scenes import make_part_dataset, sperm_polygons

HEAD_INSTANT = REPO / "configs/quick_schedules/sperm_head_parts_instant_test.yaml"
FIELD_INSTANT = REPO / "configs/quick_schedules/sperm_parts_instant_test.yaml"


def _one_sperm(size=120, angle=0.7, scale=2.0):
    """(image, label map over PART_CLASSES) of one sperm drawn from its part polygons."""
    polys = sperm_polygons(size / 2, size / 2, angle, scale=scale)
    anns = [
        {"category_id": PART_CLASSES.index(name), "segmentation": [np.ravel(p).tolist()]}
        for name, p in polys.items()
    ]
    labels = label_map(anns, PART_CLASSES, size, size)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    return image, labels


def _head_labels(labels):
    head_ids = [PART_CLASSES.index(n) + 1 for n in HEAD_PARTS]
    return np.where(np.isin(labels, head_ids), labels, 0).astype(np.uint8)


def test_patch_crop_and_back_keep_the_parts() -> None:
    image, labels = _one_sperm()
    head = _head_labels(labels)
    patch = head_patch(head > 0, head)
    ys, xs = np.nonzero(head)
    assert (patch.x0, patch.y0) == (xs.min() - PATCH_MARGIN, ys.min() - PATCH_MARGIN)
    assert patch.mask.sum() == (head > 0).sum()  # the whole head, cut to its box
    size = 64
    matrix = crop_matrix(patch.mask, size, 0.7)
    x, lab = cut_head(image, patch, matrix, size)
    assert x.shape == (size, size, 4) and x.dtype == np.uint8 and lab.shape == (size, size)
    # the mask channel is the head, its labels inside it; the colour is the image's
    assert set(np.unique(lab)) == {0, *np.unique(head[head > 0])}
    inside = x[..., 3] > 127
    assert (lab[inside] > 0).mean() > 0.95 and (lab[~inside] == 0).mean() > 0.95
    # the head's long axis lies along the crop's x axis, spanning ~70 % of it
    cy, cx = np.nonzero(lab)
    assert np.ptp(cx) > np.ptp(cy) and abs(np.ptp(cx) + 1 - 0.7 * size) <= 3
    # one-hot crop labels carried back land on the same parts of the head
    onehot = np.stack([(lab == k).astype(np.float32) for k in range(len(PART_CLASSES) + 1)])
    back = to_patch(onehot, matrix, patch)
    assert back.shape == (len(PART_CLASSES) + 1, *patch.mask.shape)
    agree = back.argmax(0)[patch.mask] == patch.labels[patch.mask]
    assert agree.mean() > 0.9
    assert np.allclose(back[0][0, 0], 1.0)  # outside the crop: background
    assert head_patch(np.zeros((8, 8), bool)) is None


def test_crop_matrix_turns_about_the_crop_centre() -> None:
    _, labels = _one_sperm()
    mask = head_patch(_head_labels(labels) > 0).mask
    plain, turned = crop_matrix(mask, 64, 0.7), crop_matrix(mask, 64, 0.7, 90.0)
    centre = np.array([31.5, 31.5, 1.0])
    inv = np.linalg.inv(np.vstack([plain, [0, 0, 1]]))
    source = inv @ centre  # the patch point at the crop's centre stays there when turned
    assert np.allclose(turned @ source, centre[:2], atol=1e-6)
    assert not np.allclose(plain, turned)


def test_jitter_grows_shrinks_and_never_empties() -> None:
    m = np.zeros((20, 20), bool)
    m[5:15, 5:15] = True
    assert jitter_mask(m, 0) is m
    assert jitter_mask(m, 2).sum() > m.sum() > jitter_mask(m, -2).sum() > 0
    dot = np.zeros((20, 20), bool)
    dot[10, 10] = True
    assert np.array_equal(jitter_mask(dot, -2), dot)


@pytest.fixture(scope="module")
def part_data(tmp_path_factory):
    return make_part_dataset(tmp_path_factory.mktemp("head_parts"), num_images=8, size=128)


def _cfg(part_data, prefix="headparts"):
    from sperm_d2.data.register import register_sperm_datasets

    cfg = setup_cfg(str(HEAD_INSTANT), split_opts(part_data, prefix))
    register_sperm_datasets(cfg)
    return cfg


def test_head_loader_gives_crops_with_the_mask_and_head_part_targets(part_data) -> None:
    cfg = _cfg(part_data)
    loader = HeadPartTrainLoader(cfg)
    assert len(loader.heads) == 12  # 6 training fields of 2 sperm
    batch = next(iter(loader))
    assert batch["images"].shape == (4, 4, 32, 32) and batch["targets"].shape == (4, 32, 32)
    head_ids = {PART_CLASSES.index(n) + 1 for n in HEAD_PARTS}
    assert set(batch["targets"].unique().tolist()) <= {0} | head_ids  # no midpiece, no tail
    assert set(batch["images"][:, 3].unique().tolist()) - {0.0, 255.0}  # a linear mask edge
    patch = record_heads(loader.records[0], PART_CLASSES)[0]
    assert set(np.unique(patch.labels)) <= {0} | head_ids


@pytest.mark.slow
def test_head_segmenter_trains_and_parses_detected_heads(part_data, tmp_path) -> None:
    from detectron2.modeling import build_model

    from sperm_d2.parts.parser import PartParser

    out = tmp_path / "head_run"
    cmd = [sys.executable, str(REPO / "tools/train_net.py"), "--config-file", str(HEAD_INSTANT)]
    cmd += [*split_opts(part_data, "headparts2"), "OUTPUT_DIR", str(out), "SEED", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((out / "best_model.json").read_text())
    assert best["metric"] == "parts/mIoU" and 0 <= best["value"] <= 100
    with open(out / "results.csv", newline="") as f:
        row = next(csv.DictReader(f))
    # scored on the head parts only: the crops hold no midpiece or tail
    assert {"parts/IoU-acrosome", "parts/IoU-nucleus", "parts/IoU-vacuole"} <= set(row)
    assert "parts/IoU-tail" not in row
    # a field segmenter (untrained) beside it gives midpiece and tail
    field = tmp_path / "field_run"
    field.mkdir()
    fcfg = setup_cfg(str(FIELD_INSTANT))
    (field / "config.yaml").write_text(fcfg.dump())
    torch.save({"model": build_model(fcfg).state_dict()}, field / "model_final.pth")
    cfg = _cfg(part_data, "headparts3")
    loader = HeadPartTrainLoader(cfg)
    image = loader.field(0)
    heads = np.stack([np.zeros(image.shape[:2], bool)] * 2)
    for i, patch in enumerate(record_heads(loader.records[0], PART_CLASSES)):
        h, w = patch.mask.shape
        heads[i, patch.y0 : patch.y0 + h, patch.x0 : patch.x0 + w] = patch.mask
    for runs in ([out], [field, out], [out, field]):
        parser = PartParser.from_run(runs)
        labels, parts = parser.parse_image(image, heads)
        assert labels.shape == image.shape[:2] and len(parts) == 2
        parsed = np.zeros(image.shape[:2], bool)
        for head, own in zip(heads, parts):
            pieces = [own.get(n, np.zeros_like(head)) for n in HEAD_PARTS]
            # the head segmenter splits the detector's outline, no more, no less (or, calling
            # it mostly background, gives it no head parts)
            if np.any(pieces):
                assert np.array_equal(np.any(pieces, axis=0), head)
                assert sum(p.sum() for p in pieces) == head.sum()
                parsed |= head
            assert ("tail" in own) == (field in runs)
        head_ids = [PART_CLASSES.index(n) + 1 for n in HEAD_PARTS]
        assert np.array_equal(np.isin(labels, head_ids), parsed)
    assert parser.parse(image, heads[:0]) == []
    with pytest.raises(InputError, match="a second head part segmenter"):
        PartParser.from_run([out, out])
    # infer.py refuses the same pair in one line, before any output is made
    img = tmp_path / "x.png"
    cv2.imwrite(str(img), image)
    config = REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml"
    cmd = [sys.executable, str(REPO / "tools/infer.py"), "--config-file", str(config)]
    cmd += ["--parts", str(out), str(out), "--input", str(img), "--output", str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("infer.py: error")]
    assert proc.returncode == 2 and len(errors) == 1 and "a second head part" in errors[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o").exists()


def test_hard_negatives_are_detections_off_the_annotated_heads(part_data, tmp_path, monkeypatch):
    """mine_negatives keeps a detector's heads (a stand-in detector here) that lie off every
    annotated head, with background-only labels, and caches them per detector checkpoint."""
    from sperm_d2.parts import negatives
    from sperm_d2.parts.negatives import mine_negatives

    cfg = _cfg(part_data, "headparts4")
    loader = HeadPartTrainLoader(cfg)
    records = loader.records[:2]
    weights = tmp_path / "model_best.pth"
    weights.write_bytes(b"stand-in")
    calls = []

    def detect(image):
        calls.append(1)
        h, w = image.shape[:2]
        on_head = np.zeros((h, w), bool)
        p = record_heads(records[(len(calls) - 1) % 2], PART_CLASSES)[0]
        ph, pw = p.mask.shape
        on_head[p.y0 : p.y0 + ph, p.x0 : p.x0 + pw] = p.mask  # a true head
        off = np.zeros((h, w), bool)
        off[2:10, 2:12] = True  # a blob in the corner: no sperm
        return np.stack([on_head, off])

    monkeypatch.setattr(negatives, "_detector", lambda run: (str(weights), detect))
    cache = tmp_path / "negatives.npz"
    found = mine_negatives("det", records, PART_CLASSES, cache, loader.field)
    assert [(k, p.x0, p.y0) for k, p in found] == [(0, 0, 0), (1, 0, 0)]
    assert all(p.mask.sum() == 80 and not p.labels.any() for _, p in found)
    assert len(calls) == 2 and cache.is_file()
    again = mine_negatives("det", records, PART_CLASSES, cache, loader.field)
    assert len(calls) == 2  # from the cache
    assert [np.array_equal(a.mask, b.mask) for (_, a), (_, b) in zip(found, again)] == [True] * 2
    weights.write_bytes(b"another detector")  # a new checkpoint: mined again
    mine_negatives("det", records, PART_CLASSES, cache, loader.field)
    assert len(calls) == 4


def test_negatives_run_must_be_a_detector_run(tmp_path) -> None:
    from sperm_d2.parts.negatives import mine_negatives

    with pytest.raises(InputError, match="not a run folder"):
        mine_negatives(tmp_path, [], PART_CLASSES)
    (tmp_path / "config.yaml").write_text("{}")
    with pytest.raises(InputError, match="no checkpoint"):
        mine_negatives(tmp_path, [], PART_CLASSES)
