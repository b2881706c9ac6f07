"""Video as a generator pipeline: frames are read lazily at one edge, annotated frames written
at the other; nothing holds more than a batch of frames, so memory is flat in video length."""

import os
from typing import Iterator

import numpy as np

from sperm_d2.inference.predictor import SpermPredictor
from sperm_d2.inference.sources import VideoFrames
from sperm_d2.inference.types import ImagePrediction
from sperm_d2.video_io import VideoSink  # the writer lives outside inference, shared with data

__all__ = ["VideoSink", "predict_video"]


def predict_video(
    predictor: SpermPredictor, path: str | os.PathLike | VideoFrames, stride: int = 1
) -> Iterator[tuple[np.ndarray, ImagePrediction]]:
    """Yield ``(frame, prediction)`` for every ``stride``-th frame of the video at ``path`` (or
    of a :class:`VideoFrames`, whose ``frames_read`` then tells how far the video was read)."""
    video = path if isinstance(path, VideoFrames) else VideoFrames(path, stride)
    frames = ((video.path, index, frame) for index, frame in video)
    yield from predictor.predict_stream(frames)
