#!/usr/bin/env bash
# Records, on whatever accelerator JAX finds, what a lent GPU should tell us (issue 26, item 6):
# compile and step times per program (benchmarks/compile.py), lstm/gru train and inference
# against torch's cuDNN nn.LSTM/nn.GRU (and jax.experimental.rnn where it runs), 1 -> 64
# vmapped seeds against the cost of one, and the quickstart's wall time (trimmed to
# frontier.max=40 unless QUICKSTART_MAX says otherwise; 0 runs the whole config).
#
#   benchmarks/gpu.sh [OUT.md]           # <= 8 minutes; default OUT: gpu-results.md
#   LSTMJAX_GPU_SMOKE=1 benchmarks/gpu.sh OUT.md   # tiny shapes, any machine (make test runs it)
#
# Runs unchanged on a CPU. Every section is appended to OUT as soon as it is measured, so a run
# stopped by the time limit keeps what it had; paste OUT into benchmarks/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-gpu-results.md}"
PY="${PYTHON:-python}"
if [ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ]; then PY=.venv/bin/python; fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
LIMIT="${GPU_BENCH_LIMIT_S:-470}"   # the whole script stays under 8 minutes
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
  --format=csv,noheader || true
timeout --signal=INT --kill-after=10 "$LIMIT" "$PY" -m benchmarks.gpu --out "$OUT" --budget "$LIMIT" \
  --quickstart-max "${QUICKSTART_MAX:-40}" --quickstart-timeout "${QUICKSTART_TIMEOUT_S:-200}" \
  || echo "benchmarks.gpu stopped (exit $?): $OUT holds the sections measured so far"
echo "wrote $OUT"
