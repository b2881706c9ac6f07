"""The import rules of ARCHITECTURE.md, read from the source with ``ast`` (nothing is imported)."""

import ast
from pathlib import Path

import pytest

from .conftest import REPO

PKG = REPO / "sperm_d2"
LEAVES = {
    "atomic",
    "output_folder",
    "file_glob",
    "file_walk",
    "masks",
    "image_io",
    "video_io",
    "lazy",
    "warnings_filter",
    "cli_warnings",
    "cli",
    "precision",
    "roi_align",
    "point_rend",
    "mask_score",
    "errors",
    "weights_io",
    "model_weights",
    "head_frame",
    "flip_views",
}

#: package -> sperm_d2 packages it must never import (at module level or inside functions)
FORBIDDEN = {
    "config": {"data", "engine", "grading", "inference", "evaluation", "benchmark", "demo_report"},
    "data": {"config", "engine", "grading", "inference", "evaluation", "benchmark", "demo_report"},
    "grading": {"engine", "inference", "evaluation", "benchmark", "demo_report"},
    "parts": {"engine", "inference", "evaluation", "benchmark", "demo_report", "grading"},
    "engine": {"inference", "benchmark", "demo_report"},
    "inference": {"engine", "evaluation", "benchmark", "demo_report"},
    "evaluation": {"engine", "benchmark", "demo_report"},
}
#: evaluation modules the trainer imports: they must stay below inference
TRAINER_EVALUATION = {"__init__", "evaluators", "pixellib_evaluator", "pixellib_ap"}
#: modules that must load without torch or detectron2 (with what they import from sperm_d2)
NUMPY_ONLY = ["sperm_d2.evaluation.classification", "sperm_d2.evaluation.pixellib_ap"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            names.add(base)
            names |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
    return names


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
GRAPH = {name: {m for m in _imports(p) if m in MODULES} for name, p in MODULES.items()}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


@pytest.mark.parametrize("area", sorted(FORBIDDEN))
def test_packages_import_only_downward(area):
    bad = [
        f"{m} imports {dep}"
        for m, deps in GRAPH.items()
        if _area(m) == area
        for dep in deps
        if _area(dep) in FORBIDDEN[area]
    ]
    assert not bad, "\n".join(bad)


def test_leaf_helpers_import_only_leaf_helpers():
    bad = [
        f"{m} imports {dep}"
        for m, deps in GRAPH.items()
        if _area(m) in LEAVES
        for dep in deps
        if _area(dep) not in LEAVES
    ]
    assert not bad, "\n".join(bad)


def test_the_trainers_evaluator_does_not_reach_inference():
    seen, todo = set(), [f"sperm_d2.evaluation.{m}" for m in TRAINER_EVALUATION if m != "__init__"]
    todo.append("sperm_d2.evaluation")
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += GRAPH[m]
    assert not {m for m in seen if _area(m) in {"inference", "engine"}}


@pytest.mark.parametrize("module", NUMPY_ONLY)
def test_numpy_only_modules_import_no_torch_or_detectron2(module):
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        heavy = {n for n in _imports(MODULES[m]) if n.split(".")[0] in {"torch", "detectron2"}}
        assert not heavy, f"{m} (reached from {module}) imports {sorted(heavy)}"
        todo += GRAPH[m]


def test_no_import_cycles_between_modules():
    """Module-level imports only (an import inside a function runs later, on use)."""
    top = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        body = ast.Module(
            body=[n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        )
        deps = set()
        for node in body.body:
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif node.module:
                deps |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        top[name] = {d for d in deps if d in MODULES and d != name}
    state: dict[str, int] = {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in top[m]:
            if state.get(d) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(d) :] + [d]))
            if d not in state:
                visit(d, stack + [d])
        state[m] = 2

    for m in sorted(top):
        if m not in state:
            visit(m, [m])
