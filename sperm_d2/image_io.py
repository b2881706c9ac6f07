"""Image files shared by every layer (data, evaluation, inference, reports): the one list of image
extensions, decoding that reports a bad file as a value, checked encoding with atomic writes, and
the one grid tiler for contact sheets. Plain OpenCV/PIL/numpy: no detectron2, no torch.

Orientation, one rule for every reader: an image is the upright image a viewer and labelme show,
its EXIF orientation tag applied exactly once. :func:`read_image` (OpenCV, inference and
evaluation) does so for every format; conversion's size check (``data/image_checks.py:image_size``)
measures the upright size with :func:`exif_orientation` read after decoding; detectron2's
training reader (``detection_utils.read_image``) applies the tag itself, which is right except
for a format Pillow already turns upright on open while still reporting the tag (a TIFF, Pillow
>= 10): it would be turned twice, so :func:`preoriented_exif_tag` finds those and
``prepare_data.py`` refuses them (``infer.py --labelme`` writes them upright without the tag)."""

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

#: Extensions read as images everywhere, the one list of every tool: labelme images and class
#: folders in prepare_data.py, inputs of infer.py, class folders of evaluate.py. GIF is one:
#: OpenCV (inference) and detectron2's training reader decode it alike (its first frame).
IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})


def accepted_formats() -> str:
    """:data:`IMAGE_EXTS` for a message: ``.bmp, .gif, .jpeg, ...``."""
    return ", ".join(sorted(IMAGE_EXTS))


#: Largest image decoded (PIL's decompression-bomb threshold, ~9459 x 9459 pixels): a header
#: claiming more is refused before any pixel buffer is allocated.
MAX_IMAGE_PIXELS = 89_478_485
MAX_IMAGE_BYTES = 1 << 30  # an image file larger than this is refused unread
#: Smallest image side and largest aspect ratio read: a 1-px image or a 10000x20 strip holds no
#: head, and the test-size resize turns its short side into 0-2 px (a crash in the model);
#: refused by prepare_data.py, skipped and listed by infer.py and evaluate.py.
MIN_IMAGE_SIDE = 16
MAX_ASPECT_RATIO = 20


def image_shape_problem(width: int, height: int) -> str | None:
    """Why an image of ``width`` x ``height`` px is not read (naming the limit), or ``None``."""
    if min(width, height) < MIN_IMAGE_SIDE:
        return f"is {width}x{height} px, below the smallest side of {MIN_IMAGE_SIDE} px"
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return (
            f"is {width}x{height} px, its long side more than {MAX_ASPECT_RATIO} times its short "
            f"side (the largest aspect ratio read is {MAX_ASPECT_RATIO}:1)"
        )
    return None


#: EXIF tag of the image orientation; orientations 5-8 swap width and height
EXIF_ORIENTATION = 0x0112
TRANSPOSED_ORIENTATIONS = frozenset({5, 6, 7, 8})


def exif_orientation(im: Image.Image) -> int | None:
    """The EXIF orientation tag of an open PIL image (2-8: still to apply), or ``None``. Read
    after ``im.load()`` it is what is left to apply once Pillow has decoded the pixels (Pillow
    applies and removes a TIFF's tag on load); read before, the tag as stored."""
    try:
        value = im.getexif().get(EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - a malformed EXIF block: no orientation, as detectron2
        return None
    return value if value in range(2, 9) else None


def preoriented_exif_tag(path: str | os.PathLike) -> int | None:
    """The stored EXIF orientation (2-8) of an image Pillow turns upright on open while still
    reporting the tag before decoding (a TIFF), which detectron2's training reader therefore
    turns a second time; ``None`` for every other image, and for a file PIL cannot read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                stored = exif_orientation(im)
                if stored is None:
                    return None
                im.load()
                return stored if exif_orientation(im) != stored else None
    except Exception:  # noqa: BLE001 - unreadable: the reader that decodes it says why
        return None


#: Folders and files that NAS boxes, file managers and archivers leave beside the data (their
#: thumbnails look like images: read as crops they leak between splits and count samples twice).
#: Any name starting with "." is debris too (``.thumbnails/``, AppleDouble ``._x.png``, a killed
#: run's staging folder, the tools' manifests).
DEBRIS_NAMES = frozenset(
    {
        "@eadir",  # Synology thumbnails
        "__macosx",  # macOS zip resource forks
        "#recycle",  # Synology recycle bin
        "$recycle.bin",  # Windows recycle bin
        "system volume information",
        "thumbs.db",  # Windows thumbnail cache
        "desktop.ini",
    }
)


#: mean absolute difference (0-255) of two 32x32 grey thumbnails above which two encodings are
#: different pictures (re-encoding one picture as JPEG stays far below it)
PICTURE_DIFFERENCE = 24.0


def _upright_thumbnail(data: bytes) -> tuple[tuple[int, int], np.ndarray]:
    """(upright width and height, 32x32 grey thumbnail) of an encoded image, cheaply: a JPEG is
    decoded at 1/8 scale (libjpeg's DCT scaling), the EXIF orientation applied once."""
    with Image.open(io.BytesIO(data)) as im:
        w, h = im.size
        im.draft("L", (max(1, w // 8), max(1, h // 8)))
        orientation = exif_orientation(im)
        grey = np.asarray(im.convert("L"))
    if orientation in TRANSPOSED_ORIENTATIONS:
        w, h = h, w
    if orientation and orientation > 1:
        grey = np.asarray(Image.fromarray(grey).transpose(_EXIF_TRANSPOSE[orientation]))
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    return (w, h), small


#: PIL transposition that turns an image with EXIF orientation 2-8 upright
_EXIF_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def picture_difference(a: bytes, b: bytes) -> str | None:
    """Why two encoded images are not the same picture (upright size, or content past
    :data:`PICTURE_DIFFERENCE`), or ``None`` when they are (a re-encoding of it included);
    undecodable input is a difference."""
    try:
        (size_a, thumb_a), (size_b, thumb_b) = _upright_thumbnail(a), _upright_thumbnail(b)
    except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        return f"one of them cannot be decoded ({e})"
    if size_a != size_b:
        return f"{size_a[0]}x{size_a[1]} vs {size_b[0]}x{size_b[1]} px"
    diff = float(np.abs(thumb_a - thumb_b).mean())
    if diff > PICTURE_DIFFERENCE:
        return f"different pictures of one size (mean grey difference {diff:.0f} of 255)"
    return None


def is_debris(name: str) -> bool:
    """Whether a file or folder name is debris (:data:`DEBRIS_NAMES`, case-insensitive, or a
    dot-name), never an input."""
    return name.startswith(".") or name.lower() in DEBRIS_NAMES


def in_debris(rel: str | os.PathLike) -> bool:
    """Whether the path ``rel`` (relative to an input folder) is or lies in debris: the one rule
    of every folder walk (prepare_data.py, --from-folders, infer.py, evaluate.py --folders)."""
    return any(is_debris(part) for part in Path(rel).parts)


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
    instead of padding it), and so is an image too small or too elongated to hold a head
    (:func:`image_shape_problem`). The image is upright: its EXIF orientation applied once."""
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
    shape = image_shape_problem(image.shape[1], image.shape[0])
    if shape:
        return None, f"image {shape}"
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
