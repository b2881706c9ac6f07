"""The WHO criteria in the run report when a part segmenter ran: the criteria's values read back
from instances.csv, their histograms in report.html (absent without parts), and the heads'
parts outlined in the gallery thumbnails (unchanged without parts)."""

import builtins
import csv
import dataclasses
import io
import os
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from sperm_d2.inference import job, run_report
from sperm_d2.inference.criteria_plots import CRITERIA, CriteriaReader, criteria_figure
from sperm_d2.inference.head_gallery import PART_COLORS_BGR, head_thumbnail
from sperm_d2.inference.job import InferOptions, run_inference
from sperm_d2.inference.part_criteria import TAIL_MIN_LENGTH_RATIO
from sperm_d2.inference.report_plots import MAX_PLOTTED_SAMPLES
from sperm_d2.inference.report_readers import read_instances
from sperm_d2.inference.types import ImagePrediction
from sperm_d2.parts.targets import PART_CLASSES

from .part_scenes import sperm_polygons
from .test_run_report import _chromium, _decoded_dom

CLASSES = ("good", "bad")
#: (cx, cy, angle) of each sperm in a 128-px field; the third one's tail leaves the image
SPERM = ((70, 30, 0.0), (64, 80, np.pi), (24, 112, 0.0))


def _field(source: str, size: int = 128) -> tuple[np.ndarray, ImagePrediction]:
    """A field with the sperm of :data:`SPERM` and the prediction of their heads with parts."""
    image = np.full((size, size, 3), 200, np.uint8)
    n = len(SPERM)
    masks = np.zeros((n, size, size), bool)
    labels = np.zeros((n, size, size), np.uint8)
    boxes = []
    for i, (cx, cy, angle) in enumerate(SPERM):
        for k, name in enumerate(PART_CLASSES):  # the vacuole last: over the head's other parts
            m = np.zeros((size, size), np.uint8)
            pts = np.round(sperm_polygons(cx, cy, angle)[name]).astype(np.int32)
            cv2.fillPoly(m, [pts], 1)
            labels[i][m > 0] = k + 1
        masks[i] = np.isin(labels[i], [1, 2, 3])  # acrosome, nucleus, vacuole
        image[labels[i] > 0] = (120, 70, 90)
        ys, xs = np.nonzero(masks[i])
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    pred = ImagePrediction(
        source=source,
        image_size=(size, size),
        boxes=np.asarray(boxes, np.float32),
        masks=masks,
        scores=np.linspace(0.99, 0.7, n).astype(np.float32),
        classes=np.arange(n, dtype=np.int64) % 2,
        class_names=CLASSES,
        part_labels=labels,
        part_names=PART_CLASSES,
    )
    return image, pred


def read_criteria(csv_path: Path, sample_of: dict[str, str]) -> dict:
    """The criteria's values of ``csv_path`` in a pass of their own."""
    reader = CriteriaReader(sample_of)
    read_instances(csv_path, [reader])
    return reader.result()


def _near(image: np.ndarray, bgr: tuple[int, int, int], tol: int = 12) -> int:
    return int((np.abs(image.astype(int) - bgr).max(axis=2) <= tol).sum())


def test_thumbnails_outline_the_parts_in_their_colours_and_nothing_without_parts():
    image, pred = _field("f.png")
    # the crop's own size (the head box and a quarter of its longer side around it): no
    # rescaling blends the 1-px outlines with their neighbours
    x0, y0, x1, y1 = pred.boxes[0]
    m = 0.25 * max(x1 - x0, y1 - y0)
    side = int(max(np.ceil(x1 + m) - np.floor(x0 - m), np.ceil(y1 + m) - np.floor(y0 - m)))
    plain = dataclasses.replace(pred, part_labels=None, part_names=())
    no_parts = head_thumbnail(image, plain, 0, (0, 0, 0), side)
    assert all(_near(no_parts, c) == 0 for c in PART_COLORS_BGR.values())
    # parts that are all "none" draw nothing: every other pixel is as without parts
    empty = dataclasses.replace(pred, part_labels=np.zeros_like(pred.part_labels))
    assert np.array_equal(head_thumbnail(image, empty, 0, (0, 0, 0), side), no_parts)
    thumb = head_thumbnail(image, pred, 0, (0, 0, 0), side)
    assert thumb.shape == no_parts.shape
    # inside the crop around the head box: the head's parts and the start of the midpiece
    for name in ("acrosome", "nucleus", "vacuole", "midpiece"):
        assert _near(thumb, PART_COLORS_BGR[name]) > 0, name


