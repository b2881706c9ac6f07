"""Auto-annotation on real crops (HuSHeM, SMIDS) when the data is at hand; skipped otherwise.

Looks for $SPERM_D2_REAL_DATA, else ../shared/data next to the repository.
"""

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from sperm_d2.data.autoannotate import segment_head

from .conftest import REPO

REAL = Path(os.environ.get("SPERM_D2_REAL_DATA") or REPO.parent / "shared" / "data")


@pytest.mark.parametrize(
    "folder, pattern", [("hushem", "*/*.BMP"), ("smids_train", "normal/*.png")]
)
def test_heads_found_near_centre_with_plausible_size(folder, pattern) -> None:
    files = sorted((REAL / folder).glob(pattern))
    if not files:
        pytest.skip(f"no real data under {REAL / folder}")
    picks = [files[i] for i in np.linspace(0, len(files) - 1, 16).astype(int)]
    good = 0
    for f in picks:
        img = cv2.imread(str(f))
        poly = segment_head(img)
        if poly is None:
            continue
        h, w = img.shape[:2]
        x, y = poly.mean(axis=0)
        size = np.sqrt(cv2.contourArea(poly.astype(np.float32)))
        good += abs(x - w / 2) < 0.25 * w and abs(y - h / 2) < 0.25 * h and 15 < size < 60
    assert good >= 15, f"{good}/16 plausible heads in {folder}"
