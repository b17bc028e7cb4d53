#!/usr/bin/env bash
# The one-call GPU check of lrr_jax (BENCHMARKS.md, "GPU check"): engine tests on
# the device, ResNet throughput (f32/bf16, masked/dense), replicas, the PyTorch
# reference, compile time and memory, and a short LRR campaign through
# `python -m lrr_jax.main`. One JSON object, written after every part, and a
# table of each figure beside its target.
#
#   bash scripts/gpu_check.sh --out "$OUT/gpu_check.json"     # on the GPU machine
#   bash scripts/gpu_check.sh --dry --out /tmp/dry.json        # CPU rehearsal, toy sizes
#
# Options: --dry, --out FILE (default: $OUT/gpu_check.json, else ./gpu_check.json;
# with --dry /tmp/gpu_check_dry/gpu_check.json), --budget_s N (seconds for the
# parts: 410 on the GPU), --only PART,... ; the rest goes to scripts/gpu_check.py.
#
# Packages the machine lacks come from .gpu_wheels/ (scripts/fetch_gpu_wheels.sh,
# run where PyPI is reachable): installed with --no-index --no-deps into
# $GPU_CHECK_SITE (default /tmp/lrr_gpu_site) only when an import probe fails;
# the repository itself is used through PYTHONPATH (no `pip install -e`, which
# would resolve the project's pins from the network). A hard `timeout` bounds the
# whole check (its process group: the campaign and pytest children too) at the
# budget + 45 s, so with the install the command ends within 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PY=${PYTHON:-python3}
DRY=0
OUT_FILE=""
BUDGET=""
REST=()
while [ $# -gt 0 ]; do
  case "$1" in
    --dry) DRY=1 ;;
    --out) OUT_FILE=$2; shift ;;
    --out=*) OUT_FILE=${1#--out=} ;;
    --budget_s) BUDGET=$2; shift ;;
    --budget_s=*) BUDGET=${1#--budget_s=} ;;
    *) REST+=("$1") ;;
  esac
  shift
done
if [ -z "$OUT_FILE" ]; then
  if [ $DRY = 1 ]; then OUT_FILE=/tmp/gpu_check_dry/gpu_check.json
  else OUT_FILE=${OUT:-.}/gpu_check.json; fi
fi
mkdir -p "$(dirname "$OUT_FILE")"
if [ -z "$BUDGET" ]; then
  if [ $DRY = 1 ]; then BUDGET=600; else BUDGET=410; fi
fi
# The campaign's generated data and run: removed when this script exits, also after the
# hard timeout below has killed the check before it could remove the folder itself.
CHECK_TMP=$(mktemp -d "${TMPDIR:-/tmp}/lrr_gpu_check_XXXXXX")
trap 'rm -rf "$CHECK_TMP"' EXIT
ARGS=(--out "$OUT_FILE" --budget_s "$BUDGET" --tmp "$CHECK_TMP")
if [ $DRY = 1 ]; then
  export JAX_PLATFORMS=cpu
  # Toy sizes: LLVM's optimizations cost more compile time than they save.
  export XLA_FLAGS=${XLA_FLAGS:---xla_backend_optimization_level=0}
  ARGS+=(--dry)
fi
# Grow device memory as needed instead of taking 75% at start: the check runs
# JAX and PyTorch in one process and the campaign and the tests beside it.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
export PYTHONUNBUFFERED=1
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"

# ---- packages the machine lacks --------------------------------------------------------
WHEELS=${GPU_CHECK_WHEELS:-$REPO/.gpu_wheels}
SITE=${GPU_CHECK_SITE:-/tmp/lrr_gpu_site}
NEEDED="import ml_collections, tensorflow_datasets, array_record, tensorboardX, mnist1d"
PROTOS="import tensorflow_datasets, tensorflow_metadata.proto.v0.schema_pb2, google.rpc.status_pb2"
probe() { "$PY" -c "$1" >/dev/null 2>&1; }
why() { "$PY" -c "$1" 2>&1 | tail -1; }
install() {  # wheel files...: one pip call into a fresh $SITE (a second call into the same
  # --target would replace its top-level folders, e.g. google/ with google/rpc in it)
  rm -rf "$SITE" && mkdir -p "$SITE" &&
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" "$@" >"$SITE.pip.log" 2>&1 || { tail -5 "$SITE.pip.log" >&2; return 1; }
}
INSTALL="nothing installed: every package imports"
if ! probe "$NEEDED"; then
  if compgen -G "$WHEELS/*.whl" >/dev/null; then
    MAIN=("$WHEELS"/*.whl)
    EXTRA=()
    NOTES=""
    if ! probe "import pytest" && compgen -G "$WHEELS/fallback/pytest-*.whl" >/dev/null; then
      EXTRA+=("$WHEELS"/fallback/{pytest,pluggy,iniconfig,pygments,packaging}-*.whl)
      NOTES="$NOTES; pytest (the machine has none)"
    fi
    if install "${MAIN[@]}"; then
      export PYTHONPATH="$REPO:$SITE${PYTHONPATH#"$REPO"}"
      if ! probe "$PROTOS" && compgen -G "$WHEELS/fallback/protobuf-*.whl" >/dev/null; then
        EXTRA+=("$WHEELS"/fallback/protobuf-*.whl)
        NOTES="$NOTES; protobuf (with the machine's: $(why "$PROTOS"))"
      fi
      if [ ${#EXTRA[@]} -gt 0 ] && ! install "${MAIN[@]}" "${EXTRA[@]}"; then
        NOTES="$NOTES; installing the fallbacks failed (see $SITE.pip.log)"
        install "${MAIN[@]}"
      fi
      INSTALL="installed ${#MAIN[@]} wheels from $WHEELS into $SITE$NOTES"
    else
      INSTALL="installing $WHEELS failed (see $SITE.pip.log)"
    fi
  else
    INSTALL="missing packages and no wheels in $WHEELS (run scripts/fetch_gpu_wheels.sh)"
  fi
  probe "$NEEDED" || INSTALL="$INSTALL; still failing: $(why "$NEEDED")"
  probe "$PROTOS" || INSTALL="$INSTALL; still failing: $(why "$PROTOS")"
fi
export GPU_CHECK_INSTALL="$INSTALL"
echo "gpu_check: $INSTALL" >&2

# ---- the check, under a hard timeout; then the table, also from a partial result ---------
timeout -k 10 $((${BUDGET%.*} + 45)) "$PY" scripts/gpu_check.py "${ARGS[@]}" "${REST[@]}"
rc=$?
"$PY" scripts/gpu_table.py "$OUT_FILE" --rc "$rc"
exit $rc