def test_read_criteria_skips_blanks_and_cut_tails_and_keeps_border_heads(tmp_path):
    columns = ["file", "at_border", "who_head_area_px", "who_head_length_px"]
    columns += ["who_acrosome_share", "who_vacuole_count", "who_vacuole_share"]
    columns += ["who_midpiece_length_px", "who_midpiece_angle_deg", "who_tail_length_px"]
    columns += ["who_not_assessed"]
    rows = [
        ["a.png", "False", "300", "20", "55", "1", "4", "20", "10", "200", ""],
        # cut by the border: measured and shown, as in the morphometrics
        ["a.png", "True", "200", "10", "30", "0", "0", "", "", "", "head_cut_by_border"],
        # a tail cut by the border: its length is a lower bound, left out
        ["a.png", "False", "300", "20", "45", "3", "25", "30", "50", "90", "tail_cut_by_border"],
        ["a.png", "False", "", "", "", "", "", "", "", "", ""],  # no parts
        ["a.png", "False", "0", "0", "", "0", "0", "", "", "", "missing:head"],  # empty head
        ["other.png", "False", "300", "20", "50", "0", "0", "20", "0", "200", ""],  # not mapped
        ["b.png", "False", "", "", "", "", "", "", "", "", ""],  # a sample without parts
    ]
    path = tmp_path / "instances.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([columns, *rows])
    values = read_criteria(path, {"a.png": "sample A", "b.png": "sample B"})
    assert list(values) == ["sample A"]
    got = {c.title: list(values["sample A"][c.title]) for c in CRITERIA}
    assert got == {
        "acrosome share of the head": [55.0, 30.0, 45.0],
        "vacuoles": [1.0, 0.0, 3.0],
        "vacuole share of the head": [4.0, 0.0, 25.0],
        "midpiece length": [1.0, 1.5],
        "midpiece angle to the head axis": [10.0, 50.0],
        "tail length": [10.0],
    }
    assert criteria_figure({}) is None
    assert criteria_figure({"sample B": {c.title: [] for c in CRITERIA}}) is None
    assert criteria_figure(values).startswith(b"\x89PNG")
    many = {f"s{k}": values["sample A"] for k in range(MAX_PLOTTED_SAMPLES + 1)}
    assert criteria_figure(many).startswith(b"\x89PNG")  # all together


class PartsPredictor:
    """A stand-in SpermPredictor with a part segmenter: every field is :func:`_field`."""

    def __init__(self):
        self.class_names = CLASSES
        self.weights = "stand-in.pth"
        self.grader = None
        self.parts = SimpleNamespace(source="stand-in-parts")
        self.class_colors = [[40, 200, 80], [230, 50, 50]]
        self.cfg = SimpleNamespace(
            MODEL=SimpleNamespace(ROI_HEADS=SimpleNamespace(SCORE_THRESH_TEST=0.5)),
            INPUT=SimpleNamespace(MIN_SIZE_TEST=128, MAX_SIZE_TEST=128),
        )

    def predict_stream(self, items):
        for path, _, image in items:
            yield image, _field(path)[1]


@pytest.fixture(scope="module")
def parts_report_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("parts_report")
    (root / "in" / "A").mkdir(parents=True)
    for k in range(2):
        cv2.imwrite(str(root / "in" / "A" / f"f{k}.png"), _field("x")[0])
    summary = run_inference(PartsPredictor(), [str(root / "in")], InferOptions(root / "out"))
    assert summary["processed"] == 2 and summary["totals"]["samples"]["in/A"]["who"]
    return root / "out"


def test_report_shows_the_criteria_distributions_and_the_part_legend_with_parts(
    parts_report_dir,
):
    page = (parts_report_dir / "report.html").read_text()
    assert "WHO strict criteria (parts)" in page and 'alt="WHO criteria distributions"' in page
    assert page.index("WHO strict criteria (parts)") < page.index("WHO criteria distributions")
    assert page.index("WHO criteria distributions") < page.index("Morphometrics")
    legend = re.search(r'<p class="legend">Part outlines: (.*?)</p>', page).group(1)
    assert all(name in legend for name in PART_CLASSES)
    assert "rgb(230,200,40)" in legend  # the acrosome's colour of the parts config
    # the third sperm's tail leaves the field: the tail lengths read are the two whole ones
    values = read_criteria(parts_report_dir / "instances.csv", {})
    assert values == {}  # only the report's samples are read
    with open(parts_report_dir / "instances.csv", newline="", encoding="utf-8") as f:
        files = {r["file"] for r in csv.DictReader(f)}
    values = read_criteria(parts_report_dir / "instances.csv", dict.fromkeys(files, "A"))
    tails = values["A"]["tail length"]
    assert len(tails) == 2 * 2 and all(0 < t < TAIL_MIN_LENGTH_RATIO for t in tails)


