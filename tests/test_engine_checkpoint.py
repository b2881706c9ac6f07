"""SpermCheckpointer: atomic files, weights_only loads, best files, corrupt-file fallback."""

import argparse
import logging

import pytest
import torch
from torch import nn

from sperm_d2.config.setup import get_sperm_cfg
from sperm_d2.engine.checkpoint import CheckpointError, SpermCheckpointer, can_resume
from sperm_d2.engine.run_record import check_run


class _Counter:
    """A checkpointable holding one Python number (like the trainer's iteration)."""

    def __init__(self) -> None:
        self.value = 0

    def state_dict(self) -> dict:
        return {"value": self.value}

    def load_state_dict(self, state: dict) -> None:
        self.value = state["value"]


def _checkpointer(tmp_path, seed: int = 0) -> tuple[SpermCheckpointer, nn.Module, _Counter]:
    torch.manual_seed(seed)
    model = nn.Linear(3, 2)
    counter = _Counter()
    return SpermCheckpointer(model, str(tmp_path), counter=counter), model, counter


def _save_at(ckpt: SpermCheckpointer, model: nn.Module, counter: _Counter, it: int) -> None:
    with torch.no_grad():
        model.weight.fill_(float(it))
    counter.value = it
    ckpt.save(f"model_{it:07d}", iteration=it)


def test_save_is_atomic_and_loads_with_weights_only(tmp_path) -> None:
    ckpt, model, counter = _checkpointer(tmp_path)
    _save_at(ckpt, model, counter, 4)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"
    assert not list(tmp_path.glob(".*.tmp")), "temporary files left behind"
    data = torch.load(tmp_path / "model_0000004.pth", weights_only=True)
    assert data["iteration"] == 4 and data["counter"] == {"value": 4}


def test_best_checkpoint_does_not_become_the_resume_point(tmp_path) -> None:
    ckpt, model, counter = _checkpointer(tmp_path)
    _save_at(ckpt, model, counter, 4)
    ckpt.save("model_best", iteration=2)
    assert (tmp_path / "model_best.pth").is_file()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000004.pth"


def test_resume_falls_back_past_a_corrupt_last_checkpoint(tmp_path, caplog) -> None:
    ckpt, model, counter = _checkpointer(tmp_path)
    for it in (1, 3, 5):
        _save_at(ckpt, model, counter, it)
    last = tmp_path / "model_0000005.pth"
    last.write_bytes(last.read_bytes()[:100])  # truncated, as by a full disk

    fresh, fresh_model, fresh_counter = _checkpointer(tmp_path, seed=1)
    with caplog.at_level(logging.ERROR, logger="sperm_d2.engine.checkpoint"):
        left = fresh.resume_or_load("", resume=True)
    assert left["iteration"] == 3 and fresh_counter.value == 3
    assert torch.all(fresh_model.weight == 3.0)
    assert any("model_0000005.pth: cannot be read" in r.getMessage() for r in caplog.records)


def test_resume_with_missing_last_file_and_nothing_usable_is_an_error(tmp_path) -> None:
    ckpt, model, counter = _checkpointer(tmp_path)
    _save_at(ckpt, model, counter, 1)
    (tmp_path / "model_0000001.pth").write_bytes(b"garbage")
    (tmp_path / "last_checkpoint").write_text("model_0000009.pth")  # points at nothing
    fresh, _, _ = _checkpointer(tmp_path)
    with pytest.raises(CheckpointError, match="model_0000009.pth.*model_0000001.pth"):
        fresh.resume_or_load("", resume=True)


def test_resume_without_the_last_checkpoint_file_goes_on_from_the_newest(tmp_path) -> None:
    """A run folder copied without its small ``last_checkpoint`` file: ``--resume`` goes on
    from the newest periodic checkpoint (a ``model_best`` is never the resume point) instead of
    starting over at iteration 0 and overwriting the run's checkpoints."""
    ckpt, model, counter = _checkpointer(tmp_path)
    for it in (1, 3):
        _save_at(ckpt, model, counter, it)
    ckpt.save("model_best", iteration=7)
    (tmp_path / "last_checkpoint").unlink()
    fresh, fresh_model, fresh_counter = _checkpointer(tmp_path, seed=1)
    assert fresh.has_checkpoint()  # detectron2's trainer then starts at iteration + 1
    left = fresh.resume_or_load("", resume=True)
    assert left["iteration"] == 3 and fresh_counter.value == 3
    assert torch.all(fresh_model.weight == 3.0)


