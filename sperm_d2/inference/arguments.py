"""Argument types of ``infer.py``/``evaluate.py``: numbers checked where they are parsed, so a
bad value is argparse's one line naming the argument, before anything loads."""

import argparse
import math


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def unit_interval(text: str) -> float:
    """A finite number in [0, 1] (a score threshold)."""
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside [0, 1]")
    return value


def non_negative(text: str) -> float:
    """A finite number >= 0 (a scale such as µm per pixel; 0 = unknown)."""
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative; expected >= 0")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (a stride)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is below 1; expected >= 1")
    return value
