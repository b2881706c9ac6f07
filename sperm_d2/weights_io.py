"""Model files read as data: nothing in a checkpoint runs when it is loaded.

A pickle can call any function on load, so no model file goes through plain ``pickle``:

* torch files (``.pth``, ``.pt``, ``.pyth``...) load with ``torch.load(weights_only=True)``;
* detectron2 / Detectron (Caffe2) model-zoo ``.pkl`` files load with :class:`_WeightsUnpickler`,
  which builds numpy arrays and refuses every other global the pickle names.

Either way a refused file is a :class:`CheckpointError` naming the file and what it would have
called. Both the training checkpointer (``sperm_d2.engine.checkpoint``) and the inference side
(``sperm_d2.inference``, ``sperm_d2.parts``) load through this module,
the latter by :class:`SafeCheckpointLoading`, a mixin for detectron2's ``DetectionCheckpointer``;
:func:`sperm_d2.model_weights.load_model_weights` puts a file into a built model whole or
refuses it.
"""

from __future__ import annotations

import collections
import logging
import pickle
import re
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from sperm_d2.errors import SpermInputError

try:  # numpy >= 2 pickles name numpy._core, older ones numpy.core (a deprecated alias in 2.x)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

logger = logging.getLogger(__name__)


class CheckpointError(SpermInputError, RuntimeError):
    """A checkpoint that cannot be used: missing, unreadable, refused (it would run code), or no
    usable one to resume from (each candidate named with its problem)."""


#: the only globals a model-zoo pickle may name: numpy arrays (``_reconstruct`` + ``ndarray``,
#: or protocol 5's ``_frombuffer``; their ``dtype``), numpy scalars, ``OrderedDict`` state
#: dicts, and ``_codecs.encode``, which Python 3 writes for ``bytes`` in protocol 2 (a text
#: codec: it converts, it runs nothing)
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _numeric._frombuffer,
    ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): __import__("_codecs").encode,
}


def _refused(path: str | Path, what: str, label: str = "") -> CheckpointError:
    return CheckpointError(
        f"{_named(path, label)}refused to load: {what}; a weights file holds only tensors and "
        "arrays (nothing in it was run)"
    )


def _named(path: str | Path, label: str) -> str:
    """``"<path>: "``, or ``"<path>: <label> "`` (the argument that named the file)."""
    return f"{path}: {label} " if label else f"{path}: "


class _WeightsUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that resolves only :data:`_ALLOWED_GLOBALS`: a pickle naming any
    other function or class (``os.system``, ``builtins.eval``...) is refused before it is
    called. ``latin1`` reads the Python 2 pickles of the Detectron (Caffe2) model zoo."""

    def __init__(self, f: IO[bytes], path: str | Path, label: str = "") -> None:
        super().__init__(f, encoding="latin1")
        self.path, self.label = path, label

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            raise _refused(self.path, f"it would call {module}.{name}", self.label)
        return found

    def persistent_load(self, pid: Any) -> Any:
        raise _refused(self.path, "it refers to external objects (a persistent id)", self.label)


def load_pickle(path: str | Path, label: str = "") -> Any:
    """Read a ``.pkl`` model file with :class:`_WeightsUnpickler` (``label``: the argument that
    named it, shown after the path in errors).

    Raises:
        CheckpointError: a refused global, or not a readable pickle.
    """
    try:
        with open(path, "rb") as f:
            return _WeightsUnpickler(f, path, label).load()
    except CheckpointError:
        raise
    except OSError as e:
        raise CheckpointError(f"{_named(path, label)}cannot be read ({e.strerror or e})") from None
    except Exception as e:  # noqa: BLE001 - a garbled pickle raises many types, none runs code
        raise CheckpointError(
            f"{_named(path, label)}is not a readable weights pickle "
            f"({type(e).__name__}: {first_line(e)[:200]})"
        ) from None


def model_zoo_checkpoint(data: Any, path: str | Path) -> dict:
    """A loaded ``.pkl`` as detectron2's ``DetectionCheckpointer._load_file`` returns it: a
    detectron2 model-zoo file (``model`` and ``__author__``) as is; a Detectron / Caffe2 one
    (its ``blobs``, ``*_momentum`` dropped) as ``{"model", "__author__": "Caffe2",
    "matching_heuristics": True}``, so detectron2 converts its names."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: holds a {type(data).__name__}, not weights")
    if "model" in data and "__author__" in data:
        return data
    if "blobs" in data:  # detection models have "blobs", ImageNet models do not
        data = data["blobs"]
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: its 'blobs' are a {type(data).__name__}, not weights")
    data = {k: v for k, v in data.items() if not str(k).endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}


