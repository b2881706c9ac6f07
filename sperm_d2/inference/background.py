"""Background threads at the edges of the pipeline: decode ahead of the model, write behind it.

OpenCV's decoders/encoders and file I/O release the GIL, so one extra thread on each side keeps
the model busy; queues are bounded so memory stays flat however many inputs there are.
"""

import collections
import concurrent.futures as cf
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def prefetch(items: Iterable[T], fn: Callable[[T], R], ahead: int = 4) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` in order, computing up to ``ahead`` results in a background
    thread. ``fn`` should return errors as values: an exception it raises propagates here."""
    if ahead <= 0:
        for item in items:
            yield item, fn(item)
        return
    pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > ahead:
                done_item, fut = pending.popleft()
                yield done_item, fut.result()
        while pending:
            done_item, fut = pending.popleft()
            yield done_item, fut.result()
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True)


class BackgroundWriter:
    """Run write jobs (encode + save) in one background thread, at most ``max_pending`` queued.

    Use as a context manager; leaving it waits for every job and re-raises the first failure.
    """

    def __init__(self, max_pending: int = 8) -> None:
        self._pool = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="write")
        self._pending: collections.deque = collections.deque()
        self._max_pending = max_pending

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue ``fn(*args, **kwargs)``; blocks while ``max_pending`` jobs are waiting."""
        self._pending.append(self._pool.submit(fn, *args, **kwargs))
        while len(self._pending) > self._max_pending:
            self._pending.popleft().result()

    def close(self) -> None:
        """Wait for every queued job; raise the first error among them."""
        try:
            while self._pending:
                self._pending.popleft().result()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
