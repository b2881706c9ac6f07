"""Parts through infer.py's outputs: the WHO criteria columns of instances.csv and images.jsonl,
the report's criteria table, and the labelme round trip of parts (prepare_data.py merges them
back per sperm by group_id). Synthetic fields, a stand-in predictor: no weights."""

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import CfgNode

from sperm_d2.inference.job import InferOptions, run_inference
from sperm_d2.inference.part_criteria import PartCriteria
from sperm_d2.inference.records import PART_COLUMNS
from sperm_d2.inference.types import ImagePrediction
from sperm_d2.parts.targets import HEAD_PARTS, PART_CLASSES, label_map, sperm_parts

from .conftest import REPO
from .part_scenes import write_part_scene

SIZE = 160


def _truth(json_path: Path):
    """(image, group_id -> part masks) of a synthetic field, from its labelme file."""
    doc = json.loads(json_path.read_text())
    anns = [
        {
            "category_id": PART_CLASSES.index(s["label"].lower()),
            "segmentation": [np.ravel(s["points"]).tolist()],
            "group_id": s["group_id"],
        }
        for s in doc["shapes"]
    ]
    image = cv2.imread(str(json_path.with_suffix(".png")))
    return image, sperm_parts(anns, PART_CLASSES, SIZE, SIZE)


def _prediction(source: str, gt: dict) -> ImagePrediction:
    """The annotated sperm as a part segmenter's perfect prediction."""
    heads, labels = [], []
    for parts in gt.values():
        heads.append(np.any([parts[p] for p in HEAD_PARTS if p in parts], axis=0))
        lab = np.zeros((SIZE, SIZE), np.uint8)
        for k, name in enumerate(PART_CLASSES):
            if name in parts:
                lab[parts[name]] = k + 1
        labels.append(lab)
    boxes = []
    for h in heads:
        ys, xs = np.nonzero(h)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    n = len(heads)
    return ImagePrediction(
        source=source,
        image_size=(SIZE, SIZE),
        boxes=np.asarray(boxes, np.float32),
        masks=np.stack(heads),
        scores=np.linspace(0.99, 0.9, n).astype(np.float32),
        # graded good/bad: a one-class run's 100 % "head" trips the report's % plot (noted)
        classes=np.arange(n, dtype=np.int64) % 2,
        class_names=("good", "bad"),
        part_labels=np.stack(labels),
        part_names=PART_CLASSES,
    )


class StandInPredictor:
    """What run_inference asks of a SpermPredictor, answering with the annotated parts."""

    def __init__(self, truths: dict):
        self.truths = truths
        self.class_names = ("good", "bad")
        self.weights = "stand-in.pth"
        self.grader = None
        self.parts = SimpleNamespace(source="stand-in-parts")
        cfg = CfgNode()
        cfg.SPERM = CfgNode({"CLASS_COLORS": [[40, 200, 80], [230, 50, 50]]})
        cfg.MODEL = CfgNode({"ROI_HEADS": CfgNode({"SCORE_THRESH_TEST": 0.5})})
        cfg.INPUT = CfgNode({"MIN_SIZE_TEST": SIZE, "MAX_SIZE_TEST": SIZE})
        self.cfg = cfg
        self.class_colors = cfg.SPERM.CLASS_COLORS

    def predict_stream(self, items):
        for path, frame, image in items:
            yield image, _prediction(path, self.truths[Path(path).name])


