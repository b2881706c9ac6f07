"""Label maps: raw annotation labels and class-folder names -> project classes.

A label map is a small YAML file (see ``configs/labels/default.yaml``)::

    classes: [good, bad]        # category ids follow this order: good=1, bad=2
    labels:
      good morphological quality: good
      01_normal: good
      tapered: bad
      non_sperm: null           # null = ignore (no instance; an image of only these is a negative)

Matching is case-insensitive and treats ``-``, ``_`` and runs of spaces alike, so
``"Bad_Morphological-Quality"`` matches ``bad morphological quality``. Every class name also maps
to itself. A label that is not listed is an error (:class:`UnknownLabelError`), never a guess.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import yaml

from sperm_d2.errors import SpermInputError

#: the part classes of the Sperm Parsing data (labelme labels of a sperm's parts), in the part
#: segmenter's label-map order
PART_CLASSES = ("acrosome", "nucleus", "vacuole", "midpiece", "tail")

_SEPARATORS = re.compile(r"[\s_\-]+")


class LabelMapError(SpermInputError, ValueError):
    """A label map file that cannot be used (missing, malformed, unknown target class)."""


class UnknownLabelError(SpermInputError, KeyError):
    """A raw label that the label map does not list (neither as a class nor as ignored)."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class _DuplicateKey(ValueError):
    pass


class _UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (PyYAML keeps the last
    silently, so ``tapered: bad`` then ``tapered: good`` would quietly relabel a class)."""

    def construct_mapping(self, node, deep=False):  # noqa: D102 (PyYAML hook)
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: PyYAML reports it below
                continue
            if duplicate:
                raise _DuplicateKey(
                    f"line {key_node.start_mark.line + 1}: key {key!r} is given twice"
                )
        return super().construct_mapping(node, deep)


def normalize_label(raw: str) -> str:
    """Canonical form used for matching: lower case, ``-``/``_``/spaces collapsed to one space."""
    return _SEPARATORS.sub(" ", str(raw)).strip().lower()


@dataclass(frozen=True)
class LabelMap:
    """Maps raw labels to classes; category ids are fixed by the order of :attr:`classes`."""

    classes: tuple[str, ...]
    mapping: Mapping[str, str | None] = field(default_factory=dict)  # normalized raw -> class|None
    source: str = "<memory>"

    def __post_init__(self) -> None:
        if not self.classes:
            raise LabelMapError(f"{self.source}: 'classes' is empty")
        full: dict[str, str | None] = {}
        for c in self.classes:
            key = normalize_label(c)
            if not key:
                raise LabelMapError(f"{self.source}: class name {c!r} is blank")
            if key in full:  # "good" and "Good" would be one label but two category ids
                raise LabelMapError(
                    f"{self.source}: classes {full[key]!r} and {c!r} are the same name (matching "
                    "ignores case, '-', '_' and spaces)"
                )
            full[key] = c
        seen: dict[str, str] = {}
        for raw, cls in self.mapping.items():
            if cls is not None and cls not in self.classes:
                raise LabelMapError(
                    f"{self.source}: label {raw!r} maps to {cls!r}, not one of {list(self.classes)}"
                )
            key = normalize_label(raw)
            if not key:
                raise LabelMapError(f"{self.source}: label {raw!r} is blank")
            if key in seen and full[key] != cls:
                raise LabelMapError(
                    f"{self.source}: labels {seen[key]!r} and {raw!r} are the same label (matching "
                    f"ignores case, '-', '_' and spaces) but map to {full[key]!r} and {cls!r}"
                )
            if key not in seen and key in full and full[key] != cls:
                raise LabelMapError(
                    f"{self.source}: label {raw!r} is the class {full[key]!r} but maps to {cls!r}"
                )
            seen[key] = raw
            full[key] = cls
        object.__setattr__(self, "mapping", full)

    @classmethod
    def from_dict(cls, data: Mapping, source: str = "<memory>") -> "LabelMap":
        """Build from ``{"classes": [...], "labels": {raw: class | None}}``."""
        if not isinstance(data, Mapping) or "classes" not in data:
            raise LabelMapError(f"{source}: expected a mapping with 'classes' and 'labels'")
        classes = data["classes"]
        labels = data.get("labels") or {}
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise LabelMapError(f"{source}: 'classes' must be a list of names")
        if not isinstance(labels, Mapping):
            raise LabelMapError(f"{source}: 'labels' must be a mapping raw label -> class or null")
        for k in labels:  # YAML reads `yes:`, `no:`, `1:`, `null:` as non-text keys
            if not isinstance(k, str):
                raise LabelMapError(f"{source}: label {k!r} is not text; quote it in the YAML")
        return cls(tuple(classes), dict(labels), source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LabelMap":
        """Read a label map YAML file."""
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.load(f, Loader=_UniqueKeyLoader)
        except OSError as e:
            raise LabelMapError(f"{path}: cannot read label map ({e.strerror or e})") from e
        except UnicodeDecodeError:
            raise LabelMapError(f"{path}: not a UTF-8 text file") from None
        except _DuplicateKey as e:
            raise LabelMapError(f"{path}: {e}") from None
        except yaml.YAMLError as e:
            raise LabelMapError(f"{path}: invalid YAML ({' '.join(str(e).split())})") from e
        except RecursionError:
            raise LabelMapError(f"{path}: invalid YAML (nested too deeply)") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def default(cls, classes: Sequence[str] = ("good", "bad")) -> "LabelMap":
        """A map that knows only the class names themselves."""
        return cls(tuple(classes))

    def knows(self, raw_label: str) -> bool:
        """Whether ``raw_label`` is listed (as a class or as ignored)."""
        return normalize_label(raw_label) in self.mapping

    def class_of(self, raw_label: str) -> str | None:
        """The class of ``raw_label``; ``None`` means ignore it.

        Raises:
            UnknownLabelError: the label is not in the map.
        """
        key = normalize_label(raw_label)
        try:
            return self.mapping[key]
        except KeyError:
            raise UnknownLabelError(
                f"unknown label {raw_label!r} (not in label map {self.source}; add it there, "
                f"mapped to one of {list(self.classes)} or null)"
            ) from None

    def category_id(self, class_name: str) -> int:
        """COCO category id of a class: its 1-based position in :attr:`classes`."""
        try:
            return self.classes.index(class_name) + 1
        except ValueError:
            raise LabelMapError(
                f"{self.source}: {class_name!r} is not a class ({list(self.classes)})"
            ) from None

    def coco_categories(self) -> list[dict]:
        """The COCO ``categories`` list, ids fixed by class order."""
        return [
            {"id": i + 1, "name": c, "supercategory": "sperm"} for i, c in enumerate(self.classes)
        ]
