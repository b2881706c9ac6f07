"""Model files load as data: a pickle that would run code is refused at every entry point.

Each malicious file is built here: its ``__reduce__`` would create a marker file when unpickled
by plain ``pickle`` (as detectron2's checkpointer reads ``.pkl`` files). Every test asserts the
refusal names the file and the marker was never created.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
from torch import nn

from sperm_d2.engine.checkpoint import SpermCheckpointer
from sperm_d2.inference.model_source import check_model_source
from sperm_d2.model_weights import SafeCheckpointer, WeightsMismatchError, load_model_weights
from sperm_d2.weights_io import CheckpointError, check_weights_file, load_weights

from .conftest import REPO, split_opts

INSTANT = str(REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml")


class _Payload:
    """Unpickled by plain ``pickle``, this creates ``marker`` (``open(marker, "w")``)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil_pkl(folder: Path, name: str = "evil.pkl") -> tuple[Path, Path]:
    marker = folder / f"{name}.ran"
    path = folder / name
    path.write_bytes(pickle.dumps({"model": {"w": _Payload(marker)}, "__author__": "x"}))
    return path, marker


def _evil_pth(folder: Path, name: str = "evil.pth") -> tuple[Path, Path]:
    marker = folder / f"{name}.ran"
    path = folder / name
    torch.save({"model": {"weight": _Payload(marker)}}, path)
    return path, marker


EVIL = [_evil_pkl, _evil_pth]


