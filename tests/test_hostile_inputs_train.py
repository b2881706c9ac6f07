"""tools/train_net.py against malformed configs, overrides, datasets and weights (issue 11).

Every case must fail before the run folder exists: the exit code, exactly one
``train_net.py:`` line on stderr naming the culprit, no exception escaping ``main`` (no
traceback), the config files byte-identical, and no OUTPUT_DIR (no config.yaml/log.txt of a run
that never started). ``main(argv)`` runs in-process; nothing here builds a model or trains.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch

from .conftest import REPO, split_opts
from .hostile_inputs import load_tool, run_main, tree_hashes

TRAIN_NET = load_tool("train_net")
INSTANT = REPO / "configs" / "quick_schedules" / "sperm_mask_rcnn_R_50_FPN_instant_test.yaml"


def _yaml(text: str | bytes, name: str = "bad.yaml"):
    def fn(tmp: Path) -> list[str]:
        p = tmp / "cfg" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["--config-file", str(p)]

    return fn


def _cycle(tmp: Path) -> list[str]:
    (tmp / "cfg").mkdir(exist_ok=True)
    (tmp / "cfg" / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp / "cfg" / "b.yaml").write_text("_BASE_: a.yaml\n")
    return ["--config-file", str(tmp / "cfg" / "a.yaml")]


def _opts(*opts: str):
    return lambda tmp: ["--config-file", str(INSTANT), *opts]


def _file(name: str, data: bytes, key: str = "MODEL.WEIGHTS"):
    def fn(tmp: Path) -> list[str]:
        p = tmp / "cfg" / name
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(data)
        return ["--config-file", str(INSTANT), key, str(p)]

    return fn


def _weights_folder(tmp: Path) -> list[str]:
    (tmp / "cfg" / "w.pth").mkdir(parents=True)
    return ["--config-file", str(INSTANT), "MODEL.WEIGHTS", str(tmp / "cfg" / "w.pth")]


def _broken_split(tmp: Path) -> list[str]:
    root = tmp / "cfg" / "data"
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "train.json").write_text('{"images": [')
    (root / "annotations" / "val.json").write_text('{"images": [')
    return ["--config-file", str(INSTANT), *split_opts(root, "hostile_broken")]


def _split_of(images: list[dict]):
    """train/val COCO files of ``images`` and no annotations (as prepare_data.py writes for a
    label map that ignores every label), registered as ``hostile_empty_*``."""

    def fn(tmp: Path) -> list[str]:
        root = tmp / "cfg" / "data"
        (root / "annotations").mkdir(parents=True)
        categories = [{"id": 1, "name": "good"}, {"id": 2, "name": "bad"}]
        doc = {"images": images, "annotations": [], "categories": categories}
        for split in ("train", "val"):
            (root / "annotations" / f"{split}.json").write_text(json.dumps(doc))
        return ["--config-file", str(INSTANT), *split_opts(root, "hostile_empty")]

    return fn


def _output_is_a_file(tmp: Path) -> list[str]:
    (tmp / "cfg").mkdir(exist_ok=True)
    (tmp / "cfg" / "run").write_text("a file")
    return ["--config-file", str(INSTANT), "OUTPUT_DIR", str(tmp / "cfg" / "run")]


class _Payload:
    """Unpickled by plain ``pickle``, this creates ``marker`` (``tree_hashes`` would see it)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _code_in_weights(name: str):
    """MODEL.WEIGHTS ``name`` (.pkl: detectron2's pickle format; .pth: torch's) that would run
    code when loaded by plain ``pickle``."""

    def fn(tmp: Path) -> list[str]:
        p = tmp / "cfg" / name
        p.parent.mkdir(exist_ok=True)
        data = {"model": {"w": _Payload(tmp / "cfg" / "ran")}, "__author__": "x"}
        if name.endswith(".pkl"):
            p.write_bytes(pickle.dumps(data))
        else:
            torch.save(data, p)
        return ["--config-file", str(INSTANT), "MODEL.WEIGHTS", str(p)]

    return fn


