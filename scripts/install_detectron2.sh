#!/usr/bin/env bash
# Install detectron2's pure-Python code into a Python environment, the one recipe shared by
# `make install` and docker/Dockerfile (see README.md "Install details").
#
# detectron2 is not on PyPI under its own name and has no wheel for current torch. The wheel
# sal-detectron2==0.7.2 carries upstream commit a59f0563 byte-for-byte (but two trivial lines),
# tagged cp310, with a `_C` extension built for torch 2.3.1 that cannot load here and a stray
# top-level `tools` package. We download it, verify its sha256, unpack it into site-packages,
# drop `_C` and `tools` and its `numpy<2` requirement (see below), then install the dependencies
# its metadata does not declare.
#
# Usage: scripts/install_detectron2.sh [PYTHON]     (default: python3)
set -euo pipefail

PY="${1:-python3}"
WHEEL_NAME="sal-detectron2==0.7.2"
WHEEL_SHA256="491af0c7f79bdb2d178e46f6cb16a97c4ac968d45c41ea3f6b6435d59bbee561"
# detectron2's run-time dependencies: those its metadata leaves out (fvcore, iopath, opencv;
# setuptools<82: model_zoo imports pkg_resources) and those it declares, installed here because
# the wheel is unpacked rather than pip-installed (black among them: without it pip's resolver
# prints "ERROR: ... sal-detectron2 0.7.2 requires black, which is not installed").
DEPS=(
  "fvcore==0.1.5.post20221221" "iopath<0.1.11" pycocotools opencv-python-headless matplotlib
  termcolor yacs tabulate cloudpickle tqdm "omegaconf<2.4" hydra-core packaging tensorboard
  black Pillow "setuptools<82"
)

fail() {
  echo "install_detectron2: $1" >&2
  echo "install_detectron2: what to do: $2" >&2
  exit 1
}

site=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
  || fail "cannot run '$PY'" "pass the environment's python as the first argument"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "==> downloading $WHEEL_NAME"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.10 -d "$tmp" "$WHEEL_NAME" \
  || fail "could not download $WHEEL_NAME" "check that the PyPI registry is reachable (pip config list)"
wheel=$(ls "$tmp"/*.whl)
got=$(sha256sum "$wheel" | cut -d' ' -f1)
[ "$got" = "$WHEEL_SHA256" ] \
  || fail "sha256 mismatch for $(basename "$wheel"): got $got, want $WHEEL_SHA256" \
          "do not install it; the registry served a different file: report it"

echo "==> installing detectron2 into $site"
"$PY" -m zipfile -e "$wheel" "$tmp/site" \
  || fail "could not unpack $(basename "$wheel")" "download it again; the file may be truncated"
rm -rf "$tmp/site/tools" "$tmp/site"/detectron2/_C*.so "$tmp/site/bin"
# The wheel's metadata says `Requires-Dist: numpy<2`, but the pure-Python code we keep runs on
# numpy 2 (the whole test suite does; the compiled `_C` is removed above). Left in, every later
# `pip install` into this environment prints "ERROR: pip's dependency resolver ...
# sal-detectron2 0.7.2 requires numpy<2" for a conflict that is not there, so the line is
# dropped from the copy we install. (RECORD keeps the wheel's hash of METADATA; pip does not
# check installed files' hashes, and uninstalls by path.)
meta=$(ls "$tmp/site"/sal_detectron2-*.dist-info/METADATA)
grep -q '^Requires-Dist: numpy<2$' "$meta" \
  || fail "$(basename "$wheel")'s METADATA has no 'Requires-Dist: numpy<2' line to drop" \
          "check the wheel's metadata and update this script"
sed -i '/^Requires-Dist: numpy<2$/d' "$meta"
rm -rf "$site/detectron2" "$site"/sal_detectron2-*.dist-info
cp -r "$tmp/site/detectron2" "$tmp/site"/sal_detectron2-*.dist-info "$site/"

echo "==> installing detectron2's dependencies"
"$PY" -m pip install -q "${DEPS[@]}" \
  || fail "could not install detectron2's dependencies" "see pip's message above"

if "$PY" -c "from detectron2 import _C" 2>/dev/null; then
  fail "a compiled detectron2._C is importable" "remove detectron2/_C*.so from $site"
fi
# the one known-harmless warning of this import (torch deprecates the jit.script detectron2 uses)
"$PY" -W 'ignore:`torch.jit.script` is deprecated:FutureWarning' \
  -c "import detectron2.engine, detectron2.modeling, detectron2.evaluation" \
  || fail "detectron2 does not import" "see the traceback above"
numpy_version=$("$PY" -c 'import numpy; print(numpy.__version__)')
echo "==> detectron2 ok (numpy $numpy_version is fine: the wheel's numpy<2 pin is dropped, see above)"
