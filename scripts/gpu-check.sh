#!/usr/bin/env bash
# Device checks on a machine with a CUDA GPU (at most 8 minutes: the two steps have timeouts of 200 s and 260 s):
#   1. the device-parametrized tests (every test that takes the `device` fixture runs on
#      the CPU and on CUDA), with plain python3 and PYTHONPATH=src, no pytest plugins needed;
#   2. benchmarks/gpu.py, the CPU vs GPU table.
# Writes tests.txt, gpu.md and gpu.json to $OUT when it is set. Exit code: non-zero if a
# test failed or the benchmark failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=src
export PYTHONDONTWRITEBYTECODE=1
OUTDIR="${OUT:-}"
status=0

python3 - <<'PY' || exit 1
import torch
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "| available:", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device:", torch.cuda.get_device_name(0))
PY

TESTS="tests/test_device.py tests/test_device_strict.py tests/distributed/test_accumulators.py tests/distributed/test_dataset.py"
log="${OUTDIR:+$OUTDIR/tests.txt}"
# -p no:cacheprovider: write nothing into the checkout
timeout 200 python3 -m pytest -q -p no:cacheprovider -o addopts="" $TESTS 2>&1 | tee ${log:-/dev/null}
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

timeout 260 python3 benchmarks/gpu.py ${OUTDIR:+--out "$OUTDIR"} || status=1
exit $status