def test_a_last_checkpoint_naming_another_folder_is_ignored(tmp_path, caplog) -> None:
    """``last_checkpoint`` is a plain text file: one pointing outside the run folder (another
    run's weights, by hand or a copy) is not resumed from; the run's own newest one is."""
    other, other_model, other_counter = _checkpointer(tmp_path / "other", seed=2)
    _save_at(other, other_model, other_counter, 9)
    run = tmp_path / "run"
    ckpt, model, counter = _checkpointer(run)
    _save_at(ckpt, model, counter, 2)
    (run / "last_checkpoint").write_text(str(tmp_path / "other" / "model_0000009.pth"))
    fresh, fresh_model, fresh_counter = _checkpointer(run, seed=1)
    with caplog.at_level(logging.ERROR, logger="sperm_d2.engine.checkpoint"):
        left = fresh.resume_or_load("", resume=True)
    assert left["iteration"] == 2 and fresh_counter.value == 2
    assert torch.all(fresh_model.weight == 2.0)
    assert "outside" in caplog.text and "model_0000009.pth" in caplog.text
    # with no checkpoint of its own, the run has nothing to resume: it starts from its weights
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "last_checkpoint").write_text(str(tmp_path / "other" / "model_0000009.pth"))
    empty, empty_model, empty_counter = _checkpointer(alone, seed=4)
    assert not empty.has_checkpoint()
    before = empty_model.weight.detach().clone()
    empty.resume_or_load(str(tmp_path / "other" / "model_0000009.pth"), resume=True)
    assert torch.all(empty_model.weight == 9.0) and not torch.equal(before, empty_model.weight)
    assert empty_counter.value == 0  # weights only: the other run's iteration is not taken


def test_run_checks_and_the_checkpointer_agree_on_what_resumes(tmp_path) -> None:
    """``train_net.py``'s checks before the run (:func:`check_run`) and the checkpointer ask the
    same question, "is there something to resume", with one answer in every case."""
    other, other_model, other_counter = _checkpointer(tmp_path / "other")
    _save_at(other, other_model, other_counter, 9)
    outside = str(tmp_path / "other" / "model_0000009.pth")
    run = tmp_path / "run"
    run.mkdir()
    cases = [
        ({}, False),  # empty
        ({"last_checkpoint": outside}, False),  # only another run's weights: nothing to resume
        ({"last_checkpoint": outside, "model_0000002.pth": None}, True),
        ({"model_final.pth": None}, True),  # last_checkpoint lost
        ({"model_best.pth": None}, False),  # best models are never resumed from
        ({"last_checkpoint": "model_0000002.pth", "model_0000002.pth": None}, True),
    ]
    cfg = get_sperm_cfg()
    cfg.OUTPUT_DIR, cfg.MODEL.WEIGHTS = str(run), str(tmp_path / "missing.pth")
    args = argparse.Namespace(resume=True, eval_only=False)
    for files, expected in cases:
        for f in run.iterdir():
            f.unlink()
        for name, text in files.items():
            (run / name).write_text(text if text is not None else "x")
        assert can_resume(run) is expected, files
        assert SpermCheckpointer(nn.Linear(1, 1), str(run)).has_checkpoint() is expected, files
        if expected:  # resuming: MODEL.WEIGHTS is not what the run starts from
            check_run(cfg, args)
        else:  # starting over: from MODEL.WEIGHTS, checked before anything is written
            with pytest.raises(CheckpointError, match="missing.pth"):
                check_run(cfg, args)


def test_load_of_a_missing_weights_file_is_an_error(tmp_path) -> None:
    ckpt, _, _ = _checkpointer(tmp_path)
    with pytest.raises(CheckpointError, match="nope.pth: checkpoint file not found"):
        ckpt.resume_or_load(str(tmp_path / "nope.pth"), resume=False)


def test_resumed_best_tracker_keeps_a_best_found_after_the_last_checkpoint(tmp_path) -> None:
    """The checkpoint of iteration 900 is written before that iteration's evaluation: its state
    says best 83.9 @ 749, the JSON record 84.5 @ 900. A resumed run must not replace the 900
    model by a later 84.0 (it did)."""
    import json

    from sperm_d2.engine.best import SpermBestCheckpointer

    ckpt, _, _ = _checkpointer(tmp_path)
    record = {"metric": "segm/AP", "mode": "max", "value": 84.5, "iteration": 900}
    (tmp_path / "best_model.json").write_text(json.dumps(record))
    best = SpermBestCheckpointer(150, ckpt, "segm/AP")
    best.load_state_dict({"best_metric": 83.9, "best_iter": 749})
    assert (best.best_metric, best.best_iter) == (83.9, 749)  # no model_best.pth: not trusted
    ckpt.save("model_best", iteration=900)
    best.load_state_dict({"best_metric": 83.9, "best_iter": 749})
    assert (best.best_metric, best.best_iter) == (84.5, 900)
    best.load_state_dict({"best_metric": 85.0, "best_iter": 1049})  # the state's is better
    assert (best.best_metric, best.best_iter) == (85.0, 1049)
    other = SpermBestCheckpointer(150, ckpt, "bbox/AP")  # another metric's record is ignored
    other.load_state_dict({})
    assert other.best_metric is None


def test_a_checkpoint_half_written_by_a_killed_run_goes_at_the_next_save(tmp_path) -> None:
    ckpt, model, counter = _checkpointer(tmp_path)
    stale = tmp_path / ".model_0000004.pth.k1ll3d.tmp"  # unlocked: its writer is gone
    stale.write_bytes(b"PK half a zip")
    unrelated = tmp_path / "model_0000004.pth.bak"
    unrelated.write_bytes(b"a user's copy")
    _save_at(ckpt, model, counter, 8)
    assert not stale.exists() and unrelated.is_file()
    assert not list(tmp_path.glob(".*.tmp"))