# (id, argv builder, exit code, text the one error line must hold); the data options of the
# tiny dataset and OUTPUT_DIR are appended (later KEY VALUE pairs win, so cases can override)
CASES = [
    ("config_missing", lambda t: ["--config-file", str(t / "nope.yaml")], 2, "nope.yaml"),
    ("config_empty", _yaml(""), 2, "empty config"),
    ("config_comment_only", _yaml("# nothing\n"), 2, "empty config"),
    ("config_invalid_yaml", _yaml("SOLVER: [1, 2\n"), 2, "invalid YAML"),
    ("config_a_list", _yaml("- 1\n- 2\n"), 2, "mapping"),
    ("config_not_utf8", _yaml(b"SOLVER:\n  BASE_LR: \xff\xfe\n"), 2, "UTF-8"),
    ("config_python_tag", _yaml("X: !!python/object/apply:os.getcwd []\n"), 2, "tag"),
    ("base_missing", _yaml("_BASE_: missing_base.yaml\n"), 2, "missing_base.yaml"),
    ("base_self", _yaml("_BASE_: bad.yaml\n"), 2, "itself"),
    ("base_cycle", _cycle, 2, "itself"),
    ("base_number", _yaml("_BASE_: 5\n"), 2, "_BASE_"),
    ("base_url", _yaml("_BASE_: https://example.com/base.yaml\n"), 2, "URL"),
    ("base_invalid_yaml", _yaml("x: [\n", "base.yaml"), 2, "base.yaml"),
    ("unknown_key", _yaml("SOLVER:\n  NOT_A_KEY: 1\n"), 2, "NOT_A_KEY"),
    ("wrong_type", _yaml("SOLVER:\n  BASE_LR: fast\n"), 2, "BASE_LR"),
    ("yaml_nan_lr", _yaml("SOLVER:\n  BASE_LR: .nan\n"), 2, "SOLVER.BASE_LR"),
    ("negative_lr", _opts("SOLVER.BASE_LR", "-1"), 2, "SOLVER.BASE_LR"),
    ("zero_lr", _opts("SOLVER.BASE_LR", "0.0"), 2, "SOLVER.BASE_LR"),
    ("infinite_lr", _opts("SOLVER.BASE_LR", "1e999"), 2, "SOLVER.BASE_LR"),
    ("zero_max_iter", _opts("SOLVER.MAX_ITER", "0"), 2, "SOLVER.MAX_ITER"),
    ("negative_max_iter", _opts("SOLVER.MAX_ITER", "-5"), 2, "SOLVER.MAX_ITER"),
    ("zero_batch", _opts("SOLVER.IMS_PER_BATCH", "0"), 2, "SOLVER.IMS_PER_BATCH"),
    ("zero_checkpoint_period", _opts("SOLVER.CHECKPOINT_PERIOD", "0"), 2, "CHECKPOINT_PERIOD"),
    ("num_classes_mismatch", _opts("MODEL.ROI_HEADS.NUM_CLASSES", "3"), 2, "NUM_CLASSES"),
    ("score_thresh_above_one", _opts("MODEL.ROI_HEADS.SCORE_THRESH_TEST", "1.5"), 2, "SCORE"),
    ("negative_eval_period", _opts("TEST.EVAL_PERIOD", "-1"), 2, "TEST.EVAL_PERIOD"),
    ("duplicate_classes", _opts("SPERM.CLASSES", "['good', 'good']"), 2, "SPERM.CLASSES"),
    ("class_colors_pairs", _opts("SPERM.CLASS_COLORS", "[[1, 2], [3, 4]]"), 2, "CLASS_COLORS"),
    ("class_colors_empty", _opts("SPERM.CLASS_COLORS", "[]"), 2, "SPERM.CLASS_COLORS"),
    (
        "class_colors_text",
        _yaml(f"_BASE_: {INSTANT}\nSPERM:\n  CLASS_COLORS: [[red], [blue]]\n"),
        2,
        "CLASS_COLORS",
    ),
    ("device_unknown", _opts("MODEL.DEVICE", "tpu"), 2, "MODEL.DEVICE"),
    ("device_other_backend", _opts("MODEL.DEVICE", "mps"), 2, "cpu or cuda"),
    ("device_bad_index", _opts("MODEL.DEVICE", "cuda:x"), 2, "MODEL.DEVICE"),
    ("odd_overrides", _opts("SOLVER.MAX_ITER"), 2, "KEY VALUE"),
    ("unknown_override", _opts("SOLVER.NOPE", "1"), 2, "NOPE"),
    ("dataset_not_registered", _opts("DATASETS.TRAIN", "('nope_train',)"), 2, "nope_train"),
    ("dataset_json_broken", _broken_split, 2, "train.json"),
    ("dataset_no_images", _split_of([]), 2, "hold nothing to train on"),
    (
        "dataset_no_annotations",  # trained on negatives only, exit 0, before
        _split_of([{"id": 1, "file_name": "a.png", "height": 64, "width": 64}]),
        2,
        "hold no annotation",
    ),
    ("output_is_a_file", _output_is_a_file, 2, "OUTPUT_DIR"),
    ("weights_missing", _opts("MODEL.WEIGHTS", "/no/such/model.pth"), 1, "model.pth"),
    ("weights_garbage", _file("w.pth", b"\x00garbage" * 100), 1, "w.pth"),
    ("weights_empty", _file("w.pth", b""), 1, "w.pth"),
    ("weights_text", _file("w.pth", b"hello"), 1, "w.pth"),
    ("weights_folder", _weights_folder, 1, "w.pth"),
    (
        "weights_pkl_running_code",
        _code_in_weights("evil.pkl"),
        1,
        "evil.pkl: MODEL.WEIGHTS refused",
    ),
    (
        "weights_pth_running_code",
        _code_in_weights("evil.pth"),
        1,
        "evil.pth: MODEL.WEIGHTS refused",
    ),
    (
        "eval_only_without_weights",
        lambda t: ["--config-file", str(INSTANT), "--eval-only"],
        2,
        "--eval-only",
    ),
]


@pytest.mark.parametrize("case, argv, code, culprit", CASES, ids=[c[0] for c in CASES])
def test_bad_run_inputs_fail_in_one_line_before_the_run_folder(
    tiny_dataset, tmp_path, case, argv, code, culprit
) -> None:
    run_dir = tmp_path / "run"
    data = ["SPERM.DATA_ROOT", str(tiny_dataset.root), "SPERM.DATASET_PREFIX", "hostile"]
    data += ["DATASETS.TRAIN", "('hostile_train',)", "DATASETS.TEST", "('hostile_val',)"]
    args = argv(tmp_path)
    at = 0  # detectron2's parser: flags first, then KEY VALUE pairs (later pairs win)
    while at < len(args) and args[at].startswith("--"):
        at += 2 if args[at] == "--config-file" else 1
    full = args[:at] + data + ["OUTPUT_DIR", str(run_dir)] + args[at:]
    before = tree_hashes(tmp_path)
    res = run_main(TRAIN_NET.main, full)
    assert res.exception is None, repr(res.exception)
    assert "Traceback" not in res.stderr
    lines = res.lines("train_net.py")
    assert len(lines) == 1, res.stderr
    assert culprit in lines[0], lines[0]
    assert res.code == code, lines[0]
    assert not run_dir.exists()  # no config.yaml / log.txt of a run that never started
    assert tree_hashes(tmp_path) == before  # configs, weights and data untouched