def test_plain_pickle_would_run_the_payload(tmp_path) -> None:
    """The test files are what they claim: plain ``pickle`` runs them."""
    path, marker = _evil_pkl(tmp_path)
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("make", EVIL)
def test_the_loader_refuses_code_naming_file_and_global(tmp_path, make) -> None:
    path, marker = make(tmp_path)
    with pytest.raises(CheckpointError, match=rf"{path.name}: refused to load: .*\bio\.open") as e:
        load_weights(path)
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match=path.name):
        check_weights_file(str(path))
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_a_model_zoo_pickle_of_numpy_arrays_loads(tmp_path, protocol) -> None:
    weights = {"linear.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "n": np.int64(3)}
    path = tmp_path / "zoo.pkl"
    data = {"model": weights, "__author__": "Detectron2 Model Zoo"}
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    loaded = load_weights(path)
    assert loaded["__author__"] == "Detectron2 Model Zoo"
    assert np.array_equal(loaded["model"]["linear.weight"], weights["linear.weight"])
    assert loaded["model"]["n"] == 3


def test_a_caffe2_pickle_is_converted_as_detectron2_does(tmp_path) -> None:
    blobs = {"conv1_w": np.ones((2, 2), np.float32), "conv1_w_momentum": np.zeros((2, 2))}
    path = tmp_path / "R-50.pkl"
    path.write_bytes(pickle.dumps({"blobs": blobs}, protocol=2))
    loaded = load_weights(path)
    assert loaded["__author__"] == "Caffe2" and loaded["matching_heuristics"] is True
    assert list(loaded["model"]) == ["conv1_w"]


@pytest.mark.parametrize("make", EVIL)
def test_checkpointer_load_refuses_code(tmp_path, make) -> None:
    path, marker = make(tmp_path)
    for checkpointer in (SpermCheckpointer(nn.Linear(3, 2)), SafeCheckpointer(nn.Linear(3, 2))):
        with pytest.raises(CheckpointError, match=path.name):
            checkpointer.load(str(path))
    assert not marker.exists()


def test_checkpointer_loads_a_model_zoo_pickle(tmp_path) -> None:
    model = nn.Linear(3, 2)
    weight = np.full((2, 3), 7, np.float32)
    bias = np.array([1, 2], np.float32)
    path = tmp_path / "zoo.pkl"
    path.write_bytes(pickle.dumps({"model": {"weight": weight, "bias": bias}, "__author__": "t"}))
    SpermCheckpointer(model).load(str(path))
    assert torch.equal(model.weight, torch.from_numpy(weight))
    SafeCheckpointer(nn.Linear(3, 2)).load(str(path))


def test_resume_through_last_checkpoint_naming_a_pkl_refuses_it(tmp_path) -> None:
    path, marker = _evil_pkl(tmp_path, "model_0000009.pkl")
    (tmp_path / "last_checkpoint").write_text(path.name)
    with pytest.raises(CheckpointError, match=r"no usable checkpoint.*model_0000009.pkl.*refused"):
        SpermCheckpointer(nn.Linear(3, 2), str(tmp_path)).resume_or_load("", resume=True)
    assert not marker.exists()


def test_resume_skips_a_refused_last_checkpoint_for_an_older_good_one(tmp_path) -> None:
    ckpt = SpermCheckpointer(nn.Linear(3, 2), str(tmp_path))
    ckpt.save("model_0000001", iteration=1)
    path, marker = _evil_pkl(tmp_path, "model_0000009.pkl")
    (tmp_path / "last_checkpoint").write_text(path.name)
    left = SpermCheckpointer(nn.Linear(3, 2), str(tmp_path)).resume_or_load("", resume=True)
    assert left["iteration"] == 1 and not marker.exists()


@pytest.mark.parametrize("make", EVIL)
def test_model_source_refuses_code_in_weights(tmp_path, make) -> None:
    path, marker = make(tmp_path)
    with pytest.raises(ValueError, match=rf"{path.name}: --weights refused to load"):
        check_model_source(config_file=INSTANT, weights=str(path))
    with pytest.raises(ValueError, match=rf"{path.name}: MODEL.WEIGHTS refused to load"):
        check_model_source(config_file=INSTANT, opts=["MODEL.WEIGHTS", str(path)])
    assert not marker.exists()


def test_infer_cli_refuses_a_malicious_pkl_in_one_line(tmp_path) -> None:
    path, marker = _evil_pkl(tmp_path)
    (tmp_path / "in").mkdir()
    proc = subprocess.run(
        [sys.executable, "tools/infer.py", "--config-file", INSTANT, "--weights", str(path)]
        + ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    lines = [line for line in proc.stderr.splitlines() if line.startswith("infer.py: ")]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("infer.py: error: "), proc.stderr
    assert str(path) in lines[0] and "refused" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


GRADER_INSTANT = REPO / "configs/quick_schedules/sperm_grader_instant_test.yaml"


def _evil_grader_run(folder: Path, make) -> tuple[Path, Path]:
    """A grader run folder (its config as training writes it) whose checkpoint runs code."""
    from sperm_d2.config import setup_cfg

    run = folder / "grader_run"
    run.mkdir()
    (run / "config.yaml").write_text(setup_cfg(str(GRADER_INSTANT)).dump())
    path, marker = make(run, "model_final.pth")
    if path.suffix == ".pkl":  # a run's checkpoint is a .pth whatever it holds
        path = path.rename(run / "model_final.pth")
    return run, marker


# a plain pickle saved as a run's .pth: torch warns of its protocol before refusing it
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
@pytest.mark.parametrize("make", EVIL)
def test_a_grader_run_whose_checkpoint_runs_code_is_refused(tmp_path, make) -> None:
    weights = tmp_path / "detector.pth"
    from detectron2.modeling import build_model

    from sperm_d2.config import setup_cfg

    torch.save({"model": build_model(setup_cfg(INSTANT)).state_dict()}, weights)
    run, marker = _evil_grader_run(tmp_path, make)
    with pytest.raises(ValueError, match=r"--grader .*refused|refused to load|not plain weights"):
        check_model_source(config_file=INSTANT, weights=str(weights), grader=str(run))
    with pytest.raises(ValueError, match=r"refused|not plain weights"):  # the detector run's grader
        check_model_source(
            config_file=INSTANT, weights=str(weights), opts=["SPERM.GRADER.RUN", str(run)]
        )
    assert not marker.exists()


def test_train_net_refuses_model_weights_that_run_code(tmp_path, tiny_dataset) -> None:
    path, marker = _evil_pkl(tmp_path)
    proc = subprocess.run(
        [sys.executable, "tools/train_net.py", "--config-file", str(GRADER_INSTANT)]
        + split_opts(tiny_dataset.root, "evilw")
        + ["MODEL.WEIGHTS", str(path), "OUTPUT_DIR", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 1, proc.stderr[-2000:]  # train_net.py's code for a checkpoint
    lines = [line for line in proc.stderr.splitlines() if line.startswith("train_net.py: ")]
    assert len(lines) == 1 and str(path) in lines[0] and "refused" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not marker.exists() and not list((tmp_path / "run").glob("*.pth"))


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def _fvcore_log() -> Iterator[_Records]:
    """What fvcore's checkpoint logger logs (INFO and up), caught on the logger itself: whether
    it propagates depends on who set up logging earlier in the session."""
    handler, log = _Records(), logging.getLogger("fvcore.common.checkpoint")
    old = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(old)


def test_refused_weights_are_one_line_without_fvcore_s_warning_per_layer(tmp_path) -> None:
    """Before: a ``Skip loading parameter`` warning per layer, then the one-line refusal."""
    path = tmp_path / "other.pth"
    torch.save({"model": nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 5)).state_dict()}, path)
    with _fvcore_log() as handler:
        with pytest.raises(WeightsMismatchError, match=r"other.pth: fits this model only in part"):
            load_model_weights(nn.Sequential(nn.Linear(4, 2), nn.Linear(2, 6)), path)
        assert not [m for m in handler.messages if "Skip loading" in m], handler.messages
        # weights that fit whole still log what fvcore says of the load
        load_model_weights(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 5)), path)
        assert any("Loading from" in m for m in handler.messages), handler.messages


@pytest.mark.parametrize(
    "data, problem",
    [(b"", "file is empty"), (b"PK\x03\x04 cut", "is not a readable torch checkpoint")],
)
def test_check_weights_file_names_the_file_as_told(tmp_path, data, problem) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=rf"w.pth: MODEL.WEIGHTS {problem}"):
        check_weights_file(str(path))
    with pytest.raises(CheckpointError, match=rf"w.pth: the part run's checkpoint {problem}"):
        check_weights_file(str(path), "the part run's checkpoint")
