"""YAML is read as data: a Python tag in a config or a label map is refused in one line and
runs nothing (PyYAML's unsafe loader would call ``os.system`` for it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sperm_d2.config import ConfigError, setup_cfg
from sperm_d2.data.labels import LabelMap, LabelMapError

from .conftest import REPO
from .hostile_inputs import load_tool, run_main

INSTANT = REPO / "configs/quick_schedules/sperm_mask_rcnn_R_50_FPN_instant_test.yaml"


def _tagged(folder: Path, name: str, body: str) -> tuple[Path, Path]:
    """``folder/name`` whose value would run ``touch <marker>`` under an unsafe YAML loader."""
    marker = folder / f"{name}.ran"
    path = folder / name
    path.write_text(body.format(tag=f"!!python/object/apply:os.system ['touch {marker}']"))
    return path, marker


def test_a_python_tag_in_a_config_is_refused(tmp_path) -> None:
    path, marker = _tagged(tmp_path, "evil.yaml", f"_BASE_: {INSTANT}\nSEED: {{tag}}\n")
    with pytest.raises(ConfigError, match=r"evil.yaml: unsupported YAML tag"):
        setup_cfg(str(path))
    assert not marker.exists()


def test_a_python_tag_in_a_base_config_is_refused(tmp_path) -> None:
    base, marker = _tagged(tmp_path, "base.yaml", "SEED: {tag}\n")
    child = tmp_path / "child.yaml"
    child.write_text(f"_BASE_: {base.name}\n")
    with pytest.raises(ConfigError, match=r"base.yaml: unsupported YAML tag"):
        setup_cfg(str(child))
    assert not marker.exists()


@pytest.mark.parametrize("tool", ["train_net", "infer"])
def test_tools_refuse_a_tagged_config_in_one_line(tmp_path, tool) -> None:
    path, marker = _tagged(tmp_path, "evil.yaml", f"_BASE_: {INSTANT}\nSEED: {{tag}}\n")
    argv = ["--config-file", str(path)]
    if tool == "infer":
        (tmp_path / "in").mkdir()
        argv += ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    else:
        argv += ["OUTPUT_DIR", str(tmp_path / "out")]
    res = run_main(load_tool(tool).main, argv)
    assert res.exception is None and res.code == 2, res.stderr
    (line,) = res.lines(f"{tool}.py")
    assert line.startswith(f"{tool}.py: error: ") and "evil.yaml" in line and "tag" in line
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_python_tag_in_a_label_map_is_refused(tmp_path) -> None:
    path, marker = _tagged(tmp_path, "labels.yaml", "classes: [good, bad]\nlabels:\n  x: {tag}\n")
    with pytest.raises(LabelMapError, match=r"labels.yaml: invalid YAML") as e:
        LabelMap.load(path)
    assert "\n" not in str(e.value)
    assert not marker.exists()


def test_prepare_data_refuses_a_tagged_label_map_in_one_line(tmp_path) -> None:
    path, marker = _tagged(tmp_path, "labels.yaml", "classes: [good, bad]\nlabels:\n  x: {tag}\n")
    (tmp_path / "in").mkdir()
    argv = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--label-map"]
    res = run_main(load_tool("prepare_data").main, argv + [str(path)])
    assert res.exception is None and res.code == 2, res.stderr
    errors = [line for line in res.lines("prepare_data.py") if "error:" in line]
    assert len(errors) == 1 and "labels.yaml" in errors[0], res.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()
