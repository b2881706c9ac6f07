"""Failure classes of issue 22's second hidden corpus, fixed at their cause (fixtures built here).

1. orientation applied twice; 2. tiny or extreme images; 3. formats one tool accepts and another
drops; 4. folder debris; 5. output name collisions; 6. weights that fit the model only in part.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sperm_d2.data.convert import ConvertContext, convert_labelme_file
from sperm_d2.data.labelme_io import write_labelme_json
from sperm_d2.data.labels import LabelMap
from sperm_d2.image_io import preoriented_exif_tag, read_image

from .conftest import REPO
from .hostile_inputs import load_tool, run_main
from .test_hostile_inputs_infer import (
    EVALUATE,
    FAST,
    GRADER,
    INFER,
    INSTANT,
    make_workspace,
    save_run,
)

PREPARE = load_tool("prepare_data")


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    """A detector run folder of the instant config with random weights."""
    run = tmp_path_factory.mktemp("models") / "detector"
    save_run(run, INSTANT)
    return run


LABELS = REPO / "configs" / "labels" / "default.yaml"

# --- 1. orientation ----------------------------------------------------------------------------

#: the upright image (as a viewer and labelme show it) is 40 wide, 100 high, a bright head at
#: x 5..35, y 10..30; stored turned, with EXIF orientation 6 ("rotate 90° clockwise to view")
UPRIGHT_W, UPRIGHT_H = 40, 100
HEAD = [[5, 10], [35, 10], [35, 30], [5, 30]]


def _upright() -> np.ndarray:
    img = np.full((UPRIGHT_H, UPRIGHT_W, 3), 30, np.uint8)
    img[10:30, 5:35] = 230
    return img


def _oriented_image(folder: Path, fmt: str, ext: str) -> Path:
    """The upright image stored 90° counter-clockwise with orientation tag 6, and a labelme
    file drawn on the upright image (as labelme shows it)."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = np.ascontiguousarray(np.rot90(_upright(), 1))  # 100 wide, 40 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6
    path = folder / f"turned.{ext}"
    Image.fromarray(raw[:, :, ::-1]).save(path, format=fmt, exif=exif, **_quality(fmt))
    shapes = [{"label": "good", "points": HEAD, "shape_type": "polygon"}]
    write_labelme_json(folder / "turned.json", path, UPRIGHT_H, UPRIGHT_W, shapes)
    return path


def _quality(fmt: str) -> dict:
    return {"quality": 95} if fmt == "JPEG" else {}


def _convert(folder: Path):
    ctx = ConvertContext(folder, folder, LabelMap.load(LABELS))
    return convert_labelme_file(folder / "turned.json", ctx)


def _head_is_bright(image: np.ndarray) -> bool:
    return image.shape[:2] == (UPRIGHT_H, UPRIGHT_W) and image[12:28, 7:33].mean() > 200


