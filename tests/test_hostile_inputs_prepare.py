"""tools/prepare_data.py and tools/balance_data.py against malformed inputs (issue 11's corpus).

Every case asserts: the exit code; exactly one line of the tool on stderr, naming the culprit
(per-file problems: the file; whole-run errors: the argument or file); no exception escaping
``main`` (no traceback); every input file byte-identical afterwards; and no partial output
(nothing at all when the run is refused; complete splits without the bad file otherwise).
The tools run in-process (``main(argv)``) to keep the corpus fast.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from sperm_d2.data.synthetic_io import make_synthetic_dataset

from .conftest import REPO
from .hostile_inputs import (
    edit_json,
    fifo_watchdog,
    gray16_png,
    load_tool,
    png_header,
    run_main,
    symlink_loop,
    tree_hashes,
)

PREPARE = load_tool("prepare_data")
BALANCE = load_tool("balance_data")
LABELS = REPO / "configs" / "labels" / "default.yaml"
BAD = "syn_00000.json"  # the file each per-file case breaks
N = 8  # images in the clean dataset; --split 0.5,0.5 keeps both splits non-empty without one


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("clean") / "labelme", N, 64, seed=3)


@pytest.fixture
def src(clean, tmp_path) -> Path:
    shutil.copytree(clean, tmp_path / "in")
    return tmp_path / "in"


def _shape0(key, value):
    def fn(doc):
        doc["shapes"][0][key] = value

    return fn


def _top(key, value):
    def fn(doc):
        doc[key] = value

    return fn


def _point0(value):
    def fn(doc):
        doc["shapes"][0]["points"][0] = value

    return fn


def _bomb(src: Path) -> None:
    (src / "bomb.png").write_bytes(png_header(100_000, 100_000))
    edit_json(src / BAD, _top("imagePath", "bomb.png"))


def _truncated(src: Path) -> None:
    data = (src / "syn_00000.png").read_bytes()
    (src / "syn_00000.png").write_bytes(data[: len(data) // 2])


def _not_an_image(src: Path) -> None:
    (src / "syn_00000.png").write_bytes(b"hello, not a png")


def _outside_image(src: Path) -> None:
    shutil.copy(src / "syn_00000.png", src.parent / "outside.png")
    edit_json(src / BAD, _top("imagePath", "../outside.png"))


def _absolute_outside(src: Path) -> None:
    shutil.copy(src / "syn_00000.png", src.parent / "abs.png")
    edit_json(src / BAD, _top("imagePath", str(src.parent / "abs.png")))


def _image_is_folder(src: Path) -> None:
    (src / "folder.png").mkdir()
    edit_json(src / BAD, _top("imagePath", "folder.png"))


def _empty_folder(tmp: Path) -> Path:
    """A folder holding no labelme file (made under the test's own ``tmp``)."""
    folder = tmp / "no_labelme"
    folder.mkdir(exist_ok=True)
    (folder / "notes.txt").write_text("no annotations here\n")
    return folder


def _write(text: str | bytes):
    def fn(src: Path) -> None:
        p = src / BAD
        p.write_bytes(text if isinstance(text, bytes) else text.encode())

    return fn


def _edit(fn, allow_nan: bool = True):
    return lambda src: edit_json(src / BAD, fn, allow_nan)


def _huge_int(src: Path) -> None:
    text = (src / BAD).read_text()
    doc = json.loads(text)
    x, y = doc["shapes"][0]["points"][0]
    old = json.dumps([x, y])
    (src / BAD).write_text(json.dumps(doc).replace(old, f"[{'9' * 400}, {y}]", 1))


def _dup_key(pair: str, shape: bool = False):
    """The file with ``pair`` (``"key": value``) added again at the end of the document (or of
    its first shape): JSON parsers keep the last value silently."""

    def fn(src: Path) -> None:
        text = json.dumps(json.loads((src / BAD).read_text()))
        if shape:  # json.dumps writes each shape's "flags" last: {..., "flags": {}}
            at = text.index('"flags": {}', text.index('"shapes"')) + len('"flags": {}')
        else:
            at = text.rindex("}")
        (src / BAD).write_text(f"{text[:at]}, {pair}{text[at:]}")

    return fn


# (id, how to break the input, expected exit code, level of the one stderr line)
PER_FILE = [
    ("nan_point", _edit(_point0([float("nan"), 5.0])), 1, "ERROR"),
    ("infinity_point", _edit(_point0([float("inf"), 5.0])), 1, "ERROR"),
    ("string_point", _edit(_shape0("points", ["10,10", "20,10", "20,20"])), 1, "ERROR"),
    ("string_coordinates", _edit(_point0(["10", "10"])), 1, "ERROR"),
    ("bool_coordinates", _edit(_point0([True, False])), 1, "ERROR"),
    ("null_point", _edit(_point0(None)), 1, "ERROR"),
    ("three_coordinates", _edit(_point0([1.0, 2.0, 3.0])), 1, "ERROR"),
    ("points_a_number", _edit(_shape0("points", 5)), 1, "ERROR"),
    ("coordinate_beyond_float", _huge_int, 1, "ERROR"),
    ("group_id_infinity", _edit(_shape0("group_id", float("inf"))), 1, "ERROR"),
    ("group_id_nan", _edit(_shape0("group_id", float("nan"))), 1, "ERROR"),
    ("group_id_text", _edit(_shape0("group_id", "a")), 1, "ERROR"),
    ("group_id_fraction", _edit(_shape0("group_id", 1.5)), 1, "ERROR"),
    ("shape_type_number", _edit(_shape0("shape_type", 5)), 1, "ERROR"),
    ("label_number", _edit(_shape0("label", 7)), 1, "ERROR"),
    ("unknown_label", _edit(_shape0("label", "banana")), 1, "ERROR"),
    ("shape_a_number", _edit(lambda d: d["shapes"].__setitem__(0, 5)), 1, "ERROR"),
    ("shapes_text", _edit(_top("shapes", "x")), 1, "ERROR"),
    ("height_infinity", _edit(_top("imageHeight", float("inf"))), 1, "ERROR"),
    ("height_negative", _edit(_top("imageHeight", -64)), 1, "ERROR"),
    ("width_text", _edit(_top("imageWidth", "abc")), 1, "ERROR"),
    ("size_mismatch", _edit(_top("imageWidth", 65)), 1, "ERROR"),
    ("image_16bit_grey", lambda src: gray16_png(src / "syn_00000.png"), 1, "ERROR"),
    ("decompression_bomb_png", _bomb, 1, "ERROR"),
    ("truncated_png", _truncated, 1, "ERROR"),
    ("image_not_an_image", _not_an_image, 1, "ERROR"),
    ("image_outside_root", _outside_image, 1, "ERROR"),
    ("image_absolute_outside", _absolute_outside, 1, "ERROR"),
    ("image_is_a_folder", _image_is_folder, 1, "ERROR"),
    ("image_path_list", _edit(_top("imagePath", ["a.png"])), 1, "ERROR"),
    ("image_path_nul", _edit(_top("imagePath", "a\0.png")), 1, "ERROR"),
    ("image_data_bad_base64", _edit(_top("imageData", "@@@")), 1, "ERROR"),
    ("image_data_number", _edit(_top("imageData", 5)), 1, "ERROR"),
    ("json_duplicate_shapes", _dup_key('"shapes": []'), 1, "ERROR"),
    ("json_duplicate_image_path", _dup_key('"imagePath": "syn_00001.png"'), 1, "ERROR"),
    (
        "json_duplicate_points",
        _dup_key('"points": [[1, 1], [9, 1], [9, 9]]', shape=True),
        1,
        "ERROR",
    ),
    ("json_a_list", _write("[1, 2]"), 1, "ERROR"),
    ("json_nested_deeply", _write("[" * 100_000 + "]" * 100_000), 1, "ERROR"),
    ("json_not_utf8", _write(b'{"shapes": [], "imagePath": "\xff\xfe.png"}'), 1, "ERROR"),
    ("json_empty_file", _write(b""), 1, "ERROR"),
    ("json_truncated", _write('{"shapes": [{"label": "normal", "points": [[1, 2]'), 1, "ERROR"),
    ("shape_flags_number", _edit(_shape0("flags", 5)), 0, "WARNING"),
    ("file_flags_list", _edit(_top("flags", [1])), 0, "WARNING"),
    ("shapes_missing", _edit(lambda d: d.__delitem__("shapes")), 0, "WARNING"),
    (
        "circle_astronomic",
        _edit(
            lambda d: d["shapes"].append(
                {"label": "normal", "points": [[10, 10], [1e300, 1e300]], "shape_type": "circle"}
            )
        ),
        0,
        "WARNING",
    ),
    ("polygon_no_points", _edit(_shape0("points", [])), 0, "WARNING"),
    # a head with no outline: kept, the image would teach it as background
    ("point_of_a_class", _edit(_shape0("shape_type", "point")), 1, "ERROR"),
    ("linestrip_of_a_class", _edit(_shape0("shape_type", "linestrip")), 1, "ERROR"),
    ("mask_without_data", _edit(_shape0("shape_type", "mask")), 1, "ERROR"),
]


@pytest.mark.parametrize("case, breaker, code, level", PER_FILE, ids=[c[0] for c in PER_FILE])
def test_one_bad_file_is_one_line_and_the_batch_goes_on(
    src, tmp_path, case, breaker, code, level
) -> None:
    breaker(src)
    before = tree_hashes(src.parent)
    out = tmp_path / "out"
    res = run_main(PREPARE.main, ["--input", str(src), "--output", str(out), "--split", "0.5,0.5"])
    assert res.exception is None, repr(res.exception)
    assert "Traceback" not in res.stderr
    lines = res.lines("prepare_data.py")
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"prepare_data.py: {level} ") and BAD in lines[0], lines[0]
    assert res.code == code, res.stderr
    after = {k: v for k, v in tree_hashes(src.parent).items() if not k.startswith(f"{out}/")}
    assert after == before  # inputs untouched
    report = json.loads((out / "annotations/report.json").read_text())
    names = {
        img["labelme"]
        for split in ("train", "val")
        for img in json.loads((out / f"annotations/{split}.json").read_text())["images"]
    }
    if level == "ERROR":  # skipped, the other files all converted
        assert BAD not in names and len(names) == N - 1
        assert report["files"]["skipped"] == 1
    else:
        assert BAD in names and len(names) == N