@pytest.fixture(scope="module")
def infer_out(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts_infer")
    truths = {}
    for i in range(3):
        path = write_part_scene(root / "in" / "S", f"f{i}", seed=10 + i, size=SIZE)
        truths[path.with_suffix(".png").name] = _truth(path)[1]
    for j in (root / "in" / "S").glob("*.json"):
        j.unlink()  # only the images are inputs
    opts = InferOptions(output_dir=root / "out", labelme=True)
    summary = run_inference(StandInPredictor(truths), [str(root / "in")], opts)
    assert summary["processed"] == 3 and summary["parts"] == "stand-in-parts"
    return root / "out", truths


def test_instances_and_images_carry_the_criteria(infer_out) -> None:
    out, truths = infer_out
    with open(out / "instances.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert set(PART_COLUMNS) <= set(rows[0])
    assert len(rows) == 6 and all(r["who_grade"] for r in rows)
    assert all(40 < float(r["who_acrosome_share"]) < 60 for r in rows)
    records = [json.loads(line) for line in (out / "images.jsonl").read_text().splitlines()]
    who = records[0]["who"]
    assert sum(who[g] for g in ("normal", "abnormal", "not assessable")) == 2
    head = records[0]["instances"][0]
    assert set(PART_COLUMNS) <= set(head)  # every criterion, as in instances.csv
    row = next(r for r in rows if r["file"] == records[0]["file"])
    assert float(head["who_vacuole_share"]) == float(row["who_vacuole_share"])
    assert head["who_grade"] == row["who_grade"]


def test_report_has_the_criteria_table(infer_out) -> None:
    out, _ = infer_out
    md = (out / "REPORT.md").read_text()
    assert "WHO strict criteria (parts)" in md and "TZI" in md and "% normal" in md
    assert "WHO strict criteria (parts)" in (out / "report.html").read_text()


def test_labelme_parts_round_trip_through_prepare_data(infer_out, tmp_path) -> None:
    from detectron2.data import DatasetCatalog

    from sperm_d2.data.labels import LabelMap
    from sperm_d2.data.prepare import prepare_dataset
    from sperm_d2.data.register import register_split

    out, truths = infer_out
    docs = sorted((out / "labelme").rglob("*.json"))
    assert len(docs) == 3
    shapes = json.loads(docs[0].read_text())["shapes"]
    assert {s["label"] for s in shapes} <= set(PART_CLASSES)
    assert {s["group_id"] for s in shapes} == {1, 2}
    lm = LabelMap.load(REPO / "configs/labels/sperm_parsing_parts.yaml")
    prepare_dataset(out / "labelme", tmp_path, lm, ratios=(1,))
    name = register_split("parts_rt", tmp_path / "annotations/train.json", tmp_path, PART_CLASSES)
    try:
        records = DatasetCatalog.get(name)
    finally:
        DatasetCatalog.remove(name)
    assert len(records) == 3
    for rec in records:
        back = sperm_parts(rec["annotations"], PART_CLASSES, SIZE, SIZE)
        want = truths[Path(rec["file_name"]).name]
        assert len(back) == len(want) == 2
        for got, exp in zip(back.values(), want.values()):  # group_ids 1, 2 in head order
            assert set(got) == set(exp)
            for part in exp:
                inter = (got[part] & exp[part]).sum()
                union = (got[part] | exp[part]).sum()
                assert inter / union > 0.8, part  # polygons of polygons: within a pixel
    # the heads label map merges the parts of each sperm back into one head
    heads = LabelMap.load(REPO / "configs/labels/sperm_parsing_heads.yaml")
    prepare_dataset(out / "labelme", tmp_path / "heads", heads, ratios=(1,))
    coco = json.loads((tmp_path / "heads/annotations/train.json").read_text())
    assert len(coco["annotations"]) == 6


def test_labelme_round_trip_keeps_a_head_without_head_parts(tmp_path) -> None:
    """A head the part model found no head parts in (a round cell) but gave a tail: exported as
    its outline labelled ``head`` with the sperm's group_id beside its tail (before: the detector
    class name, no group_id, and the tail orphaned), which the parts label map ignores and
    counts; without parts the export is the detector's classes as before."""
    from sperm_d2.data.dataset_report import format_report
    from sperm_d2.data.labels import LabelMap
    from sperm_d2.data.prepare import exit_code, prepare_dataset
    from sperm_d2.inference.labelme_export import UNPARSED_HEAD, export_labelme

    json_path = write_part_scene(tmp_path / "src", "f", seed=3, size=SIZE)
    _, gt = _truth(json_path)
    pred = _prediction("f.png", gt)
    labels = pred.part_labels.copy()
    head_ids = [PART_CLASSES.index(n) + 1 for n in HEAD_PARTS]
    labels[1][np.isin(labels[1], head_ids)] = 0  # sperm 2: no head parts, its tail kept
    pred = dataclasses.replace(pred, part_labels=labels)
    export_labelme(pred, tmp_path / "lm" / "f.png", image_src=json_path.with_suffix(".png"))
    shapes = json.loads((tmp_path / "lm" / "f.json").read_text())["shapes"]
    second = [(s["label"], s["group_id"]) for s in shapes if s["group_id"] == 2]
    assert second[0] == (UNPARSED_HEAD, 2) and ("tail", 2) in second
    assert {lab for lab, _ in second} <= {UNPARSED_HEAD, "midpiece", "tail"}
    assert "no head parts" in shapes[[s["group_id"] for s in shapes].index(2)]["description"]
    lm = LabelMap.load(REPO / "configs/labels/sperm_parsing_parts.yaml")
    report = prepare_dataset(tmp_path / "lm", tmp_path / "parts", lm, ratios=(1,))
    assert exit_code(report) == 0 and report["files"]["converted"] == 1, report["problems"]
    assert report["ignored_labels"] == {UNPARSED_HEAD: 1}
    assert "ignored labels: head: 1" in format_report(report)
    coco = json.loads((tmp_path / "parts/annotations/train.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    got = {(names[a["category_id"]], a["group_id"]) for a in coco["annotations"]}
    assert ("tail", 2) in got and not {(n, 2) for n in HEAD_PARTS} & got
    assert {(n, 1) for n in ("acrosome", "nucleus", "tail")} <= got
    # the heads label map keeps the unparsed head as a head of its own
    heads = LabelMap.load(REPO / "configs/labels/sperm_parsing_heads.yaml")
    report = prepare_dataset(tmp_path / "lm", tmp_path / "heads", heads, ratios=(1,))
    assert exit_code(report) == 0
    assert (
        len(json.loads((tmp_path / "heads/annotations/train.json").read_text())["annotations"]) == 2
    )
    # without parts: the detector's class names, no group_id, as before
    plain = dataclasses.replace(pred, part_labels=None, part_names=())
    export_labelme(plain, tmp_path / "plain" / "f.png", image_src=json_path.with_suffix(".png"))
    shapes = json.loads((tmp_path / "plain" / "f.json").read_text())["shapes"]
    assert [(s["label"], s["group_id"]) for s in shapes] == [("good", None), ("bad", None)]
    assert all(s["description"].startswith("predicted by sperm_d2, score ") for s in shapes)


def test_a_part_run_parses_the_heads_of_a_prediction(tmp_path) -> None:
    from detectron2.modeling import build_model

    from sperm_d2.config import setup_cfg
    from sperm_d2.inference.parts import head_parts, with_parts
    from sperm_d2.parts.parser import PartParser

    cfg = setup_cfg(str(REPO / "configs/quick_schedules/sperm_parts_instant_test.yaml"))
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(cfg.dump())
    torch.save({"model": build_model(cfg).state_dict()}, run / "model_final.pth")
    parser = PartParser.from_run(run)
    json_path = write_part_scene(tmp_path / "f", "f", seed=1, size=SIZE)
    image, gt = _truth(json_path)
    pred = _prediction("f.png", gt)
    parsed = with_parts(parser, image, pred)
    assert parsed.part_labels.shape == (2, SIZE, SIZE) and parsed.part_names == PART_CLASSES
    assert set(head_parts(parsed, 0)) == set(PART_CLASSES)
    with pytest.raises(ValueError, match="not a part segmenter run"):
        det = setup_cfg(str(REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml"))
        (run / "config.yaml").write_text(det.dump())
        PartParser.from_run(run)
    # criteria of an empty prediction: the columns exist and stay blank
    assert PartCriteria().as_row()["who_grade"] == "not assessable"
    assert label_map([], PART_CLASSES, 4, 4).sum() == 0


def test_infer_refuses_a_parts_folder_that_is_not_a_part_run(tmp_path) -> None:
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    config = REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml"
    cmd = [sys.executable, str(REPO / "tools/infer.py"), "--config-file", str(config)]
    cmd += ["--parts", str(tmp_path), "--input", str(image), "--output", str(tmp_path / "o")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2 and "not a run folder" in proc.stderr
    assert not (tmp_path / "o").exists()
