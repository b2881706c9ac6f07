"""The report of an inference run (report.html + REPORT.md): statistics, the bounded head gallery,
run_inference writing it (with a stand-in predictor: no model, no weights), and the page as a
real browser (headless Chromium) renders it."""

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from detectron2.config import CfgNode

from sperm_d2.inference.head_gallery import HeadGallery
from sperm_d2.inference.job import InferOptions, run_inference
from sperm_d2.inference.report_readers import GradesReader, MorphometricsReader, read_instances
from sperm_d2.inference.run_report import who_mark, wilson_interval
from sperm_d2.inference.types import ImagePrediction

CLASSES = ("good", "bad")
COLORS = [(80, 200, 40), (50, 50, 230)]


def test_wilson_interval_matches_reference_values():
    lo, hi = wilson_interval(5, 10)
    assert (round(lo, 2), round(hi, 2)) == (23.66, 76.34)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0 and round(hi, 2) == 27.75  # stays inside 0-100 at 0 %
    assert wilson_interval(0, 0) is None
    assert who_mark(None, None) == "no heads"
    assert who_mark(2.0, (0.5, 3.9)).startswith("BELOW")
    assert who_mark(50.0, wilson_interval(50, 100)).startswith("above")
    assert "spans" in who_mark(5.0, (1.0, 12.0))


def test_readers_in_one_pass_close_each_field_and_skip_what_is_not_theirs(tmp_path):
    columns = ["file", "frame", "class", "p_bad", "at_border", "length_um", "length_px"]
    rows = [
        ["a.png", "", "good", "0.1", "False", "4.0", "40"],
        ["a.png", "", "bad", "0.9", "False", "None", "50"],
        ["a.png", "", "good", "", "True", "3.0", "30"],  # cut by the border: not graded
        ["b.png", "", "good", "0.2", "True", "", ""],  # a field of border heads only
        ["v.mp4", "0", "good", "0.3", "False", "5.0", "50"],
        ["v.mp4", "1", "bad", "0.7", "False", "5.5", "55"],
        ["v.mp4", "1", "bad", "0.8", "False", "6.0", "60"],
        ["other.png", "", "good", "0.1", "False", "1.0", "10"],  # not a report sample
        ["c.png", "", "good", "", "False", "2.0", "20"],  # the last field, no p_bad
    ]
    path = tmp_path / "instances.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([columns, *rows])
    sample_of = {"a.png": "S", "b.png": "S", "v.mp4": "S", "c.png": "T"}
    um, px = MorphometricsReader(sample_of, True), MorphometricsReader(sample_of, False)
    grades = GradesReader(sample_of, "good")
    read_instances(path, [um, px, grades])
    assert list(um.result()["S"]["length"]) == [4.0, 3.0, 5.0, 5.5, 6.0]
    assert list(px.result()["S"]["length"]) == [40.0, 50.0, 30.0, 50.0, 55.0, 60.0]
    assert list(um.result()["T"]["length"]) == [2.0] and "other.png" not in str(um.result())
    got = {k: {q: list(v) for q, v in g.items()} for k, g in grades.result().items()}
    assert got == {
        "S": {"p_bad": [0.1, 0.9, 0.3, 0.7, 0.8], "field_pct_good": [50.0, 100.0, 0.0]},
        "T": {"p_bad": [], "field_pct_good": [100.0]},
    }