def _label_map(text: str | bytes):
    def fn(src: Path, tmp: Path) -> list[str]:
        p = tmp / "labels.yaml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["--label-map", str(p)]

    return fn


def _args(*extra: str):
    return lambda src, tmp: list(extra)


def _all_bad(src: Path, tmp: Path) -> list[str]:
    for j in src.glob("*.json"):
        j.write_text("{")
    return []


def _empty_input(src: Path, tmp: Path) -> list[str]:
    shutil.rmtree(src)
    src.mkdir()
    return []


def _foreign_split(src: Path, tmp: Path) -> list[str]:
    (tmp / "out" / "annotations").mkdir(parents=True)
    (tmp / "out" / "annotations" / "train.json").write_text('{"mine": true}')
    return []


# (id, extra arguments (may prepare files), culprit named in the error line)
REFUSED = [
    ("split_nan", _args("--split", "nan,0.5"), "--split"),
    ("split_infinite", _args("--split", "inf,1"), "--split"),
    ("split_zero_part", _args("--split", "0.7,0.3,0"), "--split"),
    ("split_negative", _args("--split", "-1,2"), "--split"),
    ("split_text", _args("--split", "a,b"), "--split"),
    ("split_four_parts", _args("--split", "1,1,1,1"), "--split"),
    ("split_empty_val", _args("--split", "0.99,0.01"), "val"),
    ("split_empty_test", _args("--split", "0.495,0.495,0.01"), "test"),
    ("kfold_one", _args("--kfold", "1"), "--kfold"),
    ("kfold_negative", _args("--kfold", "-3"), "--kfold"),
    ("kfold_too_many", _args("--kfold", "50"), "--kfold"),
    ("kfold_text", _args("--kfold", "x"), "--kfold"),
    ("kfold_astronomic", _args("--kfold", "99999999999999999999"), "at most 1000 folds"),
    ("workers_zero", _args("--workers", "0"), "--workers"),
    ("workers_thousands", _args("--workers", "100000"), "per CPU"),  # was a fork bomb
    ("seed_negative", _args("--seed", "-1"), "--seed"),
    ("image_root_missing", _args("--image-root", "/no/such/folder"), "--image-root"),
    ("contact_sheet_alone", _args("--contact-sheet", "x.png"), "--contact-sheet"),
    ("labels_missing", _args("--label-map", "/no/such/labels.yaml"), "labels.yaml"),
    (
        "labels_duplicate_key",
        _label_map("classes: [good, bad]\nlabels:\n  t: bad\n  t: good\n"),
        "twice",
    ),
    ("labels_class_case_collision", _label_map("classes: [good, Good]\n"), "same name"),
    (
        "labels_label_case_collision",
        _label_map("classes: [good, bad]\nlabels:\n  Tapered: bad\n  tapered: good\n"),
        "Tapered",
    ),
    ("labels_relabel_class", _label_map("classes: [good, bad]\nlabels:\n  good: bad\n"), "good"),
    ("labels_yes_key", _label_map("classes: [good, bad]\nlabels:\n  yes: good\n"), "True"),
    ("labels_invalid_yaml", _label_map("classes: [good, bad\n"), "labels.yaml"),
    ("labels_empty", _label_map(""), "labels.yaml"),
    ("labels_binary", _label_map(b"\xff\xfe\x00garbage"), "labels.yaml"),
    ("labels_unknown_target", _label_map("classes: [good]\nlabels:\n  x: bad\n"), "'bad'"),
    ("every_file_bad", _all_bad, "none of"),
    ("no_labelme_file", _empty_input, "no labelme"),
    ("foreign_file_in_output", _foreign_split, "train.json"),
]


