"""The auto inference batch size: calibration schedule and choice (fake clock, no real timing),
memory bounds, order and completeness of the stream, and SpermPredictor/video on random weights.
"""

import gc
import mmap
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog

from sperm_d2.config import setup_cfg
from sperm_d2.data.synthetic import render_video_frames
from sperm_d2.inference import SpermPredictor
from sperm_d2.inference import batch_size as bs
from sperm_d2.inference import pass_memory
from sperm_d2.inference.pass_memory import MemoryProbe
from sperm_d2.inference.video import predict_video

from .conftest import REPO

INSTANT = str(REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml")


class FakeClock:
    """Stands in for ``batch_size.perf_counter``; a fake forward advances it by a cost per
    image that depends on the batch size, so the fastest size is known in advance."""

    def __init__(self, per_image: dict[int, float]) -> None:
        self.now, self.per_image, self.calls = 0.0, per_image, 0

    def __call__(self) -> float:
        self.calls += 1
        return self.now

    def spend(self, n: int) -> None:
        self.now += n * self.per_image[n] if n in self.per_image else n


@pytest.fixture(autouse=True)
def fresh_calibrations():
    bs.forget_calibrations()
    yield
    bs.forget_calibrations()


def fake_forward(clock: FakeClock, sizes: list[int]):
    def forward(batch):
        sizes.append(len(batch))
        clock.spend(len(batch))
        return [f"out{x}" for x in batch]

    return forward


def test_schedule_warms_up_then_alternates_with_equal_images_per_size():
    cal = bs.BatchCalibration(rounds=2)
    steps = cal.schedule
    assert steps[:4] == [(1, False), (2, False), (4, False), (8, False)]
    timed = steps[4:]
    assert all(t for _, t in timed)
    first, second = timed[: len(timed) // 2], timed[len(timed) // 2 :]
    assert [s for s, _ in first][0] == 8 and [s for s, _ in second][0] == 1  # order alternates
    for rnd in (first, second):
        assert {c: sum(s for s, _ in rnd if s == c) for c in (1, 2, 4, 8)} == dict.fromkeys(
            (1, 2, 4, 8), 8
        )
    with pytest.raises(ValueError, match="divide"):
        bs.BatchCalibration(candidates=(1, 3, 4))


@pytest.mark.parametrize("fastest", [1, 2, 8])
def test_auto_picks_the_fastest_size_and_predicts_every_item_once_in_order(monkeypatch, fastest):
    per_image = {1: 1.0, 2: 1.0, 4: 1.0, 8: 1.0}
    per_image[fastest] = 0.5
    clock = FakeClock(per_image)
    monkeypatch.setattr(bs, "perf_counter", clock)
    sizes: list[int] = []
    cal = bs.calibration_for("k", "cpu")
    items = list(range(100))
    out = list(bs.stream_batches(items, fake_forward(clock, sizes), 0, cal))
    assert cal.chosen == fastest
    assert [x for batch, _ in out for x in batch] == items  # each once, in order
    assert [o for _, outs in out for o in outs] == [f"out{x}" for x in items]
    schedule = [s for s, _ in cal.schedule]
    assert sizes[: len(schedule)] == schedule
    rest = sizes[len(schedule) :]
    assert rest[:-1] == [fastest] * (len(rest) - 1) and 0 < rest[-1] <= fastest
    assert cal.rates()[fastest] == pytest.approx(2.0) and cal.timed_images == 4 * 8 * 2
    # the same key in this process reuses the choice: no second calibration
    clock.calls, sizes[:] = 0, []
    again = list(bs.stream_batches(range(10), fake_forward(clock, sizes), 0, cal))
    assert clock.calls == 0 and sizes[0] == fastest and len(again) == -(-10 // fastest)


def test_short_stream_leaves_the_calibration_to_the_next_stream(monkeypatch):
    clock = FakeClock({1: 1.0, 2: 0.4, 4: 1.0, 8: 1.0})
    monkeypatch.setattr(bs, "perf_counter", clock)
    sizes: list[int] = []
    cal = bs.calibration_for("k", "cpu")
    first = list(bs.stream_batches(range(20), fake_forward(clock, sizes), 0, cal))
    assert sum(len(b) for b, _ in first) == 20 and cal.chosen is None
    second = list(bs.stream_batches(range(100), fake_forward(clock, sizes), 0, cal))
    assert sum(len(b) for b, _ in second) == 100 and cal.chosen == 2


def test_explicit_size_is_not_timed(monkeypatch):
    clock = FakeClock({})
    monkeypatch.setattr(bs, "perf_counter", clock)
    sizes: list[int] = []
    out = list(bs.stream_batches(range(10), fake_forward(clock, sizes), 3))
    assert sizes == [3, 3, 3, 1] and clock.calls == 0
    assert [x for b, _ in out for x in b] == list(range(10))


def test_items_of_another_group_never_share_a_batch():
    sizes: list[int] = []
    items = [("a", i) for i in range(3)] + [("b", i) for i in range(5)]
    forward = fake_forward(FakeClock({}), sizes)
    out = list(bs.stream_batches(items, forward, 4, group=lambda item: item[0]))
    assert sizes == [3, 4, 1] and [x for b, _ in out for x in b] == items
    assert all(len({g for g, _ in b}) == 1 for b, _ in out)


def test_a_size_whose_memory_would_not_fit_is_not_tried(monkeypatch):
    clock = FakeClock({1: 1.0, 2: 1.0, 4: 0.1, 8: 0.1})  # 4 and 8 would be fastest
    monkeypatch.setattr(bs, "perf_counter", clock)
    # each image needs 100 MB and 500 MB are free: at most 50 % of it, so 2 per pass, not 4
    monkeypatch.setattr(MemoryProbe, "free", lambda self: 500 * 2**20)
    monkeypatch.setattr(MemoryProbe, "start", lambda self: None)
    last: list[int] = []
    monkeypatch.setattr(MemoryProbe, "stop", lambda self: last[-1] * 100 * 2**20)
    cal = bs.calibration_for("k", "cpu")
    out = list(bs.stream_batches(range(60), fake_forward(clock, last), 0, cal))
    assert max(last) == 2 and cal.ceiling == 2 and cal.chosen in (1, 2)
    assert [x for b, _ in out for x in b] == list(range(60))


def test_out_of_memory_splits_the_batch_and_lowers_the_ceiling(monkeypatch):
    clock = FakeClock({1: 1.0, 2: 0.5, 4: 0.1, 8: 0.1})
    monkeypatch.setattr(bs, "perf_counter", clock)
    sizes: list[int] = []
    ok = fake_forward(clock, sizes)

    def forward(batch):
        if len(batch) >= 4:
            raise torch.OutOfMemoryError("fake: out of memory")
        return ok(batch)

    cal = bs.calibration_for("k", "cpu")
    out = list(bs.stream_batches(range(50), forward, 0, cal))
    assert cal.ceiling == 2 and cal.chosen == 2 and max(sizes) == 2
    assert [x for b, _ in out for x in b] == list(range(50))
    assert [o for _, outs in out for o in outs] == [f"out{x}" for x in range(50)]


@pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="resets the peak RSS (Linux /proc)"
)
def test_cpu_memory_probe_bounds_a_pass_from_above():
    """Whatever ran before: a peak set earlier in the process (here 256 MB, freed again) must
    not stand in for the pass's own need, and the pass's pages are fresh (an anonymous mapping,
    not memory an allocator may still hold resident from an earlier test)."""
    old = np.ones(256 * 2**20, dtype=np.uint8)  # every page touched: the process peak
    del old  # (a large block is unmapped: the RSS falls, the peak stays)
    gc.collect()  # nothing an earlier test left is freed during the pass
    earlier_peak = pass_memory.process_peak_rss()
    probe = MemoryProbe("cpu")
    assert probe.free() > 0
    with mmap.mmap(-1, 64 * 2**20) as block:
        probe.start()
        np.frombuffer(block, dtype=np.uint8)[:] = 1  # 64 MB, every page touched
        need = probe.stop()
        assert block[-1] == 1
    assert 63 * 2**20 <= need < 128 * 2**20  # the pass's own, not the earlier 256 MB peak
    # the reset lowered the kernel's peak; the process peak is still known
    assert pass_memory.process_peak_rss() >= earlier_peak >= 256 * 2**20


def test_cpu_memory_probe_without_a_peak_reset_measures_nothing(monkeypatch, tmp_path):
    """Where the peak cannot be reset (no /proc, not writable) a pass's need is unknown, not a
    number an earlier peak may have hidden; the calibration then goes by time alone."""
    monkeypatch.setattr(pass_memory, "_CLEAR_REFS", str(tmp_path / "missing" / "clear_refs"))
    probe = MemoryProbe("cpu")
    probe.start()
    assert probe.stop() is None
    cal = bs.BatchCalibration(rounds=1)
    cal.record(1, False, 1.0, None)
    assert cal.next_pass(free_bytes=2**20) == (2, False)  # unknown memory bounds no size


# ---- SpermPredictor on random weights -------------------------------------------------------


@pytest.fixture(scope="module")
def predictor() -> SpermPredictor:
    torch.manual_seed(0)
    return SpermPredictor(setup_cfg(INSTANT), score_threshold=0.0)  # heads run (zero threshold)


def small_calibration(monkeypatch, per_image: dict[int, float]) -> FakeClock:
    """Candidates 1, 2, 4 and one timed round (19 images), timed by a fake clock."""
    monkeypatch.setattr(bs, "CANDIDATES", (1, 2, 4))
    monkeypatch.setattr(bs, "TIMED_ROUNDS", 1)
    clock = FakeClock(per_image)
    monkeypatch.setattr(bs, "perf_counter", clock)
    return clock


def spy_forward(monkeypatch, predictor: SpermPredictor, clock: FakeClock) -> list[int]:
    """Record the batch size of every forward pass (and advance the fake clock)."""
    sizes: list[int] = []
    real = SpermPredictor.predict_instances

    def predict_instances(self, images, scale=None):
        sizes.append(len(images))
        clock.spend(len(images))
        return real(self, images, scale)

    monkeypatch.setattr(SpermPredictor, "predict_instances", predict_instances)
    return sizes


def test_predictor_auto_equals_batch_one_in_the_same_order(monkeypatch, predictor, tiny_dataset):
    names = tiny_dataset.names
    paths = [r["file_name"] for n in ("train", "val") for r in DatasetCatalog.get(names[n])]
    images = [cv2.imread(p) for p in paths] * 2  # 24 images of 96 px: calibration + 5 more
    items = [(f"s{i}", None, im) for i, im in enumerate(images)]
    clock = small_calibration(monkeypatch, {1: 1.0, 2: 0.5, 4: 1.0})
    sizes = spy_forward(monkeypatch, predictor, clock)
    assert predictor.batch_size == 0  # auto by default
    auto = list(predictor.predict_stream(items))
    assert predictor.calibration is not None and predictor.calibration.chosen == 2
    # warm-up 1, 2, 4; one timed round 4, 2 x2, 1 x4 (19 images); then 2 per pass
    assert sizes == [1, 2, 4, 4, 2, 2, 1, 1, 1, 1, 2, 2, 1]
    one = SpermPredictor.__new__(SpermPredictor)
    one.__dict__.update(predictor.__dict__, batch_size=1, calibration=None)
    sizes.clear()
    single = list(one.predict_stream(items))
    assert set(sizes) == {1} and one.calibration is None
    assert [p.source for _, p in auto] == [p.source for _, p in single] == [i[0] for i in items]
    assert all(a is b for (a, _), (b, _) in zip(auto, single))
    for (_, a), (_, b) in zip(auto, single):
        assert len(a) == len(b) > 0
        np.testing.assert_array_equal(a.classes, b.classes)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-2)
        assert (a.masks == b.masks).mean() > 0.999


def test_explicit_size_skips_calibration(monkeypatch, predictor, tiny_dataset):
    clock = small_calibration(monkeypatch, {1: 1.0, 2: 0.5, 4: 1.0})
    sizes = spy_forward(monkeypatch, predictor, clock)
    cfg = predictor.cfg.clone()
    cfg.defrost()
    cfg.SPERM.INFER_BATCH_SIZE = 3
    keyed = SpermPredictor(cfg, score_threshold=0.0)
    image = cv2.imread(DatasetCatalog.get(tiny_dataset.names["val"])[0]["file_name"])
    out = list(keyed.predict_stream((f"s{i}", None, image) for i in range(7)))
    assert sizes == [3, 3, 1] and clock.calls == 0 and keyed.calibration is None
    assert [p.source for _, p in out] == [f"s{i}" for i in range(7)]
    with pytest.raises(ValueError, match=">= 0"):
        SpermPredictor(cfg, batch_size=-1)


def test_video_frames_use_the_chosen_size_in_order(monkeypatch, predictor, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (64, 64))
    for frame in render_video_frames(3, 64, 64, 50):
        writer.write(frame)
    writer.release()
    clock = small_calibration(monkeypatch, {1: 1.0, 2: 1.0, 4: 0.25})
    sizes = spy_forward(monkeypatch, predictor, clock)
    out = list(predict_video(predictor, video, stride=2))
    assert [p.frame for _, p in out] == list(range(0, 50, 2))
    assert predictor.calibration.chosen == 4
    assert sizes == [1, 2, 4, 4, 2, 2, 1, 1, 1, 1, 4, 2]  # 19 frames calibrate, then 4 per pass
