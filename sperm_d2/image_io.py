"""Image files shared by every layer (data, evaluation, inference, reports): the one list of image
extensions, decoding that reports a bad file as a value, checked encoding with atomic writes, and
the one grid tiler for contact sheets. Plain OpenCV/PIL/numpy: no detectron2, no torch."""

from __future__ import annotations

import base64
import io
import os
import stat
import warnings
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from sperm_d2.atomic import write_bytes_atomic

#: Extensions read as images everywhere (inputs of infer.py, class folders, auto-annotation).
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
#: Largest image decoded (PIL's decompression-bomb threshold, ~9459 x 9459 pixels): a header
#: claiming more is refused before any pixel buffer is allocated.
MAX_IMAGE_PIXELS = 89_478_485
MAX_IMAGE_BYTES = 1 << 30  # an image file larger than this is refused unread


def is_image_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has one of :data:`IMAGE_EXTS` (case-insensitive); the file is not read."""
    return Path(path).suffix.lower() in IMAGE_EXTS


def not_a_regular_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file's content (missing, a symlink loop, a folder, a FIFO,
    a socket or a device), or ``None`` for a regular file. Reading a FIFO blocks until another
    process writes to it (forever, for a name in a batch), and a device never ends: such paths
    are refused on their type, before they are opened."""
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"))
    kinds += ((stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))
    kind = next((name for test, name in kinds if test(mode)), "a special file")
    return f"is {kind}, not a regular file"


def read_image(path: str | os.PathLike) -> tuple[np.ndarray | None, str | None]:
    """Decode an image as HxWx3 BGR uint8; return ``(image, None)`` or ``(None, reason)``.

    Never raises for a bad file: a missing or unreadable file, a folder, FIFO or device
    (:func:`not_a_regular_file`), an empty, oversized (header over :data:`MAX_IMAGE_PIXELS`),
    truncated or corrupt image is a reason, decoded in full (OpenCV refuses truncated data
    instead of padding it)."""
    special = not_a_regular_file(path)
    if special:
        return None, special
    try:
        size = os.path.getsize(path)
        if size > MAX_IMAGE_BYTES:
            return None, f"file of {size} bytes, over the limit of {MAX_IMAGE_BYTES}"
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        return None, f"cannot read: {e.strerror or e}"
    if data.size == 0:
        return None, "empty file"
    too_big = _header_too_big(data)
    if too_big:
        return None, too_big
    try:
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as e:  # OpenCV's own size limit, malformed headers
        return None, f"cannot decode image ({' '.join(str(e).split())[-120:]})"
    if image is None:
        return None, "cannot decode image (truncated, corrupt or unsupported format)"
    return image, None


def _header_too_big(data: np.ndarray) -> str | None:
    """The reason to refuse an image whose header claims over :data:`MAX_IMAGE_PIXELS` (read by
    PIL from the header alone), or ``None``. Formats PIL cannot identify are left to OpenCV."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # checked below
            with Image.open(io.BytesIO(data.tobytes())) as im:
                w, h = im.size
    except Image.DecompressionBombError as e:  # PIL's message gives the claimed size
        return f"image header over the limit of {MAX_IMAGE_PIXELS} pixels ({str(e).strip()})"
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
    if w * h > MAX_IMAGE_PIXELS:
        return f"image header claims {w}x{h} = {w * h} pixels, over the limit of {MAX_IMAGE_PIXELS}"
    return None


def encode_image(image: np.ndarray, ext: str = ".png") -> bytes:
    """``image`` (BGR or grey) encoded by OpenCV in the format of ``ext``.

    Raises:
        ValueError: OpenCV cannot encode it (an unknown extension, an empty or odd array).
    """
    try:
        ok, buf = cv2.imencode(ext, image)
    except cv2.error as e:
        raise ValueError(f"OpenCV cannot encode {ext} ({' '.join(str(e).split())[-120:]})") from e
    if not ok:
        raise ValueError(f"OpenCV cannot encode {ext}")
    return buf.tobytes()


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Encode ``image`` by ``path``'s extension (PNG when it has none) and save it atomically.

    Raises:
        ValueError: naming ``path``, when the image cannot be encoded.
    """
    ext = Path(path).suffix.lower() or ".png"
    try:
        data = encode_image(image, ext)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    write_bytes_atomic(path, data)


def png_data_uri(image: np.ndarray | bytes) -> str:
    """A BGR ``image`` (or PNG bytes) as a ``data:image/png;base64,...`` URI, for self-contained
    HTML."""
    png = image if isinstance(image, bytes) else encode_image(image, ".png")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def figure_png(fig, dpi: int = 120, tight: bool = False) -> bytes:
    """A matplotlib ``Figure`` (object API, no pyplot state) rendered on an Agg canvas, as PNG
    (``tight``: cropped to what is drawn)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    return buf.getvalue()


def fit_within(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` scaled (area interpolation, aspect kept) so its longer side is ``size``."""
    h, w = image.shape[:2]
    s = size / max(h, w, 1)
    return cv2.resize(
        image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )


def tile_grid(tiles: Sequence[np.ndarray], cols: int, fill: int = 0) -> np.ndarray:
    """One image with ``tiles`` (BGR, any sizes) row by row, ``cols`` per row, each in the top-left
    corner of a cell as large as the largest tile; the rest is ``fill``.

    Raises:
        ValueError: no tiles, or ``cols`` < 1.
    """
    if not tiles or cols < 1:
        raise ValueError("tile_grid needs at least one tile and one column")
    ch = max(t.shape[0] for t in tiles)
    cw = max(t.shape[1] for t in tiles)
    rows = -(-len(tiles) // cols)
    grid = np.full((rows * ch, cols * cw, 3), fill, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        if t.ndim == 2:
            t = cv2.cvtColor(t, cv2.COLOR_GRAY2BGR)
        grid[r * ch : r * ch + t.shape[0], c * cw : c * cw + t.shape[1]] = t
    return grid
