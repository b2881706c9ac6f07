"""The part segmenter: target rasterisation, IoU, the model, the loaders, the parts split (with
group_id kept) and a few CPU iterations through train_net.py on tiny generated fields."""

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml

from sperm_d2.parts.evaluator import confusion, iou_from_confusion, part_metrics
from sperm_d2.parts.loader import cut_window
from sperm_d2.parts.targets import PART_CLASSES, label_map, polygons_mask, sperm_parts

from .conftest import REPO, split_opts
from .part_scenes import make_part_dataset

PARTS_INSTANT = REPO / "configs/quick_schedules/sperm_parts_instant_test.yaml"


def _square(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_polygon_mask_takes_pixels_whose_centre_is_inside() -> None:
    mask = polygons_mask(_square(2, 3, 6, 5), 8, 8)
    assert mask.sum() == 4 * 2
    assert mask[3:5, 2:6].all()


def test_label_map_paints_vacuole_over_nucleus_over_acrosome_over_tail() -> None:
    classes = list(PART_CLASSES)
    anns = [  # listed in the "wrong" order on purpose
        {"category_id": 2, "segmentation": _square(4, 4, 6, 6)},  # vacuole
        {"category_id": 1, "segmentation": _square(2, 2, 8, 8)},  # nucleus
        {"category_id": 0, "segmentation": _square(0, 0, 10, 10)},  # acrosome
        {"category_id": 4, "segmentation": _square(0, 0, 12, 1)},  # tail under the acrosome
        {"category_id": 3, "segmentation": [[0, 0]], "iscrowd": 1},  # ignored
    ]
    lab = label_map(anns, classes, 12, 12)
    assert lab[5, 5] == 3 and lab[3, 3] == 2 and lab[0, 9] == 1 and lab[0, 11] == 5
    assert lab[11, 11] == 0


def test_sperm_parts_groups_by_group_id() -> None:
    anns = [
        {"category_id": 0, "segmentation": _square(0, 0, 4, 4), "group_id": 7},
        {"category_id": 1, "segmentation": _square(4, 0, 8, 4), "group_id": 7},
        {"category_id": 1, "segmentation": _square(0, 6, 4, 9), "group_id": 8},
        {"category_id": 1, "segmentation": _square(5, 6, 8, 9)},  # no group: left out
    ]
    parts = sperm_parts(anns, list(PART_CLASSES), 10, 10)
    assert sorted(parts) == [7, 8]
    assert sorted(parts[7]) == ["acrosome", "nucleus"] and parts[7]["nucleus"].sum() == 16
    assert list(parts[8]) == ["nucleus"]


def test_iou_per_class_and_head() -> None:
    gt = np.array([[0, 1, 1, 2], [0, 0, 5, 5]])
    pred = np.array([[0, 1, 2, 2], [0, 1, 5, 0]])
    conf = confusion(gt, pred, 6)
    assert conf.sum() == gt.size and conf[1, 2] == 1
    iou = iou_from_confusion(conf)
    assert iou[1] == pytest.approx(1 / 3) and iou[2] == pytest.approx(1 / 2)
    assert np.isnan(iou[3]) and iou[5] == pytest.approx(1 / 2)
    m = part_metrics(conf, PART_CLASSES)
    assert m["mIoU"] == pytest.approx(100 * (1 / 3 + 1 / 2 + 1 / 2) / 3)  # absent classes out
    assert m["IoU-head"] == pytest.approx(100 * 3 / 4)  # head = classes 1-3: 3 tp, 4 union
    assert m["pixel_accuracy"] == pytest.approx(100 * 5 / 8)


def test_model_any_size_loss_and_probabilities() -> None:
    from sperm_d2.config import setup_cfg
    from sperm_d2.engine.part_trainer import PartTrainer
    from sperm_d2.engine.trainers import trainer_class

    cfg = setup_cfg(str(PARTS_INSTANT), ["MODEL.DEVICE", "cpu"])
    assert trainer_class(cfg) is PartTrainer
    model = PartTrainer.build_model(cfg)
    images = torch.rand(2, 3, 37, 50) * 255
    out = model({"images": images, "targets": torch.randint(0, 6, (2, 37, 50))})
    assert torch.isfinite(out["loss_parts"])
    model.eval()
    with torch.no_grad():
        probs = model({"images": images})["probs"]
    assert probs.shape == (2, 6, 37, 50) and torch.allclose(probs.sum(1), torch.ones(2, 37, 50))


def test_model_labels_are_the_arg_max_of_its_probabilities() -> None:
    """``labels`` (the field's label map at inference) skips the softmax: the same classes as
    the probabilities' arg-max, with logit biases and flip views too."""
    from sperm_d2.config import setup_cfg
    from sperm_d2.engine.part_trainer import PartTrainer

    bias = ["SPERM.PARTS.LOGIT_BIAS", "[0.0, 0.3, -0.2, 0.5, 0.0, -0.4]"]
    opts = ["MODEL.DEVICE", "cpu", "SPERM.PARTS.TTA", "flips", "SPERM.PARTS.SCALE", "0.5", *bias]
    torch.manual_seed(0)
    model = PartTrainer.build_model(setup_cfg(str(PARTS_INSTANT), opts)).eval()
    images = torch.rand(2, 3, 41, 30) * 255
    with torch.no_grad():
        probs = model({"images": images})["probs"]
        labels = model.labels(images)
    assert labels.shape == (2, 41, 30) and len(labels.unique()) > 1
    assert torch.equal(labels, probs.argmax(1))


def test_model_scale_works_below_native_and_answers_at_native_size() -> None:
    """SPERM.PARTS.SCALE 0.5: the U-Net's first level sees the input at half size (a quarter
    of the pixels) and the logits come back at the input's size, odd sizes included; the
    loss is taken there and reaches the first level's weights."""
    from sperm_d2.config import setup_cfg
    from sperm_d2.engine.part_trainer import PartTrainer

    model = PartTrainer.build_model(
        setup_cfg(str(PARTS_INSTANT), ["MODEL.DEVICE", "cpu", "SPERM.PARTS.SCALE", "0.5"])
    )
    seen = []
    model.down[0].register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape[-2:])))
    images = torch.rand(2, 3, 37, 51) * 255
    out = model({"images": images, "targets": torch.randint(0, 6, (2, 37, 51))})
    assert model.stride == 4 and seen[-1] == (20, 28)  # round(37 / 2), round(51 / 2), padded
    out["loss_parts"].backward()
    assert model.down[0][0].weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        assert model.logits(images).shape == (2, 6, 37, 51)
        probs = model({"images": images})["probs"]
    assert seen[-1] == (20, 28)
    assert probs.shape == (2, 6, 37, 51) and torch.allclose(probs.sum(1), torch.ones(2, 37, 51))
    with pytest.raises(Exception, match="SPERM.PARTS.SCALE"):
        setup_cfg(str(PARTS_INSTANT), ["SPERM.PARTS.SCALE", "0"])
    with pytest.raises(Exception, match="SPERM.PARTS.SCALE"):
        setup_cfg(str(PARTS_INSTANT), ["SPERM.PARTS.SCALE", "1.5"])


