"""prepare_dataset end to end: splits, report, duplicates, ids, registration round trip, CLI."""

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sperm_d2.data.labels import LabelMap
from sperm_d2.data.prepare import exit_code, prepare_dataset
from sperm_d2.data.synthetic_io import make_synthetic_dataset

from .conftest import REPO

LM = LabelMap.load(REPO / "configs/labels/default.yaml")


@pytest.fixture(scope="module")
def labelme_dir(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("syn") / "labelme", 20, 96, seed=5)


def _digest(folder: Path) -> dict:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha1(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_prepare_writes_splits_report_and_keeps_inputs(labelme_dir, tmp_path) -> None:
    before = _digest(labelme_dir)
    report = prepare_dataset(labelme_dir, tmp_path / "root", LM, ratios=(0.6, 0.2, 0.2), seed=0)
    assert _digest(labelme_dir) == before
    ann = tmp_path / "root" / "annotations"
    splits = {s: _load(ann / f"{s}.json") for s in ("train", "val", "test")}
    assert [len(splits[s]["images"]) for s in splits] == [12, 4, 4]
    ids = [img["id"] for s in splits.values() for img in s["images"]]
    assert sorted(ids) == list(range(1, 21))  # global ids, no clash between splits
    assert all(c["id"] == i for s in splits.values() for i, c in zip((1, 2), s["categories"]))
    n_anns = sum(len(s["annotations"]) for s in splits.values())
    ann_ids = sorted(a["id"] for s in splits.values() for a in s["annotations"])
    assert ann_ids == list(range(1, n_anns + 1))
    assert report["files"] == {"found": 20, "converted": 20, "skipped": 0}
    assert sum(report["total"]["instances"].values()) == n_anns
    assert _load(ann / "report.json")["splits"]["train"]["images"] == 12
    assert exit_code(report) == 0
    again = prepare_dataset(labelme_dir, tmp_path / "root2", LM, ratios=(0.6, 0.2, 0.2), seed=0)
    assert _load(tmp_path / "root2/annotations/train.json")["images"] == splits["train"]["images"]
    assert again["splits"] == report["splits"]


def test_bad_files_are_skipped_and_counted(labelme_dir, tmp_path) -> None:
    src = tmp_path / "in"
    shutil.copytree(labelme_dir, src)
    (src / "broken.json").write_text("{")
    dup = _load(src / "syn_00001.json")
    (src / "zz_dup.json").write_text(json.dumps(dup))  # names the same image
    shutil.copy(src / "syn_00002.png", src / "copy.png")  # byte-identical image
    dup2 = dict(_load(src / "syn_00002.json"), imagePath="copy.png")
    (src / "zz_dup2.json").write_text(json.dumps(dup2))
    report = prepare_dataset(src, tmp_path / "root", LM, ratios=(0.8, 0.2))
    assert report["files"] == {"found": 23, "converted": 20, "skipped": 3}
    assert report["problems"]["counts"]["error"] == {"duplicate_image": 2, "invalid_json": 1}
    assert exit_code(report) == 1
    assert not (tmp_path / "root/annotations/test.json").exists()


def test_category_ids_fixed_even_if_only_bad_appears(tmp_path) -> None:
    from sperm_d2.data.labelme_io import write_labelme_json

    src = make_synthetic_dataset(tmp_path / "in", 3, 96, seed=1)
    for j in src.glob("*.json"):  # relabel every head as bad
        doc = _load(j)
        for s in doc["shapes"]:
            s["label"] = "pyriform"
        write_labelme_json(j, src / doc["imagePath"], 96, 96, doc["shapes"])
    prepare_dataset(src, tmp_path / "root", LM, ratios=(1.0,))
    coco = _load(tmp_path / "root/annotations/train.json")
    assert {a["category_id"] for a in coco["annotations"]} == {2}
    assert coco["categories"][1] == {"id": 2, "name": "bad", "supercategory": "sperm"}


def test_kfold_files_and_stale_splits_removed(labelme_dir, tmp_path) -> None:
    root = tmp_path / "root"
    prepare_dataset(labelme_dir, root, LM, ratios=(0.7, 0.15, 0.15))
    prepare_dataset(labelme_dir, root, LM, ratios=(0.8, 0.2), kfold=4)
    names = sorted(p.name for p in (root / "annotations").glob("*.json"))
    folds = [f"fold{i}_{s}.json" for i in range(4) for s in ("train", "val")]
    assert names == sorted(["report.json"] + folds)  # the old train/val/test are gone
    vals = [
        {i["file_name"] for i in _load(root / f"annotations/fold{f}_val.json")["images"]}
        for f in range(4)
    ]
    assert sum(map(len, vals)) == 20 and len(set().union(*vals)) == 20


def test_load_coco_json_round_trip_and_registration(labelme_dir, tmp_path) -> None:
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from sperm_d2.config import get_sperm_cfg
    from sperm_d2.data import register_sperm_datasets

    root = tmp_path / "root"
    prepare_dataset(labelme_dir, root, LM, ratios=(0.5, 0.5))
    (root / "annotations" / "extra.json").write_bytes((root / "annotations/val.json").read_bytes())
    cfg = get_sperm_cfg()
    cfg.SPERM.DATA_ROOT, cfg.SPERM.DATASET_PREFIX = str(root), "rt_test"
    try:
        names = register_sperm_datasets(cfg)
        assert names == ["rt_test_extra", "rt_test_train", "rt_test_val"]
        assert register_sperm_datasets(cfg) == names  # idempotent
        dicts = DatasetCatalog.get("rt_test_train") + DatasetCatalog.get("rt_test_val")
        meta = MetadataCatalog.get("rt_test_train")
        assert meta.thing_classes == ["good", "bad"] and meta.evaluator_type == "coco"
        assert meta.thing_colors == [(40, 200, 80), (230, 50, 50)]
        src = {j.stem: _load(j) for j in labelme_dir.glob("*.json")}
        assert len(dicts) == 20
        for d in dicts:
            assert Path(d["file_name"]).is_file()
            doc = src[Path(d["file_name"]).stem]
            kinds = sorted(s["label"] for s in doc["shapes"])
            want = sorted(0 if k == "normal" else 1 for k in kinds)
            assert sorted(a["category_id"] for a in d["annotations"]) == want
            for a, s in zip(d["annotations"], doc["shapes"]):
                assert a["segmentation"][0] == pytest.approx(sum(s["points"], []), abs=0.01)
    finally:
        for n in [n for n in DatasetCatalog.list() if n.startswith("rt_test_")]:
            DatasetCatalog.remove(n)
            MetadataCatalog.remove(n)


def _run(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_cli_make_synthetic_and_prepare(tmp_path) -> None:
    p = _run(
        "tools/make_synthetic.py", "--output", tmp_path / "syn", "--num-images", 6, "--size", 96
    )
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "syn").glob("*.png"))) == 6
    p = _run(
        "tools/prepare_data.py",
        "--input",
        tmp_path / "syn",
        "--output",
        tmp_path / "root",
        "--split",
        "0.5,0.5",
        "--workers",
        2,
    )
    assert p.returncode == 0, p.stderr
    assert "split" in p.stdout and "total" in p.stdout
    assert (tmp_path / "root/annotations/val.json").is_file()
    doc = _load(tmp_path / "syn/syn_00000.json")
    doc["shapes"][0]["points"][0] = [-5, -5]  # a warning: clipped
    (tmp_path / "syn/syn_00000.json").write_text(json.dumps(doc))
    args = ["tools/prepare_data.py", "--input", tmp_path / "syn", "--output", tmp_path / "root"]
    assert _run(*args).returncode == 0
    strict = _run(*args, "--strict")
    assert strict.returncode == 1 and "clipped" in strict.stdout
    missing = _run(
        "tools/prepare_data.py", "--input", tmp_path / "nope", "--output", tmp_path / "r"
    )
    assert missing.returncode == 2 and "nope" in missing.stderr


