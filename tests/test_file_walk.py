"""Input folders walked alike by every tool (sperm_d2.file_walk): a symbolic link to a folder is
followed (was: its images vanished without a word), a link loop is reported and not followed (no
hang), and a folder the user may not read is reported (was: swallowed by rglob / os.walk) in the
tool's own problem or skip list.

The tests run as root, for whom chmod does not lock a folder: ``os.scandir`` is patched to refuse
one path instead (what rglob, os.walk and the walker all call)."""

from __future__ import annotations

import errno
import json
import os
import shutil
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


def test_infer_globs_list_what_they_could_not_search(tmp_path, locked):
    """``glob.glob`` passed an unreadable folder by without a word, and a recursive glob
    followed a link loop, listing each image again at every turn."""
    from sperm_d2.inference.sources import check_inputs, expand_inputs

    lab = _lab(tmp_path, locked, tmp_path / "lab")
    _png(tmp_path / "lab" / "deep" / "er" / "d.png", 3)
    files, problems = expand_inputs([str(tmp_path / "lab" / "**" / "*.png")])
    deep = tmp_path / "lab" / "deep" / "er" / "d.png"
    assert [f.path for f in files] == [str(lab["a"]), str(deep), str(lab["b"])]
    assert problems == [
        {"path": str(tmp_path / "lab/locked"), "reason": "cannot read folder: Permission denied"},
        {"path": str(tmp_path / "lab/linked/back"), "reason": "symlink loop, not followed"},
    ]
    files, problems = expand_inputs([str(tmp_path / "lab" / "**" / "er" / "*.png")])
    assert [f.path for f in files] == [str(deep)]
    # a glob of one level: the folders it lists are checked, the others are not its business
    files, problems = expand_inputs([str(tmp_path / "lab" / "*" / "*.png")])
    assert [f.path for f in files] == [str(lab["b"])]
    assert problems == [
        {"path": str(tmp_path / "lab/locked"), "reason": "cannot read folder: Permission denied"}
    ]
    files, problems = expand_inputs([str(tmp_path / "lab" / "*.png")])
    assert [f.path for f in files] == [str(lab["a"])] and problems == []
    # nothing found because the folder it starts in cannot be read: the run is refused, saying so
    locked.add(str(tmp_path / "lab"))
    for spec in ("*.png", "**/*.png"):
        with pytest.raises(ValueError, match=r"lab/\S+: no match found: .*lab: cannot read folder"):
            check_inputs([str(tmp_path / "lab" / spec)])


def test_recursive_globs_match_through_linked_folders_and_start_where_they_can_match(
    tmp_path, locked
):
    """A folder linked into the tree is listed under its real name, yet a pattern naming the
    link still matches through it (``latest -> run_2``); a wildcard before ``**`` walks only the
    folders it matches, so an unreadable folder elsewhere is not blamed."""
    from sperm_d2.file_glob import glob_files

    data = tmp_path / "data"
    _png(data / "run_2" / "a.png")
    os.symlink(data / "run_2", data / "latest")
    _png(data / "old" / "b.png", 1)
    _png(tmp_path / "other" / "c.png", 2)
    locked.add(str(tmp_path / "other"))
    assert glob_files(str(data / "**" / "latest" / "*.png")) == ([data / "latest" / "a.png"], [])
    assert glob_files(str(data / "**" / "l*" / "*.png")) == ([data / "latest" / "a.png"], [])
    # each file once, under its real path, when the pattern matches it there
    assert glob_files(str(data / "**" / "*.png"))[0] == [data / "old/b.png", data / "run_2/a.png"]
    files, problems = glob_files(str(tmp_path / "d*a" / "**" / "*.png"))
    assert files == [data / "old/b.png", data / "run_2/a.png"] and problems == []
    files, problems = glob_files(str(tmp_path / "*" / "**" / "*.png"))
    assert [p.path for p in problems] == [tmp_path / "other"] and len(files) == 2
    # skipped names (folder debris) are not searched, nor blamed
    _png(tmp_path / "__MACOSX" / "x.png")
    locked.add(str(tmp_path / "__MACOSX"))
    skip = lambda name: name.startswith(".") or name == "__MACOSX"  # noqa: E731
    assert glob_files(str(tmp_path / "*" / "*.png"), skip)[1] == [problems[0]]


def test_globs_list_a_file_once_and_find_it_behind_many_links(tmp_path) -> None:
    """Two folders before ``**`` that reach one folder (a link between them) list its files
    once; a file reached through many links is still matched by the last link's name."""
    from sperm_d2.file_glob import glob_files

    data = tmp_path / "data"
    _png(data / "a" / "x.png")
    _png(data / "a" / "sub" / "y.png", 1)
    _png(data / "b" / "z.png", 2)
    os.symlink(data / "a" / "sub", data / "link")
    os.symlink(data / "a", data / "zlink")
    files, problems = glob_files(str(data / "*" / "**" / "*.png"))
    assert files == [data / "a/sub/y.png", data / "a/x.png", data / "b/z.png"] and not problems
    many = tmp_path / "many"
    _png(many / "real" / "x.png")
    for i in range(100):
        os.symlink(many / "real", many / f"l{i:02d}")
    assert glob_files(str(many / "**" / "l99" / "*.png")) == ([many / "l99" / "x.png"], [])
    assert glob_files(str(many / "**" / "*.png")) == ([many / "real" / "x.png"], [])