def test_soft_dice_loss_by_hand() -> None:
    from sperm_d2.parts.model import soft_dice_loss

    targets = torch.tensor([[[0, 1, 1, 2]]])  # (1, 1, 4): classes 0-2 of K + 1 = 3
    sure = torch.nn.functional.one_hot(targets, 3).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(sure, targets).item() == pytest.approx(0.0, abs=1e-6)
    # every pixel called background: class 1 Dice (0 + 1) / (0 + 2 + 1), class 2 (0 + 1) / 2
    bg = torch.zeros(1, 3, 1, 4)
    bg[:, 0] = 50
    assert soft_dice_loss(bg, targets).item() == pytest.approx(1 - (1 / 3 + 1 / 2) / 2, abs=1e-6)
    # uniform probabilities: class 1 (2 * 2/3 + 1) / (4/3 + 2 + 1), class 2 (2/3 + 1) / (4/3 + 2)
    flat = torch.zeros(1, 3, 1, 4)
    d1, d2 = (4 / 3 + 1) / (4 / 3 + 3), (2 / 3 + 1) / (4 / 3 + 2)
    assert soft_dice_loss(flat, targets).item() == pytest.approx(1 - (d1 + d2) / 2, abs=1e-6)
    # a class absent from the batch and not predicted costs nothing; predicted, it costs
    absent = torch.tensor([[[0, 1, 1, 1]]])
    sure_absent = torch.nn.functional.one_hot(absent, 3).permute(0, 3, 1, 2).float() * 50
    assert soft_dice_loss(sure_absent, absent).item() == pytest.approx(0.0, abs=1e-6)
    assert soft_dice_loss(sure, absent).item() > 0.2


