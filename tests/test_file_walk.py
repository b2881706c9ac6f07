"""Input folders walked alike by every tool (sperm_d2.file_walk): a symbolic link to a folder is
followed (was: its images vanished without a word), a link loop is reported and not followed (no
hang), and a folder the user may not read is reported (was: swallowed by rglob / os.walk) in the
tool's own problem or skip list.

The tests run as root, for whom chmod does not lock a folder: ``os.scandir`` is patched to refuse
one path instead (what rglob, os.walk and the walker all call)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from sperm_d2.data.labels import LabelMap

from .conftest import REPO

LABELS = REPO / "configs" / "labels" / "default.yaml"


@pytest.fixture
def locked(monkeypatch) -> set[str]:
    """Folders (``str`` paths, as the walker passes them) that ``os.scandir`` refuses."""
    paths: set[str] = set()
    scandir = os.scandir

    def refusing(path="."):
        if not isinstance(path, int) and os.fspath(path) in paths:
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    return paths


def _png(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 255, (48, 48, 3), np.uint8))
    return path


def _lab(tmp_path: Path, locked: set[str], folder: Path) -> dict:
    """``folder`` holding ``a.png``, ``linked`` (a link to a folder outside it, holding
    ``b.png``), ``linked/back`` (a link back to ``folder``: a loop) and ``locked/`` (unreadable,
    holding ``c.png``)."""
    _png(folder / "a.png")
    outside = tmp_path / "outside" / "sub"
    _png(outside / "b.png", 1)
    os.symlink(outside, folder / "linked")
    os.symlink(folder, outside / "back")
    _png(folder / "locked" / "c.png", 2)
    locked.add(str(folder / "locked"))
    return {"a": folder / "a.png", "b": folder / "linked" / "b.png", "outside": outside}


def test_walk_follows_links_and_returns_what_it_could_not_walk(tmp_path, locked):
    from sperm_d2.file_walk import SYMLINK_LOOP, UNREADABLE_FOLDER, walk_files

    root = tmp_path / "lab"
    lab = _lab(tmp_path, locked, root)
    _png(root / ".thumbs" / "t.png")
    files, problems = walk_files(root, skip=lambda name: name.startswith("."))
    assert files == [lab["a"], lab["b"]]
    assert [(p.path, p.kind, p.reason) for p in problems] == [
        (root / "locked", UNREADABLE_FOLDER, "cannot read folder: Permission denied"),
        (root / "linked" / "back", SYMLINK_LOOP, "symlink loop, not followed"),
    ]


def test_walk_lists_each_real_folder_once_under_its_real_name(tmp_path):
    from sperm_d2.file_walk import walk_files

    root = tmp_path / "lab"
    _png(root / "z" / "x.png")
    os.symlink(root / "z", root / "a")  # a link to a folder of the tree: listed as z/
    _png(tmp_path / "out" / "y.png")
    os.symlink(tmp_path / "out", root / "b")  # two links to one folder: listed once, as b/
    os.symlink(tmp_path / "out", root / "c")
    os.symlink(root / "nowhere", root / "broken.png")  # a broken link is a file to the caller
    files, problems = walk_files(root)
    assert files == [root / "b" / "y.png", root / "broken.png", root / "z" / "x.png"]
    assert not problems
    assert walk_files(root, exclude=[tmp_path / "out"])[0] == files[1:]


def test_walk_of_an_unreadable_root(tmp_path, locked):
    from sperm_d2.file_walk import walk_files

    _png(tmp_path / "lab" / "a.png")
    locked.add(str(tmp_path / "lab"))
    files, [problem] = walk_files(tmp_path / "lab")
    assert not files and problem.path == tmp_path / "lab"


def test_infer_inputs_follow_links_and_list_what_was_not_walked(tmp_path, locked):
    from sperm_d2.inference.sources import check_inputs, expand_inputs

    lab = _lab(tmp_path, locked, tmp_path / "lab")
    files, problems = expand_inputs([str(tmp_path / "lab")])
    assert [f.path for f in files] == [str(lab["a"]), str(lab["b"])]
    assert problems == [
        {"path": str(tmp_path / "lab/locked"), "reason": "cannot read folder: Permission denied"},
        {"path": str(tmp_path / "lab/linked/back"), "reason": "symlink loop, not followed"},
    ]
    # a skip the run lists (infer.py exits 1), not a refusal of the whole run
    assert len(check_inputs([str(tmp_path / "lab")])) == 2
    locked.add(str(tmp_path / "lab"))
    with pytest.raises(ValueError, match=r"--input .*lab: cannot read folder: Permission denied$"):
        check_inputs([str(tmp_path / "lab")])


def test_evaluate_folders_follow_links_and_list_what_was_not_walked(tmp_path, locked):
    from sperm_d2.evaluation.folders import list_class_folders
    from sperm_d2.evaluation.job import run_evaluation

    from .test_evaluate_skips import WholeCropPredictor, _crops

    crops = _crops(tmp_path / "crops")
    lab = _lab(tmp_path, locked, crops / "abnormal")
    items, info = list_class_folders(crops, LabelMap.load(LABELS))
    assert (str(lab["b"]), "bad") in items and len(items) == 6
    locked_path = str(crops / "abnormal" / "locked")
    result, text = run_evaluation(
        WholeCropPredictor(), tmp_path / "ev", folders=str(crops), label_map_path=str(LABELS)
    )
    assert result["test"]["images"] == 6
    assert result["skipped"] == [
        {"path": locked_path, "reason": "cannot read folder: Permission denied", "parts": ["test"]},
        {
            "path": str(crops / "abnormal" / "linked" / "back"),
            "reason": "symlink loop, not followed",
            "parts": ["test"],
        },
    ]
    assert f"{locked_path}: cannot read folder: Permission denied (test folders)" in text


def test_from_folders_follows_links_and_reports_what_was_not_walked(tmp_path, locked):
    from sperm_d2.data.autoannotate import annotate_class_folders
    from sperm_d2.data.prepare import exit_code, prepare_dataset

    from .test_data_autoannotate import _crop

    crops = tmp_path / "crops"
    for i, folder in enumerate(("01_Normal", "01_Normal", "non_sperm")):
        (crops / folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(crops / folder / f"c{i}.png"), _crop(i)[0])
    lab = _lab(tmp_path, locked, crops / "01_Normal")
    label_map = LabelMap.load(LABELS)
    problems = annotate_class_folders(crops, tmp_path / "lm", label_map, image_roots=[tmp_path])
    walked = [(p.level, p.kind, p.file) for p in problems if "folder" in p.kind or "loop" in p.kind]
    assert walked == [
        ("error", "unreadable_folder", "01_Normal/locked"),
        ("warning", "symlink_loop", "01_Normal/linked/back"),
    ]
    assert (tmp_path / "lm" / "01_Normal" / "linked" / "b.json").is_file()
    report = prepare_dataset(
        crops,
        tmp_path / "root",
        label_map,
        ratios=(1.0,),
        from_folders=True,
        image_roots=[lab["outside"]],
    )
    assert report["problems"]["counts"]["error"] == {"unreadable_folder": 1}
    assert report["total"]["images"] == 5 and exit_code(report) == 1


def test_prepare_labelme_follows_links_and_reports_what_was_not_walked(tmp_path, locked):
    from sperm_d2.data.prepare import exit_code, find_labelme_files, prepare_dataset
    from sperm_d2.data.synthetic_io import make_synthetic_dataset

    src = make_synthetic_dataset(tmp_path / "in", 4, 64, seed=3)
    outside = tmp_path / "outside" / "more"
    make_synthetic_dataset(outside, 2, 64, seed=4)
    os.symlink(outside, src / "more")
    os.symlink(src, outside / "back")
    (src / "locked").mkdir()
    locked.add(str(src / "locked"))
    problems: list = []
    paths = find_labelme_files(src, problems=problems)
    assert len(paths) == 6 and src / "more" / "syn_00000.json" in paths
    assert [(p.kind, p.file) for p in problems] == [
        ("unreadable_folder", "locked"),
        ("symlink_loop", "more/back"),
    ]
    label_map = LabelMap.load(LABELS)
    report = prepare_dataset(
        src, tmp_path / "root", label_map, ratios=(1.0,), image_roots=[outside]
    )
    assert report["total"]["images"] == 6
    assert report["problems"]["counts"]["error"] == {"unreadable_folder": 1}
    assert report["problems"]["counts"]["warning"].get("symlink_loop") == 1
    assert exit_code(report) == 1