def test_report_notes_heads_judged_without_a_pixel_size_and_not_with_one(
    parts_report_dir, tmp_path
):
    note = "Head size not checked: no pixel size given (--um-per-px or SPERM.UM_PER_PX)"
    page = (parts_report_dir / "report.html").read_text()
    # two fields of three sperm, all judged without a pixel size: above the criteria table
    [shown] = re.findall(r'<p class="note">(.*?)</p>', page)
    assert shown.startswith(note) and "to 6 of 6 heads judged" in shown
    assert (
        page.index("WHO strict criteria (parts)")
        < page.index(note)
        < page.index('<table class="who"')
    )
    assert note in (parts_report_dir / "REPORT.md").read_text()
    # with a pixel size the head size is checked: no note
    (tmp_path / "in" / "A").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "in" / "A" / "f0.png"), _field("x")[0])
    opts = InferOptions(tmp_path / "out", um_per_px=0.1)
    summary = run_inference(PartsPredictor(), [str(tmp_path / "in")], opts)
    assert summary["totals"]["samples"]["in/A"]["who"]
    scaled = (tmp_path / "out" / "report.html").read_text()
    assert "WHO strict criteria (parts)" in scaled and "Head size not checked" not in scaled
    assert 'class="note"' not in scaled
    assert "Head size not checked" not in (tmp_path / "out" / "REPORT.md").read_text()


def test_a_real_browser_renders_the_criteria_plot(parts_report_dir, tmp_path):
    dom = _decoded_dom(_chromium(), parts_report_dir / "report.html", tmp_path)
    plot = re.search(r'<img[^>]*alt="WHO criteria distributions"[^>]*>', dom.stdout).group(0)
    w, h = map(int, re.search(r'data-decoded="(\d+)x(\d+)"', plot).groups())
    assert w > 500 and h > 300
    assert len(re.findall(r"<table", dom.stdout)) == 3  # samples, criteria, morphometrics


def test_the_report_opens_instances_csv_once_and_writes_what_a_pass_per_reader_writes(
    tmp_path, monkeypatch
):
    (tmp_path / "in" / "A").mkdir(parents=True)
    (tmp_path / "in" / "B").mkdir(parents=True)
    for name in ("A/f0.png", "A/f1.png", "B/g.png"):
        cv2.imwrite(str(tmp_path / "in" / name), _field("x")[0])
    opened, calls = [], []
    real_open = builtins.open

    def counting_open(file, *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and Path(file).name == "instances.csv":
            opened.append(file)
        return real_open(file, *args, **kwargs)

    def spy(out, summary, gallery):
        # only write_run_report's own opens count (the run writes instances.csv before it)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(builtins, "open", counting_open)
            m.setattr(io, "open", counting_open)  # what pathlib's Path.open calls
            paths = run_report.write_run_report(out, summary, gallery)
        calls.append((summary, gallery))
        return paths

    monkeypatch.setattr(job, "write_run_report", spy)
    summary = run_inference(
        PartsPredictor(), [str(tmp_path / "in")], InferOptions(tmp_path / "out")
    )
    assert summary["processed"] == 3 and len(calls) == 1
    assert len(opened) == 1  # one pass feeds the morphometrics, the grades and the criteria

    # the same run folder with one pass per reader, as the report read it before
    def pass_per_reader(csv_path, readers):
        for reader in readers:
            read_instances(csv_path, [reader])

    again = tmp_path / "again"
    again.mkdir()
    shutil.copy(tmp_path / "out" / "instances.csv", again / "instances.csv")
    monkeypatch.setattr(run_report, "read_instances", pass_per_reader)
    run_report.write_run_report(again, *calls[0])
    for name in (run_report.HTML_NAME, run_report.MD_NAME):
        assert (again / name).read_bytes() == (tmp_path / "out" / name).read_bytes(), name
    assert "WHO criteria distributions" in (again / run_report.HTML_NAME).read_text()