def test_cli_visualize_data(labelme_dir, tmp_path) -> None:
    root = tmp_path / "root"
    prepare_dataset(labelme_dir, root, LM, ratios=(0.5, 0.5))
    p = _run(
        "tools/visualize_data.py",
        "--split",
        "val",
        "--source",
        "augmented",
        "--output",
        tmp_path / "vis",
        "--num",
        2,
        "SPERM.DATA_ROOT",
        root,
        "SPERM.AUG.ROT90",
        "True",
        "INPUT.MIN_SIZE_TRAIN",
        "(96,)",
    )
    assert p.returncode == 0, p.stderr
    assert len(list((tmp_path / "vis").glob("*.png"))) == 2


@pytest.fixture
def vis_data(labelme_dir, tmp_path):
    """A copy of the labelme set prepared into root/ (its train split registered by the tool
    as ``vis_train``, removed again afterwards)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    src = tmp_path / "labelme"
    shutil.copytree(labelme_dir, src)
    prepare_dataset(src, tmp_path / "root", LM, ratios=(0.5, 0.5))
    yield src, tmp_path / "root"
    for name in ("vis_train", "vis_val", "vis_empty"):
        if name in DatasetCatalog:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def _visualize(root: Path, output: Path, *args: str):
    from .hostile_inputs import load_tool, run_main

    argv = ["--split", "train", "--output", str(output), *args]
    opts = ["SPERM.DATA_ROOT", str(root), "SPERM.DATASET_PREFIX", "vis", "MODEL.DEVICE", "cpu"]
    return run_main(load_tool("visualize_data").main, argv + ["--opts", *opts])


def test_visualize_skips_an_unreadable_image_and_lists_it(vis_data, tmp_path) -> None:
    src, root = vis_data
    train = _load(root / "annotations" / "train.json")["images"]
    bad = (root / train[0]["file_name"]).resolve()
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    before = _digest(src)
    res = _visualize(root, tmp_path / "vis", "--num", "3")
    assert res.exception is None and "Traceback" not in res.stderr, res.stderr
    assert res.code == 1, res.stderr
    assert len(list((tmp_path / "vis").glob("*.png"))) == 2
    assert _digest(src) == before


@pytest.mark.parametrize(
    "args, culprit",
    [
        (["--num", "0"], "--num 0"),
        (["--num", "-5"], "--num -5"),
        (["--source", "augmented", "--seed", "-1"], "--seed -1"),
        (["--output", "{src}/syn_00000.png"], "not a folder"),
        (["--output", "{src}"], "holds images of vis_train"),  # overlays among the images
        (["--split", "empty"], "holds no image"),
    ],
    ids=["num_zero", "num_negative", "seed_negative", "output_a_file", "output_inputs", "empty"],
)
def test_visualize_refuses_in_one_line_and_writes_nothing(vis_data, tmp_path, args, culprit):
    """They were tracebacks (--num -5, --seed -1, an output that is a file), a run drawing
    nothing with exit 0 (--num 0, an empty split), or overlays written among the images."""
    src, root = vis_data
    empty = _load(root / "annotations" / "train.json")
    empty["images"], empty["annotations"] = [], []
    (root / "annotations" / "empty.json").write_text(json.dumps(empty))
    before = _digest(tmp_path)
    res = _visualize(root, tmp_path / "vis", *[a.format(src=src) for a in args])
    assert res.exception is None and "Traceback" not in res.stderr, res.stderr
    (line,) = res.lines("visualize_data.py")
    assert culprit in line and res.code == 2, line
    assert _digest(tmp_path) == before and not (tmp_path / "vis").exists()
