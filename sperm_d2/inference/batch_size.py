"""Images per forward pass, chosen by measurement on the device at hand (``SPERM.INFER_BATCH_SIZE``
0 = auto).

Whether batching pays depends on the model, the input size, the device and its load: on the
CPU it was slower for one setting and faster for another (ARCHITECTURE.md, "Measured costs",
from ``benchmarks/bench_infer.py``). So the first images of a stream
are predicted in passes of each candidate size (1, 2, 4, 8, bounded by memory), alternating,
and the size with the best images/s is used from then on (79 images: a warm-up pass of each size,
then 64 timed, 16 per size). Every image is predicted exactly once, in the order given: the
calibration's passes *are* the stream's first passes. Images whose model input sizes differ
never share a pass (padded to a common size, an image is not predicted as it is alone).

One :class:`BatchCalibration` per (device, threads, config, weights, model input size) lives for
the process (:func:`calibration_for`); a stream that ends before the calibration has chosen
leaves it to the next stream with the same key to finish.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Callable, Hashable, Iterable, Iterator, Sequence, TypeVar

import torch

from sperm_d2.inference.pass_memory import MemoryProbe

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: batch sizes tried (each must divide the largest, so every size times the same image count)
CANDIDATES = (1, 2, 4, 8)
#: timed rounds after the warm-up round (one pass of each size: new shapes build new kernels)
TIMED_ROUNDS = 2
#: a size is tried only if its extrapolated working memory is below this share of what is free
MEMORY_SHARE = {"cpu": 0.5, "cuda": 0.8}

#: the clock the passes are timed with (tests replace it)
perf_counter = time.perf_counter


@dataclasses.dataclass
class BatchCalibration:
    """The measurement behind one auto batch size.

    The schedule is a warm-up round (one untimed pass of each size, ascending, so each size's
    memory is known before the next is tried) then ``rounds`` timed rounds in alternating order
    (descending, ascending, ...: a slow drift in the machine's load hits every size alike). In
    a timed round every size predicts the same number of images (the largest size's count).
    """

    device: str = "cpu"
    candidates: tuple[int, ...] = CANDIDATES
    rounds: int = TIMED_ROUNDS
    seconds: dict[int, float] = dataclasses.field(default_factory=dict)  # timed, per size
    images: dict[int, int] = dataclasses.field(default_factory=dict)  # timed, per size
    work_bytes: dict[int, int] = dataclasses.field(default_factory=dict)  # a pass's memory
    ceiling: int = 0  # largest size allowed (memory); 0 = not limited yet
    chosen: int | None = None
    position: int = 0  # next step of the schedule

    def __post_init__(self) -> None:
        self.candidates = tuple(sorted(set(int(c) for c in self.candidates)))
        if not self.candidates or self.candidates[0] < 1:
            raise ValueError(f"batch size candidates must be >= 1, got {self.candidates}")
        if any(self.candidates[-1] % c for c in self.candidates):
            raise ValueError(f"every candidate must divide the largest: {self.candidates}")

    @property
    def schedule(self) -> list[tuple[int, bool]]:
        """``(size, timed)`` per pass: the warm-up round, then the timed rounds."""
        steps = [(c, False) for c in self.candidates]
        for r in range(self.rounds):
            order = self.candidates[::-1] if r % 2 == 0 else self.candidates
            for c in order:
                steps += [(c, True)] * (self.candidates[-1] // c)
        return steps

    def allowed(self, size: int) -> bool:
        return not self.ceiling or size <= self.ceiling

    def next_pass(self, free_bytes: int | None) -> tuple[int, bool] | None:
        """The next ``(size, timed)`` pass, or ``None`` once a size is chosen. ``free_bytes``
        (memory free on the device, ``None`` = unknown) bounds a size not run yet."""
        schedule = self.schedule
        while self.chosen is None and self.position < len(schedule):
            size, timed = schedule[self.position]
            if self.allowed(size) and (size in self.work_bytes or self._fits(size, free_bytes)):
                return size, timed
            self.position += 1
        if self.chosen is None:
            self._choose()
        return None

    def _fits(self, size: int, free_bytes: int | None) -> bool:
        """Whether ``size`` may run: the working memory of the largest size run so far,
        extrapolated linearly, must stay below ``MEMORY_SHARE`` of the free memory."""
        known = [s for s in self.work_bytes if s < size]
        if free_bytes is None or not known:
            return True
        base = max(known)
        need = self.work_bytes[base] * size / base
        budget = MEMORY_SHARE.get(self.device.split(":")[0], 0.5) * free_bytes
        if need <= budget:
            return True
        self.ceiling = base
        logger.info(
            "auto batch size: %d images per pass not tried on %s: ~%.0f MB needed (%d per pass "
            "took %.0f MB), %.0f MB free",
            size,
            self.device,
            need / 2**20,
            base,
            self.work_bytes[base] / 2**20,
            free_bytes / 2**20,
        )
        return False

    def record(self, size: int, timed: bool, seconds: float, work_bytes: int | None) -> None:
        """Account the scheduled pass just run (``size`` images in ``seconds``)."""
        if work_bytes is not None:
            self.work_bytes[size] = max(self.work_bytes.get(size, 0), work_bytes)
        else:  # not measurable here (MemoryProbe): marked as run; bounds no size, time decides
            self.work_bytes.setdefault(size, 0)
        if timed:
            self.seconds[size] = self.seconds.get(size, 0.0) + seconds
            self.images[size] = self.images.get(size, 0) + size
        self.position += 1

    def out_of_memory(self, size: int) -> int:
        """``size`` images did not fit: no size above half of it is used again; returns that."""
        smaller = [c for c in self.candidates if c < size]
        self.ceiling = smaller[-1] if smaller else 1
        if self.chosen is not None and self.chosen > self.ceiling:
            self.chosen = self.ceiling
        logger.warning(
            "auto batch size: %d images per pass ran out of memory on %s; at most %d from now",
            size,
            self.device,
            self.ceiling,
        )
        return self.ceiling

    def rates(self) -> dict[int, float]:
        """Measured images/s per size (timed passes only)."""
        return {s: self.images[s] / t for s, t in sorted(self.seconds.items()) if t > 0}

    @property
    def timed_images(self) -> int:
        return sum(self.images.values())

    def _choose(self) -> None:
        rates = {s: r for s, r in self.rates().items() if self.allowed(s)}
        # no timed pass fits (memory): the largest size that ran
        self.chosen = max(rates, key=rates.get) if rates else (self.ceiling or 1)
        table = ", ".join(f"{s}: {r:.2f}" for s, r in rates.items())
        logger.info(
            "auto batch size %d on %s (images/s per batch size, %d timed images: %s)",
            self.chosen,
            self.device,
            self.timed_images,
            table or "none timed",
        )


_CALIBRATIONS: dict[Hashable, BatchCalibration] = {}


def calibration_for(key: Hashable, device: str) -> BatchCalibration:
    """The process's calibration for ``key`` (see the module docstring), made on first use."""
    if key not in _CALIBRATIONS:
        _CALIBRATIONS[key] = BatchCalibration(device, CANDIDATES, TIMED_ROUNDS)
    return _CALIBRATIONS[key]


def forget_calibrations() -> None:
    """Drop every calibration of this process (benchmarks and tests measure afresh)."""
    _CALIBRATIONS.clear()


class _Batcher:
    """Takes batches from an iterator; items whose ``group`` differs never share a batch (a
    batch is cut short instead), so each item is predicted as it would be alone."""

    def __init__(self, items: Iterable[T], group: Callable[[T], Hashable] | None) -> None:
        self.items = iter(items)
        self.group = group
        self.pending: list = []  # the item that ended the previous batch

    def take(self, n: int) -> list:
        """Up to ``n`` next items of one group (fewer at the end or before a new group)."""
        batch, self.pending = self.pending, []
        while len(batch) < n:
            item = next(self.items, _END)
            if item is _END:
                break
            if batch and self.group is not None and self.group(item) != self.group(batch[0]):
                self.pending = [item]
                break
            batch.append(item)
        return batch


_END = object()


def stream_batches(
    items: Iterable[T],
    forward: Callable[[list[T]], Sequence[R]],
    size: int,
    calibration: BatchCalibration | None = None,
    device: str = "cpu",
    group: Callable[[T], Hashable] | None = None,
) -> Iterator[tuple[list[T], Sequence[R]]]:
    """Run ``forward`` over ``items`` in batches; yield ``(batch, outputs)`` in input order.

    Without ``calibration`` batches have ``size`` items. With one that has not chosen yet, the
    first batches follow its schedule, timed; then its choice. A batch is cut short at the end
    of the stream and before an item of another ``group`` (e.g. another input size: padded
    together, images would not be predicted as they are alone). One batch is held at a time.
    """
    batcher = _Batcher(items, group)
    if calibration is not None:
        yield from _calibrate(batcher, forward, calibration, device)
        if calibration.chosen is None:  # the stream ended first
            return
    while True:
        batch = batcher.take(calibration.chosen if calibration is not None else size)
        if not batch:
            return
        yield batch, _forward_fitting(forward, batch, calibration)


def _calibrate(batcher: _Batcher, forward, calibration: BatchCalibration, device: str):
    probe = MemoryProbe(device)
    while (step := calibration.next_pass(probe.free())) is not None:
        size, timed = step
        batch = batcher.take(size)
        if not batch:
            return
        probe.start()
        start = perf_counter()
        try:
            outputs = forward(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            torch.cuda.empty_cache()
            fits = calibration.out_of_memory(len(batch))
            yield batch, _forward_split(forward, batch, fits, calibration)
            continue
        seconds = perf_counter() - start
        if len(batch) == size:  # a batch cut short is no measurement of its size
            calibration.record(size, timed, seconds, probe.stop())
        yield batch, outputs


def _forward_fitting(forward, batch: list, calibration: BatchCalibration | None):
    """``forward(batch)``; with a calibration, a batch that runs out of memory is split into
    passes that fit (its size is not used again) instead of failing the stream."""
    if calibration is None:
        return forward(batch)
    try:
        return forward(batch)
    except torch.OutOfMemoryError:
        if len(batch) == 1:
            raise
        torch.cuda.empty_cache()
        fits = calibration.out_of_memory(len(batch))
    return _forward_split(forward, batch, fits, calibration)


def _forward_split(forward, batch: list, step: int, calibration: BatchCalibration) -> list:
    outputs: list = []
    for i in range(0, len(batch), step):
        outputs += list(_forward_fitting(forward, batch[i : i + step], calibration))
    return outputs