def torch_load(f: str | Path | IO[bytes], mmap: bool = False, label: str = "") -> Any:
    """``torch.load(weights_only=True)`` onto the CPU; a refused pickle is a
    :class:`CheckpointError` naming what it would call (torch's own message suggests loading
    it unsafely)."""
    try:
        return torch.load(f, map_location=torch.device("cpu"), weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        text = str(e)
        if not text.startswith("Weights only load failed"):
            raise
        name = getattr(f, "name", f)
        glob = re.search(r"GLOBAL (\S+?)[ .]*(?:\s|$)", text)
        if glob:
            raise _refused(name, f"it would call {glob.group(1)}", label) from None
        detail = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, re.S)
        reason = " ".join(detail.group(1).split()) if detail else "a pickle torch does not load"
        raise _refused(name, f"not plain weights ({reason[:200]})", label) from None


def load_weights(path: str | Path, mmap: bool = False, label: str = "") -> Any:
    """A local model file as data: ``.pkl`` by :func:`load_pickle` (in detectron2's dict shape,
    :func:`model_zoo_checkpoint`), anything else by :func:`torch_load` (``mmap``: tensors not
    read, zip-format files only)."""
    if str(path).endswith(".pkl"):
        return model_zoo_checkpoint(load_pickle(path, label), path)
    return torch_load(str(path), mmap, label)


def check_weights_file(path: str, label: str = "MODEL.WEIGHTS") -> Any:
    """Fail now, in one line, if ``path`` is not a readable checkpoint; returns what it holds
    (``None`` for a URL, left to detectron2's loader). ``label`` names the file in the message
    after its path: the argument that gave it (``MODEL.WEIGHTS``, ``--weights``...) or what it is
    (``the part run's checkpoint``).

    Torch files are memory-mapped where the format allows (the tensors are not read); ``.pkl``
    files are read whole by the restricted unpickler, so a pickle that would run code is
    refused here, before any model is built.

    Raises:
        CheckpointError: missing, empty, not a file, refused, or not a checkpoint.
    """
    if "://" in path:
        return None
    p = Path(path).expanduser()
    if not p.exists():
        raise CheckpointError(f"{path}: {label} file not found")
    if not p.is_file():
        raise CheckpointError(f"{path}: {label} is not a file")
    if p.stat().st_size == 0:
        raise CheckpointError(f"{path}: {label} file is empty")
    if p.suffix == ".pkl":
        return load_weights(p, label=label)
    try:
        # mmap (tensors not read) needs the zip format of torch >= 1.6; older files load whole
        obj = torch_load(str(p), zipfile.is_zipfile(p), label)
    except CheckpointError:
        raise
    except Exception as e:  # torch raises many types for a truncated or foreign file
        raise CheckpointError(
            f"{path}: {label} is not a readable torch checkpoint "
            f"({type(e).__name__}: {first_line(e)[:200]})"
        ) from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: {label} holds a {type(obj).__name__}, not weights")
    return obj


class SafeCheckpointLoading:
    """Mixin for detectron2's ``DetectionCheckpointer`` (listed first among the bases): its
    files load as data. ``.pkl`` goes through :func:`load_pickle` instead of plain ``pickle``,
    then detectron2's usual conversion; ``.pyth`` (pycls) and torch files through
    :func:`torch_load`. Everything else (URL queries, name matching) stays detectron2's."""

    def _load_file(self, filename: str) -> dict:
        if filename.endswith(".pkl"):
            data = model_zoo_checkpoint(load_pickle(filename), filename)
            logger.info("Reading a file from '%s'", data["__author__"])
            return data
        if filename.endswith(".pyth"):  # pycls; no one else seems to use the extension
            data = torch_load(filename)
            if not isinstance(data, dict) or not isinstance(data.get("model_state"), dict):
                raise CheckpointError(f"{filename}: a .pyth (pycls) file holds no model_state")
            state = {
                k: v
                for k, v in data["model_state"].items()
                if not k.endswith("num_batches_tracked")
            }
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        return super()._load_file(filename)  # detectron2's, reading torch files by _torch_load

    def _torch_load(self, f: str) -> Any:
        return torch_load(f)


def check_model_weights(
    path: str, label: str, prefixes: tuple[str, ...], model: str = "this model"
) -> None:
    """:func:`check_weights_file`, then that the checkpoint holds parameters whose names start
    with ``prefixes`` (``model`` names what they belong to in the message): another model's
    checkpoint is one line. A URL and a ``.pkl`` (model-zoo names, converted by detectron2 on
    load) pass after the file check."""
    obj = check_weights_file(path, label)  # read as data: a file that would run code is refused
    if obj is None or Path(path).suffix == ".pkl":
        return
    state = obj.get("model", obj)
    keys = [k for k in state if isinstance(k, str)] if isinstance(state, dict) else []
    if not any(k.startswith(prefixes) for k in keys):
        raise CheckpointError(
            f"{path}: {label} holds no weights of {model} (no {'/'.join(prefixes)}* parameters "
            f"among its {len(keys)}); is it another model's checkpoint?"
        )


def first_line(e: BaseException) -> str:
    """The first line of ``e``'s message (``"no message"`` when empty)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else "no message"