def test_model_dice_term_is_weighted_and_trains() -> None:
    from sperm_d2.config import setup_cfg
    from sperm_d2.engine.part_trainer import PartTrainer
    from sperm_d2.parts.model import soft_dice_loss

    opts = ["MODEL.DEVICE", "cpu", "SPERM.PARTS.DICE_WEIGHT", "0.5"]
    model = PartTrainer.build_model(setup_cfg(str(PARTS_INSTANT), opts))
    images = torch.rand(2, 3, 32, 40) * 255
    targets = torch.randint(0, 6, (2, 32, 40))
    out = model({"images": images, "targets": targets})
    assert sorted(out) == ["loss_parts", "loss_parts_dice"]
    with torch.no_grad():
        expected = 0.5 * soft_dice_loss(model.logits(images), targets)
    assert out["loss_parts_dice"].item() == pytest.approx(expected.item(), rel=1e-5)
    out["loss_parts_dice"].backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    off_opts = ["MODEL.DEVICE", "cpu", "SPERM.PARTS.DICE_WEIGHT", "0"]
    off = PartTrainer.build_model(setup_cfg(str(PARTS_INSTANT), off_opts))
    assert sorted(off({"images": images, "targets": targets})) == ["loss_parts"]


def test_flip_tta_averages_the_flipped_back_views() -> None:
    """SPERM.PARTS.TTA: "hflip" is the mean of the logits and the left-right flipped logits of
    the flipped input; with all four flips the output of a flipped input is the flipped output
    (a field has no left or right), which one view alone is not."""
    from sperm_d2.config import setup_cfg
    from sperm_d2.engine.part_trainer import PartTrainer

    torch.manual_seed(0)
    images = torch.rand(1, 3, 24, 40) * 255

    def build(tta: str):
        torch.manual_seed(1)  # the same weights for every mode
        opts = ["MODEL.DEVICE", "cpu", "SPERM.PARTS.TTA", tta]
        return PartTrainer.build_model(setup_cfg(str(PARTS_INSTANT), opts)).eval()

    plain, hflip, flips = build("none"), build("hflip"), build("flips")
    with torch.no_grad():
        a, b = plain.logits(images), plain.logits(images.flip(-1)).flip(-1)
        assert torch.allclose(hflip.test_logits(images), (a + b) / 2, atol=1e-5)
        assert torch.allclose(plain.test_logits(images), a)
        assert not torch.allclose(a, b, atol=1e-3)  # so that the checks below can fail
        for dims in ((-1,), (-2,), (-2, -1)):
            out = flips({"images": images.flip(dims)})["probs"]
            assert torch.allclose(out, flips({"images": images})["probs"].flip(dims), atol=1e-5)
        probs = hflip({"images": images})["probs"]
    assert torch.allclose(probs, torch.softmax((a + b) / 2, 1), atol=1e-5)


def test_window_focus_and_padding() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((40, 300, 3), np.uint8)
    labels = np.zeros((40, 300), np.uint8)
    labels[10:14, 280:284] = 2
    img, lab = cut_window(image, labels, 64, True, rng)
    assert img.shape == (64, 64, 3) and lab.shape == (64, 64)
    assert (lab == 2).sum() == 16  # centred on the only part, padded below the 40-px field