def test_an_input_inside_a_folder_it_may_not_search_is_one_line(tmp_path, monkeypatch) -> None:
    """``Path.is_dir`` raises PermissionError there (Python 3.11): it was a traceback."""
    import errno

    from sperm_d2.inference.sources import check_inputs

    locked = tmp_path / "lab" / "locked"
    _png(locked / "sub" / "a.png")
    stat = os.stat

    def refusing(path, *args, **kwargs):
        if os.fspath(path).startswith(str(locked) + os.sep):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", refusing)
    with pytest.raises(ValueError, match=r"--input .*locked/sub: cannot read: Permission denied$"):
        check_inputs([str(locked / "sub")])


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
    reason = "cannot read folder: Permission denied"
    assert result["skipped"] == [
        {"path": locked_path, "reason": reason, "folder": True, "parts": ["test"]},
        {
            "path": str(crops / "abnormal" / "linked" / "back"),
            "reason": "symlink loop, not followed",
            "folder": True,
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


def test_walk_reports_the_real_folders_the_files_lie_in(tmp_path):
    """What a tool that keeps paths inside their input allows: the root and each folder linked
    into it (the user put it there), not a folder a loop or an excluded link points to."""
    from sperm_d2.file_walk import walk_files

    root = tmp_path / "lab"
    _png(root / "a.png")
    _png(tmp_path / "out" / "sub" / "b.png")
    os.symlink(tmp_path / "out", root / "linked")
    os.symlink(root, tmp_path / "out" / "back")  # a loop: not entered
    os.symlink(tmp_path / "elsewhere", root / "gone")  # excluded
    _png(tmp_path / "elsewhere" / "c.png")
    real_roots: list[Path] = []
    files, _ = walk_files(root, exclude=[tmp_path / "elsewhere"], real_roots=real_roots)
    assert files == [root / "a.png", root / "linked" / "sub" / "b.png"]
    assert real_roots == [Path(os.path.realpath(p)) for p in (root, tmp_path / "out")]


def test_from_folders_takes_the_crops_of_folders_linked_into_the_input(tmp_path):
    """A class folder, or a folder in one, that the user linked into --input is part of it: its
    crops were all refused as path_escape ("links to ..."), though the walker had followed the
    link. A crop FILE linking out of the input is still refused, naming its target."""
    from sperm_d2.data.autoannotate import annotate_class_folders
    from sperm_d2.data.prepare import prepare_dataset

    crops, elsewhere = tmp_path / "crops", tmp_path / "elsewhere"
    _png(elsewhere / "01_Normal" / "a.png", 1)
    _png(elsewhere / "01_Normal" / "b.png", 2)
    crops.mkdir()
    os.symlink(elsewhere / "01_Normal", crops / "01_Normal")
    _png(crops / "abnormal" / "c.png", 3)
    _png(elsewhere / "more" / "d.png", 4)
    os.symlink(elsewhere / "more", crops / "abnormal" / "more")
    private = _png(tmp_path / "private" / "p.png", 5)
    os.symlink(private, crops / "abnormal" / "p.png")
    label_map = LabelMap.load(LABELS)
    problems = annotate_class_folders(crops, tmp_path / "lm", label_map)
    [escape] = [p for p in problems if p.level == "error"]
    assert (escape.kind, escape.file) == ("path_escape", "abnormal/p.png")
    assert escape.message.startswith(f"links to {os.path.realpath(private)}, outside --input")
    for json_file in ("01_Normal/a.json", "01_Normal/b.json", "abnormal/more/d.json"):
        assert (tmp_path / "lm" / json_file).is_file()
    report = prepare_dataset(crops, tmp_path / "root", label_map, ratios=(1.0,), from_folders=True)
    assert report["total"]["images"] == 4
    assert report["problems"]["counts"]["error"] == {"path_escape": 1}


def _linked_labelme(tmp_path: Path) -> tuple[Path, Path]:
    """A labelme folder of 4 images with ``more/`` linked in (2 images, one of whose imagePath
    leads out of it, to ``../secret.png``)."""
    from sperm_d2.data.synthetic_io import make_synthetic_dataset

    src = make_synthetic_dataset(tmp_path / "in", 4, 64, seed=3)
    outside = tmp_path / "outside" / "more"
    make_synthetic_dataset(outside, 2, 64, seed=4)
    shutil.move(outside / "syn_00001.png", tmp_path / "outside" / "secret.png")
    doc = json.loads((outside / "syn_00001.json").read_text())
    (outside / "syn_00001.json").write_text(json.dumps({**doc, "imagePath": "../secret.png"}))
    os.symlink(outside, src / "more")
    return src, outside


def test_prepare_labelme_takes_the_images_of_folders_linked_into_the_input(tmp_path):
    """labelme mode: the walker followed a linked folder, then the converter refused its images
    as outside --input; an imagePath leading out of the linked folder stays refused."""
    from sperm_d2.data.prepare import prepare_dataset

    src, _ = _linked_labelme(tmp_path)
    report = prepare_dataset(src, tmp_path / "root", LabelMap.load(LABELS), ratios=(1.0,))
    assert report["total"]["images"] == 5
    assert report["problems"]["counts"]["error"] == {"path_escape": 1}


def test_balance_counts_unreadable_folders_and_takes_linked_ones(tmp_path, locked):
    """balance_data: a folder it could not read was only logged, never in its skipped report;
    the images of a linked folder were refused as outside the input folder."""
    from sperm_d2.data.balance import balance_labelme

    src, _ = _linked_labelme(tmp_path)
    (src / "locked").mkdir()
    locked.add(str(src / "locked"))
    counts = balance_labelme(src, tmp_path / "bal", LabelMap.load(LABELS))
    skipped = counts["skipped"]
    assert skipped["folders"] == 1 and skipped["files"] == 1
    assert skipped["lines"][0] == "locked: cannot read folder: Permission denied"
    assert "more/syn_00001.json" in skipped["lines"][1] and "outside" in skipped["lines"][1]
    assert sum(counts["before"].values()) == 5


def _two_classes_one_folder(crops: Path, tmp_path: Path) -> None:
    """``abnormal/dup`` links to the class folder ``01_Normal``; ``01_Normal/x`` and
    ``abnormal/y`` link to one folder outside."""
    _png(tmp_path / "out" / "o.png", 7)
    os.symlink(crops / "01_Normal", crops / "abnormal" / "dup")
    os.symlink(tmp_path / "out", crops / "01_Normal" / "x")
    os.symlink(tmp_path / "out", crops / "abnormal" / "y")


def test_a_folder_linked_into_two_class_folders_is_listed_under_one(tmp_path):
    """A link in one class folder to a folder of another listed its crops under both classes:
    each real folder is walked once across the class folders, the other link reported."""
    from sperm_d2.data.autoannotate import annotate_class_folders
    from sperm_d2.evaluation.folders import list_class_folders

    from .test_evaluate_skips import _crops

    crops = _crops(tmp_path / "crops")
    _two_classes_one_folder(crops, tmp_path)
    label_map = LabelMap.load(LABELS)
    items, info = list_class_folders(crops, label_map)
    normal, abnormal = crops / "01_Normal", crops / "abnormal"
    assert sorted(items) == sorted(
        [(str(normal / f"c{i}.png"), "good") for i in range(2)]
        + [(str(normal / "x" / "o.png"), "good")]
        + [(str(abnormal / f"c{i}.png"), "bad") for i in range(2)]
    )
    assert [(s["path"], s["folder"]) for s in info["skipped"]] == [
        (str(abnormal / "dup"), True),
        (str(abnormal / "y"), True),
    ]
    assert f"listed already as {normal} (class folder 01_Normal)" in info["skipped"][0]["reason"]
    problems = annotate_class_folders(crops, tmp_path / "lm", label_map)
    assert [(p.level, p.kind, p.file) for p in problems if p.level == "error"] == [
        ("error", "duplicate_folder", "abnormal/dup"),
        ("error", "duplicate_folder", "abnormal/y"),
    ]
    assert not (tmp_path / "lm" / "abnormal" / "dup").exists()
    assert (tmp_path / "lm" / "01_Normal" / "x" / "o.json").is_file()


@pytest.mark.parametrize("part", ["test", "val"])
def test_all_skipped_counts_images_and_folders_apart(tmp_path, locked, part):
    """The message "all 3 images skipped" counted a folder that could not be walked as an image."""
    from sperm_d2.errors import InputError
    from sperm_d2.evaluation.job import run_evaluation

    from .test_evaluate_skips import WholeCropPredictor

    crops = tmp_path / "crops"
    for folder in ("01_Normal", "abnormal"):
        (crops / folder / "locked").mkdir(parents=True)
        (crops / folder / "e.png").write_bytes(b"")
    locked.add(str(crops / "abnormal" / "locked"))
    flag = "--val-folders" if part == "val" else "--folders"
    with pytest.raises(
        InputError,
        match=rf"^{flag} .*: nothing evaluated, all 2 images skipped and 1 folder\(s\) not "
        r"walked \(first: .*01_Normal/e.png: ",
    ):
        run_evaluation(
            WholeCropPredictor(),
            tmp_path / "ev",
            folders=str(crops),
            val_folders=str(crops) if part == "val" else None,
            label_map_path=str(LABELS),
        )


def test_infer_input_of_an_unreadable_folder_only_says_so(tmp_path, locked):
    """A folder whose only content is a folder it may not read was refused as "folder holds no
    image or video", not for what hid its images."""
    from sperm_d2.inference.sources import check_inputs

    (tmp_path / "lab" / "locked").mkdir(parents=True)
    locked.add(str(tmp_path / "lab" / "locked"))
    with pytest.raises(
        ValueError,
        match=r"^--input .*lab: no image or video found: .*lab/locked: cannot read folder: "
        r"Permission denied$",
    ):
        check_inputs([str(tmp_path / "lab")])