@pytest.mark.parametrize("case, setup, culprit", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_runs_write_nothing(src, tmp_path, case, setup, culprit) -> None:
    extra = setup(src, tmp_path)
    out = tmp_path / "out"
    before = tree_hashes(tmp_path)
    argv = ["--input", str(src), "--output", str(out), "--split", "0.5,0.5"]
    res = run_main(PREPARE.main, argv + extra)
    assert res.exception is None, repr(res.exception)
    assert "Traceback" not in res.stderr and res.code == 2, res.stderr
    errors = [line for line in res.lines("prepare_data.py") if "error:" in line]
    assert len(errors) == 1 and culprit in errors[0], res.stderr
    assert tree_hashes(tmp_path) == before  # nothing written, nothing changed


def test_input_inside_output_annotations_never_loses_user_files(src, tmp_path) -> None:
    """The data-loss case: labelme files in D/annotations, prepared into D."""
    root = tmp_path / "D"
    shutil.copytree(src, root / "annotations")
    before = tree_hashes(root)
    for inp, out in ((root / "annotations", root), (root, root), (root, root / "annotations")):
        res = run_main(PREPARE.main, ["--input", str(inp), "--output", str(out)])
        assert res.code == 2 and res.exception is None
        (line,) = res.lines("prepare_data.py")
        assert "--input" in line and "overlap" in line or "same folder" in line, line
        assert tree_hashes(root) == before


def test_reruns_replace_only_their_own_unedited_files(src, tmp_path) -> None:
    out = tmp_path / "out"
    args = ["--input", str(src), "--output", str(out)]
    assert run_main(PREPARE.main, args + ["--split", "0.5,0.25,0.25"]).code == 0
    ann = out / "annotations"
    (ann / "mine.json").write_text("{}")  # the user's own file
    (ann / "test.json").write_text('{"edited": true}')  # ours, edited since
    res = run_main(PREPARE.main, args + ["--split", "0.5,0.5", "--kfold", "2"])
    assert res.code == 0, res.stderr
    names = sorted(p.name for p in ann.glob("*.json"))
    folds = [f"fold{i}_{s}.json" for i in range(2) for s in ("train", "val")]
    # train/val (ours, unchanged) are gone; the user's file and the edited one stay
    assert names == sorted(folds + ["mine.json", "report.json", "test.json"])
    assert (ann / "test.json").read_text() == '{"edited": true}'
    # an edited file in the way of a new output is refused, not overwritten
    (ann / "fold0_val.json").write_text('{"edited": true}')
    res = run_main(PREPARE.main, args + ["--split", "0.5,0.5", "--kfold", "2"])
    assert res.code == 2 and "fold0_val.json" in res.lines("prepare_data.py")[0]
    assert (ann / "fold0_val.json").read_text() == '{"edited": true}'


def test_balance_then_prepare_cli_with_image_root(src, tmp_path) -> None:
    """The documented recipe (balance_data -> prepare_data --image-root), through both CLIs."""
    bal, out = tmp_path / "bal", tmp_path / "out"
    before = tree_hashes(src)
    res = run_main(BALANCE.main, ["--input", str(src), "--output", str(bal), "--target", "6"])
    assert res.code == 0 and res.exception is None, res.stderr
    assert json.loads(res.stdout)["skipped"] == {"files": 0}
    argv = ["--input", str(bal), "--output", str(out), "--split", "0.5,0.5"]
    escaped = run_main(PREPARE.main, argv + ["--output", str(tmp_path / "out0")])
    lines = escaped.lines("prepare_data.py")  # the originals lie outside bal/: path escapes
    assert escaped.code == 1 and len(lines) == N and all("outside" in line for line in lines)
    res = run_main(PREPARE.main, argv + ["--image-root", str(src)])
    assert res.code == 0, res.stderr
    report = json.loads((out / "annotations/report.json").read_text())
    assert report["files"]["skipped"] == 0 and report["total"]["images"] > N
    assert tree_hashes(src) == before
    again = run_main(BALANCE.main, ["--input", str(src), "--output", str(bal), "--target", "6"])
    assert again.code == 0  # its own earlier output is replaced


BALANCE_REFUSED = [
    ("input_missing", lambda s, t: ["--input", str(t / "nope"), "--output", str(t / "b")], "nope"),
    ("output_inside_input", lambda s, t: ["--input", str(s), "--output", str(s / "b")], "overlap"),
    ("input_inside_output", lambda s, t: ["--input", str(s), "--output", str(t)], "overlap"),
    ("same_folder", lambda s, t: ["--input", str(s), "--output", str(s)], "overlap"),
    (
        "target_zero",
        lambda s, t: ["--input", str(s), "--output", str(t / "b"), "--target", "0"],
        "--target",
    ),
    (
        "output_is_a_file",
        lambda s, t: ["--input", str(s), "--output", str(s / "syn_00000.png")],
        "syn_00000.png",
    ),
    (  # was a traceback
        "seed_negative",
        lambda s, t: ["--input", str(s), "--output", str(t / "b"), "--seed", "-1"],
        "--seed -1",
    ),
    (  # was a run writing 250 copies of each image (a typo'd target: the disk filled)
        "target_past_the_copies_of_each_image",
        lambda s, t: ["--input", str(s), "--output", str(t / "b"), "--target", "1000"],
        "augmented copies of each",
    ),
    (  # was "folder not found"
        "input_a_file",
        lambda s, t: ["--input", str(s / "syn_00000.png"), "--output", str(t / "b")],
        "syn_00000.png: not a folder",
    ),
    (  # was an empty output and exit 0
        "input_without_labelme_files",
        lambda s, t: ["--input", str(_empty_folder(t)), "--output", str(t / "b")],
        "no labelme *.json file",
    ),
    (
        "labels_missing",
        lambda s, t: [
            "--input",
            str(s),
            "--output",
            str(t / "b"),
            "--label-map",
            str(t / "x.yaml"),
        ],
        "x.yaml",
    ),
]


@pytest.mark.parametrize(
    "case, argv, culprit", BALANCE_REFUSED, ids=[c[0] for c in BALANCE_REFUSED]
)
def test_balance_refused_runs_write_nothing(src, tmp_path, case, argv, culprit) -> None:
    args = argv(src, tmp_path)  # a case may build its input first
    before = tree_hashes(tmp_path)
    res = run_main(BALANCE.main, args)
    assert res.exception is None and res.code == 2, (res.exception, res.stderr)
    (line,) = res.lines("balance_data.py")
    assert culprit in line, line
    assert tree_hashes(tmp_path) == before
    assert not (tmp_path / "b").exists()


def test_balance_foreign_output_refused_bad_file_skipped(src, tmp_path) -> None:
    bal = tmp_path / "bal"
    bal.mkdir()
    (bal / "notes.txt").write_text("mine")
    res = run_main(BALANCE.main, ["--input", str(src), "--output", str(bal)])
    assert res.code == 2 and "notes.txt" in res.lines("balance_data.py")[0]
    assert (bal / "notes.txt").read_text() == "mine"
    (bal / "notes.txt").unlink()
    edit_json(src / BAD, _point0([float("nan"), 1.0]))
    res = run_main(BALANCE.main, ["--input", str(src), "--output", str(bal)])
    assert res.code == 1 and res.exception is None
    (line,) = res.lines("balance_data.py")
    assert BAD in line and "skipped" in line
    assert not (bal / BAD).exists() and (bal / "syn_00001.json").is_file()


def test_balance_with_no_usable_file_writes_nothing(src, tmp_path) -> None:
    """Every labelme file unreadable: each listed, then one error line, exit 2, no output
    folder (it was an empty balanced set and exit 1)."""
    for j in src.glob("*.json"):
        j.write_text("{")
    res = run_main(BALANCE.main, ["--input", str(src), "--output", str(tmp_path / "b")])
    assert res.exception is None and res.code == 2, (res.exception, res.stderr)
    lines = res.lines("balance_data.py")
    assert len(lines) == N + 1 and all(" skipped syn_" in line for line in lines[:-1]), lines
    assert lines[-1].endswith(f"none of {N} labelme file(s) usable"), lines[-1]
    assert not (tmp_path / "b").exists()


def test_reviewed_auto_annotations_prepared_again_are_never_deleted(tmp_path) -> None:
    """--from-folders writes root/labelme; the user reviews it and prepares it as --input into
    the same root: the earlier run's own files are now input and must survive."""
    from sperm_d2.data.synthetic_io import make_synthetic_crops

    make_synthetic_crops(tmp_path / "crops", 12, size=96)
    crops, root = tmp_path / "crops" / "val", tmp_path / "root"
    args = ["--output", str(root), "--split", "0.5,0.5"]
    assert run_main(PREPARE.main, ["--input", str(crops), "--from-folders"] + args).code == 0
    labelme = root / "labelme"
    edited = sorted(labelme.rglob("*.json"))[0]
    edited.write_text(edited.read_text().replace('"version"', '"version" ', 1))  # reviewed
    before = tree_hashes(labelme)
    again = ["--input", str(labelme), "--image-root", str(crops)] + args
    res = run_main(PREPARE.main, again)
    assert res.code == 0, res.stderr
    assert tree_hashes(labelme) == before
    res = run_main(PREPARE.main, ["--input", str(crops), "--from-folders"] + args)
    assert res.code == 2 and edited.name in res.lines("prepare_data.py")[0]  # edit protected
    assert tree_hashes(labelme) == before


def test_special_files_are_named_never_waited_on(src, tmp_path) -> None:
    """A labelme file that is a FIFO (reading it blocks for ever), an image that is a FIFO, a
    symlink loop or a broken symlink: each file skipped in one line saying what it is."""
    (src / "syn_00001.png").unlink()
    symlink_loop(src / "syn_00001.png")
    (src / "syn_00002.json").unlink()
    os.symlink(tmp_path / "no_such.json", src / "syn_00002.json")
    (src / "syn_00000.json").unlink()
    (src / "syn_00003.png").unlink()
    out = tmp_path / "out"
    argv = ["--input", str(src), "--output", str(out), "--split", "0.5,0.5"]
    with fifo_watchdog([src / "syn_00000.json", src / "syn_00003.png"]) as fired:
        before = tree_hashes(src)
        res = run_main(PREPARE.main, argv)
    assert not fired.is_set(), "a FIFO was opened and read"
    assert res.exception is None and res.code == 1, (res.exception, res.stderr)
    lines = sorted(res.lines("prepare_data.py"))
    assert len(lines) == 4 and all(line.startswith("prepare_data.py: ERROR ") for line in lines)
    want = ["FIFO", "symbolic links", "No such file", "FIFO"]  # files 0 to 3
    for line, (i, text) in zip(lines, enumerate(want)):
        assert f"syn_0000{i}.json" in line and text in line, line
    assert tree_hashes(src) == before
    report = json.loads((out / "annotations/report.json").read_text())
    assert report["files"]["skipped"] == 4


def test_from_folders_lists_special_crops(tmp_path) -> None:
    """--from-folders: a crop that is a FIFO, a broken symlink or a 16-bit grey image is listed
    as a problem, not dropped unseen (or, for the 16-bit one, trained on clipped to white)."""
    from sperm_d2.data.synthetic_io import make_synthetic_crops

    make_synthetic_crops(tmp_path / "crops", 12, size=64)
    crops = tmp_path / "crops" / "val"
    folder = sorted(p for p in crops.iterdir() if p.is_dir())[0]
    os.symlink(tmp_path / "no_such.png", folder / "dangling.png")
    gray16_png(folder / "deep.png")
    argv = ["--input", str(crops), "--from-folders", "--output", str(tmp_path / "root")]
    with fifo_watchdog([folder / "pipe.png"]) as fired:
        res = run_main(PREPARE.main, argv + ["--split", "0.5,0.5"])
    assert not fired.is_set(), "a FIFO was opened and read"
    assert res.exception is None and res.code == 1, (res.exception, res.stderr)
    lines = res.lines("prepare_data.py")
    for name, text in (("pipe", "FIFO"), ("dangling", "No such file"), ("deep", "16-bit")):
        [line] = [line for line in lines if f"/{name}." in line]
        assert line.startswith("prepare_data.py: ERROR ") and text in line, line


def test_from_folders_lists_what_no_class_folder_holds(tmp_path) -> None:
    """--from-folders: an image beside the class folders (no class), a crop linking to a file
    outside --input, and a class folder without images (only a note and a stray JSON) are each
    one line naming the crop or folder; they were dropped unseen, or (the link) reported under
    the name of a temporary labelme file, as outside "the dataset root"."""
    from sperm_d2.data.synthetic_io import make_synthetic_crops

    make_synthetic_crops(tmp_path / "crops", 6, size=64)
    crops, outside = tmp_path / "crops" / "test", tmp_path / "outside"
    folder = sorted(p for p in crops.iterdir() if p.is_dir())[0]
    first = sorted(folder.iterdir())[0]
    crop_count = len(list(crops.rglob("*.png")))
    outside.mkdir()
    shutil.copy(first, crops / "loose.png")
    shutil.copy(first, outside / "x.png")
    os.symlink(outside / "x.png", folder / "link.png")
    (crops / "debris").mkdir()
    (crops / "debris" / "notes.txt").write_text("to do")
    (crops / "debris" / "a.json").write_text("{}")
    before = tree_hashes(crops, outside)
    argv = ["--input", str(crops), "--from-folders", "--output", str(tmp_path / "root")]
    res = run_main(PREPARE.main, argv + ["--split", "0.5,0.5"])
    assert res.exception is None and res.code == 1, (res.exception, res.stderr)
    lines = res.lines("prepare_data.py")
    assert len(lines) == 3, res.stderr
    [empty] = [line for line in lines if "debris" in line]
    [loose] = [line for line in lines if "loose.png" in line]
    [link] = [line for line in lines if "link.png" in line]
    assert empty.startswith("prepare_data.py: WARNING debris: class folder holds no image")
    assert "(2 other file(s) ignored)" in empty, empty
    assert loose.startswith("prepare_data.py: ERROR loose.png: image outside every class folder")
    assert link.startswith(f"prepare_data.py: ERROR {folder.name}/link.png: links to ")
    assert str(outside / "x.png") in link and ".partial" not in link, link
    assert tree_hashes(crops, outside) == before
    report = json.loads((tmp_path / "root" / "annotations" / "report.json").read_text())
    assert report["files"]["found"] == crop_count  # the crops in class folders, no more
    # the link's folder named as an image root: taken like the others
    res = run_main(PREPARE.main, argv + ["--split", "0.5,0.5", "--image-root", str(outside)])
    assert not [line for line in res.lines("prepare_data.py") if "link.png" in line]


def test_a_file_name_with_a_newline_stays_one_line(src, tmp_path) -> None:
    (src / "bad\nname.json").write_text("{not json")
    out = tmp_path / "out"
    res = run_main(PREPARE.main, ["--input", str(src), "--output", str(out), "--split", "0.5,0.5"])
    assert res.code == 1, res.stderr
    lines = res.lines("prepare_data.py")
    assert len(lines) == 1 and "bad\\nname.json" in lines[0], res.stderr
    assert not [line for line in res.stderr.splitlines() if line.startswith("name.json")]


def test_ctrl_c_while_writing_leaves_a_whole_dataset(src, tmp_path, monkeypatch) -> None:
    """Ctrl-C as the new splits are written (over an earlier run's): they are all written first,
    so annotations/ is this run's dataset whole, never new splits beside old ones."""
    import sperm_d2.data.prepare_io as prepare_io

    def run(out: Path, seed: str):
        argv = ["--input", str(src), "--output", str(out), "--split", "0.5,0.5", "--seed", seed]
        return run_main(PREPARE.main, argv)

    out, reference = tmp_path / "out", tmp_path / "reference"
    assert run(out, "0").code == 0 and run(reference, "1").code == 0
    write = prepare_io.write_bytes_atomic

    def interrupted_write(path, data):
        if path.name == "train.json":  # the first split file: Ctrl-C now
            os.kill(os.getpid(), signal.SIGINT)
        write(path, data)

    monkeypatch.setattr(prepare_io, "write_bytes_atomic", interrupted_write)
    res = run(out, "1")
    assert res.code == 130 and "interrupted" in res.stderr, res.stderr
    for name in ("train.json", "val.json"):
        assert (out / "annotations" / name).read_bytes() == (
            reference / "annotations" / name
        ).read_bytes()
    report = json.loads((out / "annotations/report.json").read_text())
    assert report["settings"]["seed"] == 1


def test_every_data_tool_takes_the_same_seeds() -> None:
    """prepare_data, balance_data, make_synthetic and visualize_data share one seed rule (they
    disagreed: 2**40 was taken by two, refused by the others)."""
    from sperm_d2.data.problems import InputError, check_seed

    for good in (0, 7, 2**32 - 1):
        check_seed(good)
    for bad in (-1, 2**32, 2**40, True, 1.5):
        with pytest.raises(InputError, match=r"--seed .*expected an integer in \[0, 2\*\*32\)"):
            check_seed(bad)
