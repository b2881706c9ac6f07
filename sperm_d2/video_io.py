"""Video file writing shared by the data layer (synthetic videos) and inference (annotated
videos): one OpenCV writer here, so ``sperm_d2.data`` never imports ``sperm_d2.inference``."""

import os
from pathlib import Path

import cv2
import numpy as np

from sperm_d2.errors import InputError


class VideoSink:
    """An MP4 (``mp4v``) or AVI (``MJPG``) writer opened on the first frame (its size decides the
    video size) and released by :meth:`close` (use it as a context manager)."""

    def __init__(self, path: str | os.PathLike, fps: float) -> None:
        self.path = Path(path)
        self.fps = max(float(fps), 1.0)
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, frame: np.ndarray) -> None:
        """Append one BGR frame (every frame must have the first frame's size)."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            codec = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            h, w = frame.shape[:2]
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, (w, h)
            )
            if not self._writer.isOpened():
                raise InputError(f"{self.path}: OpenCV cannot open a {codec} video writer")
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> None:
        """Finish the file (safe to call twice)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
