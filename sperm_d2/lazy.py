"""Lazy package attributes (PEP 562): a package names what it offers without importing the heavy
modules behind it (detectron2, torch) until a name is first used."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(
    package: str, modules: dict[str, tuple[str, ...]], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: each name listed in ``modules`` (module -> the
    names it defines) is imported on first access and cached in ``namespace`` (the package's
    ``globals()``), so later look-ups are plain attribute reads."""
    exports = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(exports[name]), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