@pytest.fixture(scope="module")
def part_data(tmp_path_factory):
    return make_part_dataset(tmp_path_factory.mktemp("parts"), num_images=8, size=128)


def test_parts_split_keeps_group_id(part_data) -> None:
    coco = json.loads((part_data / "annotations/train.json").read_text())
    assert [c["name"] for c in coco["categories"]] == list(PART_CLASSES)
    by_image = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], set()).add(a["group_id"])
    assert all(g == {1, 2} for g in by_image.values())


def test_follow_split_reproduces_a_reference(part_data, tmp_path) -> None:
    from sperm_d2.data.follow_split import follow_split

    ann = tmp_path / "annotations"
    ann.mkdir()
    merged = {}
    for split in ("train", "val"):
        coco = json.loads((part_data / f"annotations/{split}.json").read_text())
        merged.setdefault("images", []).extend(coco["images"])
        merged.setdefault("annotations", []).extend(coco["annotations"])
        merged["categories"] = coco["categories"]
    (ann / "all.json").write_text(json.dumps(merged))
    sizes = follow_split(tmp_path, part_data, source="all")
    assert sizes == {"train": 6, "val": 2}
    for split in ("train", "val"):
        ours = json.loads((ann / f"{split}.json").read_text())
        ref = json.loads((part_data / f"annotations/{split}.json").read_text())
        assert [i["labelme"] for i in ours["images"]] == [i["labelme"] for i in ref["images"]]
        assert len(ours["annotations"]) == len(ref["annotations"])


@pytest.mark.slow
def test_part_segmenter_trains_through_train_net(part_data, tmp_path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, str(REPO / "tools/train_net.py"), "--config-file", str(PARTS_INSTANT)]
    cmd += [*split_opts(part_data, "tinyparts"), "OUTPUT_DIR", str(out), "SEED", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.yaml", "model_final.pth", "model_best.pth", "results.csv"):
        assert (out / name).is_file(), name
    best = json.loads((out / "best_model.json").read_text())
    assert best["metric"] == "parts/mIoU" and 0 <= best["value"] <= 100
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["iteration"] for r in rows] == ["2", "6"]
    assert {"parts/mIoU", "parts/IoU-head", "parts/IoU-tail"} <= set(rows[0])
    # --eval-only on the best checkpoint reports the same family
    cmd = [sys.executable, str(REPO / "tools/train_net.py"), "--eval-only", "--config-file"]
    cmd += [str(out / "config.yaml"), "MODEL.WEIGHTS", str(out / "model_best.pth")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "mIoU" in json.loads((out / "eval_results.json").read_text())["parts"]
    # the biases chosen on val go into the run's config (the rest of it unchanged)
    before = (out / "config.yaml").read_text()
    cmd = [sys.executable, str(REPO / "tools/calibrate_parts.py"), "--run", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "calibration.json").read_text())
    assert result == json.loads(proc.stdout)
    assert result["dataset"] == "tinyparts_val" and len(result["logit_bias"]) == 6
    assert result["logit_bias"][0] == 0 and result["pixels"] > 0
    assert result["mIoU_after"] >= result["mIoU_before"]
    from sperm_d2.config import setup_cfg

    cfg = setup_cfg(str(out / "config.yaml"))
    assert list(cfg.SPERM.PARTS.LOGIT_BIAS) == result["logit_bias"]
    after = yaml.safe_load((out / "config.yaml").read_text())
    after["SPERM"]["PARTS"]["LOGIT_BIAS"] = []
    assert after == yaml.safe_load(before)
    # an unknown split: one line, exit 2
    proc = subprocess.run(
        cmd + ["--dataset", "nope_val"], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert proc.returncode == 2 and "--dataset nope_val: no such split" in proc.stderr
    assert "tinyparts_val" in proc.stderr  # the splits the run has, named