def _heads(source: str, n: int, p_bad: list[float] | None, size: int = 96, frame=None):
    """An image with ``n`` dark ellipses and the prediction of exactly those heads."""
    image = np.full((size, size, 3), 220, np.uint8)
    masks = np.zeros((n, size, size), bool)
    boxes = []
    for i in range(n):
        cx, cy = 14 + (i % 4) * 22, 14 + (i // 4) * 22
        m = np.zeros((size, size), np.uint8)
        cv2.ellipse(m, (cx, cy), (8, 5), 30 * i, 0, 360, 1, -1)
        masks[i] = m.astype(bool)
        image[masks[i]] = (150, 60, 90)
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    p = None if p_bad is None else np.asarray(p_bad[:n], np.float32)
    classes = (
        np.zeros(n, np.int64) if p is None else (p >= 0.5).astype(np.int64)
    )  # the grade follows p_bad, as with a head grader
    pred = ImagePrediction(
        source=source,
        image_size=(size, size),
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        masks=masks,
        scores=np.linspace(0.99, 0.6, n).astype(np.float32),
        classes=classes,
        class_names=CLASSES,
        frame=frame,
        p_bad=p,
        detector_classes=None if p is None else np.zeros(n, np.int64),
    )
    return image, pred


def test_gallery_keeps_a_bounded_set_sorted_by_certainty():
    gallery = HeadGallery(COLORS, per_class=3, borderline=2, thumb=32)
    rng = np.random.default_rng(0)
    for k in range(20):
        image, pred = _heads(f"img{k}.png", 8, rng.uniform(0, 1, 8).tolist())
        gallery.add("sample A", image, pred)
    sure = gallery.most_certain("sample A")
    assert len(sure) == 6  # 3 per class
    assert [h.certainty for h in sure] == sorted((h.certainty for h in sure), reverse=True)
    assert min(h.certainty for h in sure) > 0.9  # the surest of 160 heads
    border = gallery.least_certain("sample A")
    assert len(border) == 2 and all(h.certainty < 0.6 for h in border)
    assert gallery.sample_of["img0.png"] == "sample A"
    assert cv2.imdecode(np.frombuffer(sure[0].png, np.uint8), cv2.IMREAD_COLOR).shape[0] <= 32


class StandInPredictor:
    """What run_inference asks of a SpermPredictor, answering with the heads drawn in the
    image (``_heads``): sample A mostly good, sample B nearly all bad."""

    def __init__(self, plan: dict):
        self.plan = plan  # file name -> (heads, p_bad list)
        self.class_names = CLASSES
        self.weights = "stand-in.pth"
        self.grader = SimpleNamespace(source="stand-in-grader.pth")
        cfg = CfgNode()
        cfg.SPERM = CfgNode({"CLASS_COLORS": [[40, 200, 80], [230, 50, 50]]})
        cfg.MODEL = CfgNode({"ROI_HEADS": CfgNode({"SCORE_THRESH_TEST": 0.5})})
        cfg.INPUT = CfgNode({"MIN_SIZE_TEST": 96, "MAX_SIZE_TEST": 96})
        self.cfg = cfg
        self.class_colors = cfg.SPERM.CLASS_COLORS

    def predict_stream(self, items):
        for path, frame, image in items:
            n, p_bad = self.plan[Path(path).name]
            yield image, _heads(path, n, p_bad, frame=frame)[1]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_run")
    plan = {}
    rng = np.random.default_rng(1)
    # B: 0 good of 96 heads, whose whole interval (0-3.8 %) is below the WHO 4 %
    for sample, n_img, bad_rate in (("A", 4, 0.3), ("B", 12, 0.99)):
        (root / "in" / sample).mkdir(parents=True)
        for i in range(n_img):
            name = f"{sample}{i}.png"
            p_bad = np.clip(rng.normal(bad_rate, 0.2, 8), 0.01, 0.99)
            if sample == "B":
                p_bad = np.maximum(p_bad, 0.7)
            plan[name] = (8, p_bad.tolist())
            image, _ = _heads(name, 8, plan[name][1])
            cv2.imwrite(str(root / "in" / sample / name), image)
    (root / "in" / "B" / "broken.png").write_bytes(b"\x89PNG not really")
    opts = InferOptions(output_dir=root / "out", um_per_px=0.1)
    summary = run_inference(StandInPredictor(plan), [str(root / "in")], opts)
    assert summary["processed"] == 16 and len(summary["skipped"]) == 1
    return root / "out"


def test_infer_writes_a_report_with_every_part(report_dir):
    md = (report_dir / "REPORT.md").read_text()
    for text in ("sample in/A", "sample in/B", "95 % CI", "BELOW 4 %", "broken.png", "length (µm)"):
        assert text in md, text
    page = (report_dir / "report.html").read_text()
    assert page.count("<table") == 3  # samples, morphometrics, skipped
    # three plots (% good, grades per field, morphometrics), two galleries
    assert page.count('src="data:image/png;base64,') >= 3 + 2 * 8
    assert "Grades per field" in page and "at border (not graded)" in page
    # no part segmenter: no criteria, no distributions of them, no legend of part colours
    assert "WHO strict criteria" not in page and "WHO criteria distributions" not in page
    assert "Part outlines" not in page
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing outside the file
    assert "stand-in-grader.pth" in page and "p_bad" in page


def _chromium() -> str:
    """The headless browser, installed with apt when absent and possible; else the test skips."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and cannot be (not root, or no apt-get)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    found = shutil.which("chromium")
    if proc.returncode != 0 or not found:
        pytest.skip(f"apt-get install chromium failed: {proc.stderr.strip()[-300:]}")
    return found


def _browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", "--no-first-run"]
    flags += [f"--user-data-dir={profile}", "--virtual-time-budget=5000"]
    return subprocess.run(
        [chromium, *flags, *args], capture_output=True, text=True, timeout=120, check=True
    )


def _decoded_dom(chromium: str, report: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The DOM of a copy of ``report`` that writes, once loaded, each image's decoded size into
    its ``data-decoded`` attribute, as the headless browser renders it."""
    probe = report.read_text().replace(
        "</body>",
        "<script>window.addEventListener('load',()=>document.querySelectorAll('img')"
        ".forEach(i=>i.setAttribute('data-decoded',i.naturalWidth+'x'+i.naturalHeight)))"
        "</script></body>",
    )
    (tmp_path / "probe.html").write_text(probe, encoding="utf-8")
    return _browser(chromium, tmp_path / "p1", "--dump-dom", f"file://{tmp_path / 'probe.html'}")


def test_a_real_browser_renders_the_tables_and_images(report_dir, tmp_path):
    chromium = _chromium()
    dom = _decoded_dom(chromium, report_dir / "report.html", tmp_path)
    tables = re.findall(r"<table.*?</table>", dom.stdout, re.S)
    assert len(tables) == 3
    assert len(re.findall(r"<tr>", tables[0])) == 3  # header + samples A and B
    decoded = re.findall(r'data-decoded="(\d+)x(\d+)"', dom.stdout)
    assert len(decoded) >= 18 and all(int(w) > 0 and int(h) > 0 for w, h in decoded), decoded
    shot = tmp_path / "shot.png"
    _browser(
        chromium,
        tmp_path / "p2",
        f"--screenshot={shot}",
        "--window-size=1200,2400",
        f"file://{report_dir / 'report.html'}",
    )
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (2400, 1200)
    assert (image < 200).any(axis=2).mean() > 0.02  # text, plots and heads drawn, not blank
