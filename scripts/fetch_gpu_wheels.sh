#!/usr/bin/env bash
# Downloads, here (where PyPI is reachable), the Python 3.12 x86-64 wheels that
# scripts/gpu_check.sh installs on a GPU machine that reaches no network.
#
#   bash scripts/fetch_gpu_wheels.sh            # -> .gpu_wheels/ (git-ignored)
#   bash scripts/fetch_gpu_wheels.sh DIR        # -> DIR
#
# The GPU machine (see BENCHMARKS.md, "GPU check") already has Python 3.12, jax
# 0.11.2 with CUDA 13, flax, optax, orbax-checkpoint, numpy, torch 2.11 and the
# packages listed in ON_DEVICE below. lrr_jax needs these besides: ml-collections,
# tensorflow-datasets, array_record, tensorboardX, mnist1d, grain, and the dependencies
# of those that the machine lacks. They are pinned to the versions this
# project's tests run with.
#
# DIR/*.whl are always installed there; DIR/fallback/*.whl only where an import
# probe fails: pytest (and its plugins' base) when the machine has none, protobuf
# when the machine's is older than the gencode of the carried *_pb2 modules.
# At the end a closure check reads every carried wheel's Requires-Dist (for
# CPython 3.12 on Linux x86-64) and fails if a requirement is neither carried
# nor on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.gpu_wheels}
PY=${PYTHON:-python3}

WHEELS=(
  ml-collections==1.1.0
  tensorflow-datasets==4.9.10
  array-record==0.8.6
  tensorboardX==2.6.5
  mnist1d==0.0.2.post1
  importlib-resources==7.1.0      # etils.epath (tfds) imports it
  tensorflow-metadata==1.21.0     # tfds
  googleapis-common-protos==1.76.0
  simple-parsing==0.1.9           # tfds
  docstring-parser==0.18.0        # simple-parsing
  dm-tree==0.1.10                 # tfds
  immutabledict==4.3.1            # tfds
  termcolor==3.3.0                # tfds
  toml==0.10.2                    # tfds
  grain==0.2.18                   # the streaming input pipeline (lrr_jax/data/stream.py)
  cloudpickle==3.1.3              # grain
  portpicker==1.6.0               # grain
)
SDIST_ONLY=(promise==2.3)         # tfds; pure Python, published as an sdist only
FALLBACK=(pytest==9.2.0 pluggy==1.7.0 iniconfig==2.3.1 pygments==2.21.0 packaging==26.4
          protobuf==7.36.2)
# What the GPU machine's image already holds (its package list, 2026-11-17),
# as far as the packages above need it.
ON_DEVICE="absl-py attrs certifi charset-normalizer etils filelock fsspec idna matplotlib
  numpy packaging pillow pluggy iniconfig pygments protobuf psutil pyarrow pytest pyyaml
  requests scipy setuptools six tqdm typing-extensions urllib3 wrapt zipp"

PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
           --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
GET=("$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12
     --implementation cp "${PLATFORMS[@]}")

rm -rf "$DEST"
mkdir -p "$DEST/fallback"
"${GET[@]}" -d "$DEST" "${WHEELS[@]}"
"$PY" -m pip wheel -q --no-deps -w "$DEST" "${SDIST_ONLY[@]}"
"${GET[@]}" -d "$DEST/fallback" "${FALLBACK[@]}"

"$PY" - "$DEST" "$ON_DEVICE" <<'EOF'
"""Closure check: every requirement of a carried wheel is carried or on the device."""
import email.parser
import pathlib
import re
import sys
import zipfile

from packaging.requirements import Requirement

dest, on_device = pathlib.Path(sys.argv[1]), set(sys.argv[2].split())
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
env = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
       "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
       "implementation_name": "cpython", "platform_python_implementation": "CPython",
       "extra": ""}
wheels = sorted(dest.glob("*.whl")) + sorted((dest / "fallback").glob("*.whl"))
carried = {norm(w.name.split("-")[0]) for w in wheels}
missing, versions = [], {}
for w in wheels:
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    versions[norm(msg["Name"])] = msg["Version"]
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        name = norm(req.name)
        if name not in carried and name not in on_device:
            missing.append(f"{msg['Name']} needs {req}")
if len(versions) != len(wheels):
    sys.exit(f"two versions of one package in {dest}: {[w.name for w in wheels]}")
if missing:
    sys.exit("not carried and not on the device:\n  " + "\n  ".join(missing))
size = sum(w.stat().st_size for w in wheels)
print(f"{len(wheels)} wheels, {size / 2**20:.1f} MiB in {dest}: closure check passed")
EOF