@pytest.mark.parametrize("fmt,ext", [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_orientation_applied_once_by_every_reader(tmp_path, fmt, ext):
    """Conversion's size check, detectron2's training reader and inference's reader all see the
    upright image the annotation was drawn on: the head's pixels are under its mask."""
    from detectron2.data.detection_utils import read_image as d2_read_image

    path = _oriented_image(tmp_path, fmt, ext)
    res = _convert(tmp_path)
    assert res.ok, res.problems
    assert (res.width, res.height) == (UPRIGHT_W, UPRIGHT_H)
    assert _head_is_bright(d2_read_image(str(path), format="BGR"))  # training
    assert _head_is_bright(read_image(path)[0])  # inference and evaluation
    assert preoriented_exif_tag(path) is None


def test_tiff_turned_by_pillow_on_open_is_refused_in_one_line(tmp_path):
    """Pillow turns a TIFF upright on open and still reports its tag, so detectron2's training
    reader turns it again. Before: the size check turned it twice too, so a labelme file drawn
    on the upright image was refused as a size mismatch, and one stating the twice-turned size
    trained on a turned image. Now: refused, naming the orientation and what to do; inference
    reads it upright."""
    path = _oriented_image(tmp_path, "TIFF", "tif")
    res = _convert(tmp_path)
    assert not res.ok and len(res.problems) == 1
    message = res.problems[0].message
    assert "orientation 6" in message and "upright" in message and "turned.tif" in message
    assert _head_is_bright(read_image(path)[0])
    assert preoriented_exif_tag(path) == 6


def test_labelme_export_of_a_turned_tiff_is_accepted_by_prepare(tmp_path):
    """infer.py --labelme writes such a TIFF upright without its tag: prepare_data accepts its
    own export and training reads it upright."""
    from detectron2.data.detection_utils import read_image as d2_read_image

    from sperm_d2.inference.labelme_export import export_labelme
    from sperm_d2.inference.types import empty_prediction

    src = _oriented_image(tmp_path / "in", "TIFF", "tif")
    image = read_image(src)[0]
    pred = empty_prediction(str(src), image.shape[:2], ("good", "bad"))
    out = tmp_path / "export"
    export_labelme(pred, out / "turned.tif", image_src=src)
    assert preoriented_exif_tag(out / "turned.tif") is None
    res = _convert(out)
    assert res.ok, res.problems
    assert (res.width, res.height) == (UPRIGHT_W, UPRIGHT_H)
    assert _head_is_bright(d2_read_image(str(out / "turned.tif"), format="BGR"))
    assert Image.open(src).getexif().get(0x0112) == 6  # the input is untouched


def test_labelme_export_of_a_16_bit_grey_png_is_accepted_by_prepare(tmp_path):
    """prepare_data refuses a 16-bit grey image (training would read it clipped): infer.py
    --labelme writes the image inference decoded (8-bit) instead of a byte copy, so its own export
    goes back through prepare_data, and the annotator sees what inference saw."""
    from sperm_d2.data.image_checks import stored_format_problem
    from sperm_d2.inference.labelme_export import export_labelme
    from sperm_d2.inference.types import empty_prediction

    from .hostile_inputs import gray16_png

    src = tmp_path / "in" / "deep.png"
    src.parent.mkdir()
    gray16_png(src)
    before = src.read_bytes()
    assert "16-bit" in stored_format_problem(src)
    image = read_image(src)[0]
    out = tmp_path / "export"
    json_path = export_labelme(
        empty_prediction(str(src), image.shape[:2], ("good", "bad")), out / "deep.png", src
    )
    ctx = ConvertContext(out, out, LabelMap.load(LABELS))
    res = convert_labelme_file(json_path, ctx)
    assert res.ok, [str(p) for p in res.problems]
    assert stored_format_problem(out / "deep.png") is None
    assert np.array_equal(read_image(out / "deep.png")[0], image)  # what inference read
    assert src.read_bytes() == before  # the input is untouched


def test_a_corrupt_image_is_no_question_of_format(tmp_path):
    """Only how an image is stored makes the export decode it; a file PIL cannot read is left to
    the converter, which says why it refuses it."""
    from sperm_d2.data.image_checks import stored_format_problem

    (tmp_path / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    assert stored_format_problem(tmp_path / "fake.png") is None
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "ok.png")
    assert stored_format_problem(tmp_path / "ok.png") is None


# --- 2. tiny or extreme images -----------------------------------------------------------------

#: (name, height, width): a 1-px image, a 10000x20 strip, one side below the limit
EXTREME = [("dot", 1, 1), ("strip", 20, 10000), ("sliver", 64, 8)]


def _extreme_labelme(folder: Path, name: str, h: int, w: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(folder / f"{name}.png")
    write_labelme_json(folder / f"{name}.json", folder / f"{name}.png", h, w, [])


@pytest.mark.parametrize("name,h,w", EXTREME)
def test_prepare_refuses_tiny_or_extreme_images_naming_file_and_limit(tmp_path, name, h, w):
    """Before: accepted, then training's final evaluation crashed on them. Now: refused."""
    _extreme_labelme(tmp_path, name, h, w)
    ctx = ConvertContext(tmp_path, tmp_path, LabelMap.load(LABELS))
    res = convert_labelme_file(tmp_path / f"{name}.json", ctx)
    assert not res.ok and len(res.problems) == 1
    message = res.problems[0].message
    assert f"{name}.png" in message and f"{w}x{h}" in message
    assert ("16 px" in message) if min(h, w) < 16 else ("20:1" in message)


def test_prepare_from_folders_refuses_tiny_crops_in_one_line_each(tmp_path):
    from sperm_d2.data.synthetic_io import make_synthetic_crops

    make_synthetic_crops(tmp_path / "crops", 12, size=64)
    crops = tmp_path / "crops" / "val"
    folder = sorted(p for p in crops.iterdir() if p.is_dir())[0]
    for name, h, w in EXTREME[:2]:
        _png(folder / f"{name}.png", h, w)
    argv = ["--input", str(crops), "--from-folders", "--output", str(tmp_path / "root")]
    res = run_main(PREPARE.main, [*argv, "--split", "0.5,0.5"])
    assert res.exception is None and res.code == 1, (res.exception, res.stderr)
    lines = res.lines("prepare_data.py")
    for name, text in (("dot", "16 px"), ("strip", "20:1")):
        [line] = [line for line in lines if f"/{name}." in line]
        assert line.startswith("prepare_data.py: ERROR ") and text in line, line


def _png(path: Path, h: int, w: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)
    return path


def test_infer_skips_and_lists_tiny_or_extreme_images(tmp_path, detector):
    """Before: a 1-px or 10000x20 image stopped the whole infer.py run. Now: skipped and listed
    with the limit, the other images processed, exit 1."""
    ws = make_workspace(tmp_path)
    for name, h, w in EXTREME[:2]:
        _png(ws / "sample" / f"{name}.png", h, w)
    argv = ["--run", str(detector), "--grader", "none", "--input", str(ws / "sample")]
    res = run_main(INFER.main, [*argv, "--output", str(ws / "out"), *FAST])
    assert res.exception is None and res.code == 1, (res.exception, res.stderr[-2000:])
    summary = json.loads((ws / "out" / "summary.json").read_text())
    assert summary["processed"] == 2
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert "16 px" in reasons["dot.png"] and "20:1" in reasons["strip.png"]


def test_evaluate_folders_skips_and_lists_tiny_images(tmp_path, detector):
    ws = make_workspace(tmp_path)
    _png(ws / "crops" / "abnormal" / "dot.png", 1, 1)
    argv = ["--run", str(detector), "--grader", "none", "--folders", str(ws / "crops")]
    argv += ["--label-map", str(LABELS), "--output", str(ws / "ev"), "--score-floor", "0", *FAST]
    res = run_main(EVALUATE.main, argv)
    assert res.exception is None and res.code == 1, (res.exception, res.stderr[-2000:])
    metrics = json.loads((ws / "ev" / "metrics.json").read_text())
    [skipped] = metrics["skipped"]
    assert skipped["path"].endswith("dot.png") and "16 px" in skipped["reason"]
    assert metrics["test"]["images"] == 4


# --- 3. one list of image formats ----------------------------------------------------------------


def _gif(path: Path, h: int = 64, w: int = 48) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(path)
    return path


def test_gif_is_read_alike_by_every_tool(tmp_path):
    """Before: prepare_data accepted a labelme file on a GIF while infer.py, evaluate.py and
    --from-folders dropped GIFs in a folder without a word. Now GIF is in the one list."""
    from detectron2.data.detection_utils import read_image as d2_read_image

    from sperm_d2.data.labels import LabelMap
    from sperm_d2.evaluation.folders import list_class_folders
    from sperm_d2.inference.sources import expand_inputs

    gif = _gif(tmp_path / "lab" / "cell.gif")
    write_labelme_json(tmp_path / "lab" / "cell.json", gif, 64, 48, [])
    ctx = ConvertContext(tmp_path / "lab", tmp_path / "lab", LabelMap.load(LABELS))
    assert convert_labelme_file(tmp_path / "lab" / "cell.json", ctx).ok  # prepare_data
    assert np.array_equal(d2_read_image(str(gif), format="BGR"), read_image(gif)[0])  # train/infer
    files, problems = expand_inputs([str(tmp_path / "lab")])  # infer.py folder expansion
    assert [Path(f.path).name for f in files] == ["cell.gif"] and not problems
    _gif(tmp_path / "crops" / "abnormal" / "c.gif")
    items, _ = list_class_folders(tmp_path / "crops", LabelMap.load(LABELS))  # evaluate.py
    assert [Path(p).name for p, _ in items] == ["c.gif"]


def test_from_folders_reads_gif_crops(tmp_path):
    from sperm_d2.data.synthetic_io import make_synthetic_crops

    make_synthetic_crops(tmp_path / "crops", 12, size=64)
    crops = tmp_path / "crops" / "val"
    folder = sorted(p for p in crops.iterdir() if p.is_dir())[0]
    png = sorted(folder.glob("*.png"))[0]
    Image.open(png).convert("RGB").save(png.with_suffix(".gif"))
    png.unlink()
    argv = ["--input", str(crops), "--from-folders", "--output", str(tmp_path / "root")]
    res = run_main(PREPARE.main, [*argv, "--split", "0.5,0.5"])
    assert res.code in (0, 1), res.stderr
    written = {
        Path(img["file_name"]).name
        for split in ("train", "val")
        for img in json.loads((tmp_path / f"root/annotations/{split}.json").read_text())["images"]
    }
    assert png.with_suffix(".gif").name in written


def test_labelme_image_of_another_format_is_refused_naming_the_list(tmp_path):
    """A format PIL reads but inference's list does not (PPM): refused at conversion, not
    trained on and then dropped by infer.py."""
    path = tmp_path / "cell.ppm"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(path)
    write_labelme_json(tmp_path / "cell.json", path, 32, 32, [])
    res = convert_labelme_file(
        tmp_path / "cell.json", ConvertContext(tmp_path, tmp_path, LabelMap.load(LABELS))
    )
    assert not res.ok and ".ppm" in res.problems[0].message and ".gif" in res.problems[0].message


# --- 4. folder debris -----------------------------------------------------------------------------

#: what NAS boxes, file managers and archivers leave in a class folder (relative to it)
DEBRIS = [
    "@eaDir/c0.png/SYNOFILE_THUMB_M.png",
    ".thumbnails/c0.png",
    "__MACOSX/c0.png",
    "._c0.png",
    ".hidden/c0.png",
    "Thumbs.db",
    "#recycle/old.png",
]


def _with_debris(folder: Path, good: Path) -> None:
    for rel in DEBRIS:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(good.read_bytes())


def test_every_folder_walk_ignores_debris(tmp_path):
    """Before: infer.py read @eaDir/ and __MACOSX/ thumbnails as samples, evaluate.py --folders
    and --from-folders every thumbnail (crops leaking between splits, samples counted twice).
    Now one rule (sperm_d2.image_io.in_debris) in every walk."""
    from sperm_d2.data.prepare import find_labelme_files
    from sperm_d2.evaluation.folders import list_class_folders
    from sperm_d2.inference.sources import expand_inputs

    crops = tmp_path / "crops"
    good = _png(crops / "abnormal" / "c0.png", 32, 32)
    _with_debris(crops / "abnormal", good)
    _with_debris(crops, good)  # debris beside the class folders too
    files, _ = expand_inputs([str(crops)])  # infer.py, a folder
    assert [Path(f.path).name for f in files] == ["c0.png"] and files[0].path == str(good)
    files, _ = expand_inputs([str(crops / "**" / "*.png")])  # infer.py, a recursive glob
    assert [f.path for f in files] == [str(good)]
    items, info = list_class_folders(crops, LabelMap.load(LABELS))  # evaluate.py --folders
    assert [p for p, _ in items] == [str(good)] and not info["ignored_folders"]
    labelme = tmp_path / "labelme"
    write_labelme_json(labelme / "a.json", _png(labelme / "a.png", 32, 32), 32, 32, [])
    for rel in ("@eaDir/a.json", "__MACOSX/a.json", "._a.json", ".thumbnails/a.json"):
        (labelme / rel).parent.mkdir(parents=True, exist_ok=True)
        (labelme / rel).write_text((labelme / "a.json").read_text())
    assert find_labelme_files(labelme) == [labelme / "a.json"]  # prepare_data.py


def test_from_folders_ignores_debris(tmp_path):
    from sperm_d2.data.synthetic_io import make_synthetic_crops

    make_synthetic_crops(tmp_path / "crops", 12, size=64)
    crops = tmp_path / "crops" / "val"
    n = len(list(crops.glob("*/*.png")))
    for folder in [p for p in crops.iterdir() if p.is_dir()]:
        _with_debris(folder, sorted(folder.glob("*.png"))[0])
    _with_debris(crops, sorted(crops.rglob("*.png"))[0])
    argv = ["--input", str(crops), "--from-folders", "--output", str(tmp_path / "root")]
    res = run_main(PREPARE.main, [*argv, "--split", "0.5,0.5"])
    assert res.code == 0, res.stderr
    names = [
        img["file_name"]
        for split in ("train", "val")
        for img in json.loads((tmp_path / f"root/annotations/{split}.json").read_text())["images"]
    ]
    assert len(names) == n and not [x for x in names if "@eaDir" in x or "/." in x or "MACOSX" in x]


# --- 5. output names ------------------------------------------------------------------------------


def test_output_names_and_samples_are_distinct(tmp_path):
    """Before: x.png + x.jpg wrote one overlays/x.png; a/x.png and b/x.png named as files one
    x.png; two folders named sample were one sample (counted together in report.html)."""
    from sperm_d2.inference.sources import expand_inputs

    for rel in ("s/x.png", "s/x.jpg", "a/x.png", "b/x.png", "r1/sample/y.png", "r2/sample/y.png"):
        _png(tmp_path / rel, 32, 32)
    specs = ["s", "a/x.png", "b/x.png", "r1/sample", "r2/sample"]
    files, problems = expand_inputs([str(tmp_path / s) for s in specs])
    assert not problems and len(files) == 6
    stems = [str(Path(f.relpath).with_suffix("")).casefold() for f in files]
    assert len(set(stems)) == 6, [f.relpath for f in files]
    by_path = {str(Path(f.path).relative_to(tmp_path)): f for f in files}
    assert (
        by_path["s/x.png"].relpath == "s/x_png.png" and by_path["s/x.jpg"].relpath == "s/x_jpg.jpg"
    )
    assert by_path["a/x.png"].relpath == "a/x.png" and by_path["b/x.png"].relpath == "b/x.png"
    assert by_path["r1/sample/y.png"].group == "r1/sample"
    assert by_path["r2/sample/y.png"].group == "r2/sample"
    # names that do not collide stay as they were
    files, _ = expand_inputs([str(tmp_path / "a")])
    assert [(f.group, f.relpath) for f in files] == [("a", "a/x.png")]


def test_infer_writes_every_colliding_input_and_a_245_character_name(tmp_path, detector):
    """Before: one overlay for x.png + x.jpg, and a 245-character name stopped the whole run
    (its temporary file name was too long). Now: one output per input, exit 0."""
    ws = tmp_path / "ws"
    long_name = "h" * 241 + ".png"
    for rel in ("s/x.png", "s/x.jpg", "r1/sample/y.png", "r2/sample/y.png", f"s/{long_name}"):
        _png(ws / rel, 64, 64)
    inputs = [str(ws / s) for s in ("s", "r1/sample", "r2/sample")]
    argv = ["--run", str(detector), "--grader", "none", "--input", *inputs, "--labelme"]
    res = run_main(INFER.main, [*argv, "--output", str(ws / "out"), *FAST])
    assert res.exception is None and res.code == 0, (res.exception, res.stderr[-2000:])
    overlays = sorted(
        str(p.relative_to(ws / "out/overlays")) for p in (ws / "out/overlays").rglob("*.*")
    )
    assert overlays == sorted(
        ["r1/sample/y.png", "r2/sample/y.png", "s/x_jpg.png", "s/x_png.png", f"s/{long_name}"]
    )
    assert len(list((ws / "out/labelme").rglob("*.json"))) == 5
    summary = json.loads((ws / "out" / "summary.json").read_text())
    assert summary["processed"] == 5


def test_a_second_run_into_an_output_being_written_is_refused(tmp_path, detector):
    """Before: the second run's output silently replaced the first's. Now: one line, exit 2."""
    from sperm_d2.output_folder import lock_output, unlock_output

    ws = make_workspace(tmp_path)
    out = ws / "out"
    held = lock_output(out)  # what a live infer.py run holds while it writes
    try:
        argv = ["--run", str(detector), "--grader", "none", "--input", str(ws / "sample")]
        res = run_main(INFER.main, [*argv, "--output", str(out), *FAST])
    finally:
        unlock_output(out, held)
    assert res.exception is None and res.code == 2
    [line] = res.lines("infer.py")
    assert "--output" in line and "another run is writing" in line and not out.exists()


# --- 6. weights that fit the model only in part --------------------------------------------


def _weights(path: Path, config: str, opts: list[str] = ()) -> Path:
    from detectron2.modeling import build_model

    from sperm_d2.config import setup_cfg

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": build_model(setup_cfg(config, list(opts))).state_dict()}, path)
    return path


THREE_CLASSES = ["SPERM.CLASSES", "['good', 'bad', 'amorphous']"]


@pytest.mark.parametrize("kind", ["class_count", "architecture"])
def test_infer_and_evaluate_refuse_weights_that_fit_in_part(tmp_path, kind):
    """Before: loaded with random heads, exit 0. Now: one line naming the file and layers."""
    ws = make_workspace(tmp_path)
    if kind == "class_count":
        weights = _weights(ws / "w" / "three.pth", INSTANT, THREE_CLASSES)
        layer = "roi_heads.box_predictor.cls_score"
    else:  # R-101's weights for the R-50 model: its extra res4 blocks do not fit
        weights = _weights(ws / "w" / "r101.pth", INSTANT, ["MODEL.RESNETS.DEPTH", "101"])
        layer = "backbone.bottom_up.res4.6"
    model = ["--config-file", INSTANT, "--weights", str(weights), "--grader", "none"]
    infer = [*model, "--input", str(ws / "sample"), "--output", str(ws / "out"), *FAST]
    evaluate = [*model, "--folders", str(ws / "crops"), "--label-map", str(LABELS)]
    evaluate += ["--output", str(ws / "ev"), *FAST]
    for tool, argv, out in (("infer.py", infer, "out"), ("evaluate.py", evaluate, "ev")):
        main = INFER.main if tool == "infer.py" else EVALUATE.main
        res = run_main(main, argv)
        assert res.exception is None and res.code == 2, (tool, res.exception, res.stderr[-1500:])
        [line] = res.lines(tool)
        assert str(weights) in line and "only in part" in line and layer in line, line
        assert not (ws / out).exists()


def test_training_may_fine_tune_from_another_class_count_and_names_fresh_layers(tmp_path, caplog):
    import logging

    from detectron2.modeling import build_model

    from sperm_d2.config import setup_cfg
    from sperm_d2.engine.checkpoint import SpermCheckpointer

    weights = _weights(tmp_path / "three.pth", INSTANT, THREE_CLASSES)
    model = build_model(setup_cfg(INSTANT))
    with caplog.at_level(logging.WARNING):
        SpermCheckpointer(model).load(str(weights))  # no error: fine-tuning may start here
    text = caplog.text
    for layer in ("roi_heads.box_predictor.cls_score", "roi_heads.box_predictor.bbox_pred"):
        assert layer in text
    assert "roi_heads.mask_head.predictor" in text  # one mask per class: fresh too


def test_weights_of_another_model_altogether_stay_refused(tmp_path):
    """The grader's weights for the detector share no layer: refused as before (one line)."""
    ws = make_workspace(tmp_path)
    weights = _weights(ws / "w" / "grader.pth", GRADER)
    argv = ["--config-file", INSTANT, "--weights", str(weights), "--grader", "none"]
    argv += ["--input", str(ws / "sample"), "--output", str(ws / "out"), *FAST]
    res = run_main(INFER.main, argv)
    assert res.exception is None and res.code == 2
    [line] = res.lines("infer.py")
    assert str(weights) in line and "no weights of this model" in line


def test_a_split_written_before_the_size_limit_is_refused_in_one_line(tmp_path):
    """A COCO split an earlier prepare_data.py wrote with a 1-px image: training and evaluate.py
    --dataset refuse it in one line when the split is read (it crashed training's evaluation)."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    from sperm_d2.data.register import load_registered, register_split
    from sperm_d2.errors import InputError

    _png(tmp_path / "dot.png", 1, 1)
    coco = {
        "images": [{"id": 1, "file_name": "dot.png", "width": 1, "height": 1}],
        "annotations": [],
        "categories": [{"id": 1, "name": "good"}, {"id": 2, "name": "bad"}],
    }
    (tmp_path / "test.json").write_text(json.dumps(coco))
    name = register_split("tiny_split_test", tmp_path / "test.json", tmp_path, ["good", "bad"])
    try:
        with pytest.raises(InputError, match="dot.png is 1x1 px, below the smallest side") as e:
            load_registered(name)
        assert "\n" not in str(e.value) and "test.json" in str(e.value)
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
