"""Label map: normalised matching, ignore (null), unknown labels, ids fixed by class order."""

import pytest

from sperm_d2.data.labels import LabelMap, LabelMapError, UnknownLabelError, normalize_label

from .conftest import REPO


@pytest.fixture(scope="module")
def lm() -> LabelMap:
    return LabelMap.load(REPO / "configs/labels/default.yaml")


def test_normalize_label() -> None:
    assert normalize_label("  Bad_Morphological-Quality ") == "bad morphological quality"


@pytest.mark.parametrize(
    "raw, cls",
    [
        ("Good Morphological Quality", "good"),
        ("01_Normal", "good"),
        ("normal", "good"),
        ("Bad_Morphological_Quality", "bad"),
        ("02_Tapered", "bad"),
        ("Pyriform", "bad"),
        ("abnormal", "bad"),
        ("non_sperm", None),
        ("good", "good"),
    ],
)
def test_class_of(lm: LabelMap, raw: str, cls) -> None:
    assert lm.class_of(raw) == cls


def test_unknown_label_is_an_error(lm: LabelMap) -> None:
    with pytest.raises(UnknownLabelError, match="unknown label 'banana'"):
        lm.class_of("banana")
    assert not lm.knows("banana") and lm.knows("non-sperm")


def test_category_ids_follow_class_order(lm: LabelMap) -> None:
    assert (lm.category_id("good"), lm.category_id("bad")) == (1, 2)
    assert [c["id"] for c in lm.coco_categories()] == [1, 2]
    other = LabelMap.from_dict({"classes": ["bad", "good", "unsure"], "labels": {"x": "unsure"}})
    assert (other.category_id("bad"), other.category_id("unsure")) == (1, 3)
    with pytest.raises(LabelMapError):
        lm.category_id("unsure")


def test_bad_label_map_files(tmp_path) -> None:
    with pytest.raises(LabelMapError, match="cannot read"):
        LabelMap.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("classes: [good, bad]\nlabels: {normal: great}\n")
    with pytest.raises(LabelMapError, match="not one of"):
        LabelMap.load(bad)
    bad.write_text("labels: {}\n")
    with pytest.raises(LabelMapError, match="'classes'"):
        LabelMap.load(bad)


def test_conversion_code_imports_no_torch_or_detectron2() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import sperm_d2.data\n"
        "import sperm_d2.data.prepare, sperm_d2.data.autoannotate, sperm_d2.data.balance\n"
        "import sperm_d2.data.synthetic_io\n"
        "from sperm_d2.data import LabelMap, write_labelme_json\n"
        "bad = [m for m in ('torch', 'detectron2') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
