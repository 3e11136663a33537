#!/usr/bin/env bash
# The one command for a lent GPU (torch and triton already installed there, no network):
#   bash bench/gpu_check.sh
# Prints nvidia-smi and versions, installs fastgru in place (offline), runs first the GPU tests of
# the hazards the interpreter hides (tests/test_gpu_hazards.py, at most 90 s), then the GRU GPU tests,
# the other GPU tests (stopping at the 8th failure so tracebacks print), the grid-barrier floor,
# the strategy table (every recurrence strategy beside nn.GRU at the goal shapes), the rest of the
# suite on CUDA, the quick sweep and the full sweep, all inside GPU_CHECK_BUDGET_S. pytest uses
# pytest-xdist when present and prints one line per test, so a run cut short still shows what
# passed. GPU_CHECK_SKIP_REST / _QUICK / _FULL leave out the non-GPU tests, the quick or the full
# sweep. At most 8 files, flat, land in $OUT:
#   gpu_check.log  pytest.log  barrier_floor.json  strategies-*.json (2)  quick.json
#   <full>.json  <full>.md        (plots: regenerate from the JSON with bench/plots.py)
# The full sweep stops starting new cases when its share of the budget is spent, and its JSON says so.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/fastgru-gpu-check}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
HAZARD_LIMIT="${GPU_CHECK_HAZARD_S:-90}"
TEST_LIMIT="${GPU_CHECK_TEST_S:-150}"
REST_LIMIT="${GPU_CHECK_REST_S:-90}"
ATTN_LIMIT="${GPU_CHECK_ATTN_S:-90}"
STRATEGY_LIMIT="${GPU_CHECK_STRATEGY_S:-150}"
ROWS_LIMIT="${GPU_CHECK_ROWS_S:-60}"
RESULTS="${RESULTS_DIR:-bench/results}"
QUICK_DIR="$(mktemp -d)"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LOG="$OUT/gpu_check.log"

main() {
start=$SECONDS

echo "== machine"
nvidia-smi || echo "nvidia-smi failed"
python3 - <<'PY'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda,
      "cudnn", torch.backends.cudnn.version())
try:
    import triton; print("triton", triton.__version__)
except ImportError:
    print("triton missing")
print("cuda available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY

echo "== install (offline, editable)"
if [ -z "${GPU_CHECK_SKIP_INSTALL:-}" ]; then
  python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . \
    || echo "pip install -e . failed: continuing with the tree as it is"
fi
python3 -c "import fastgru, fastgru.kernels, fastgru.bench; print('fastgru', fastgru.__version__, 'from', fastgru.__file__)"

XDIST=""
python3 -c "import xdist" 2>/dev/null && XDIST="-n ${GPU_CHECK_WORKERS:-8}"
echo "== first: the hazards the interpreter hides (at most ${HAZARD_LIMIT}s; log in pytest.log)"
timeout "$HAZARD_LIMIT" python3 -m pytest $XDIST tests/test_gpu_hazards.py -rfE -v --tb=short --no-header -p no:cacheprovider > "$OUT/pytest.log" 2>&1
echo "pytest tests/test_gpu_hazards.py exit code $? (124 = stopped at ${HAZARD_LIMIT}s)"
grep -E "(FAILED|ERROR)" "$OUT/pytest.log" | head -n 40
tail -n 3 "$OUT/pytest.log"

echo "== GRU GPU tests on CUDA (at most ${TEST_LIMIT}s; appended to pytest.log)"
timeout "$TEST_LIMIT" python3 -m pytest $XDIST tests/test_gpu_gru.py -rfE -v --tb=short --no-header -p no:cacheprovider >> "$OUT/pytest.log" 2>&1
echo "pytest tests/test_gpu_gru.py exit code $? (124 = stopped at ${TEST_LIMIT}s)"
grep -E "(FAILED|ERROR)" "$OUT/pytest.log" | head -n 40
tail -n 3 "$OUT/pytest.log"

echo "== the other GPU tests (at most ${ATTN_LIMIT}s; stops at the 8th failure so tracebacks print)"
timeout "$ATTN_LIMIT" python3 -m pytest $XDIST -m gpu --ignore=tests/test_gpu_gru.py --ignore=tests/test_gpu_hazards.py --maxfail=8 -rfE -v --tb=short --no-header -p no:cacheprovider >> "$OUT/pytest.log" 2>&1
echo "pytest -m gpu (others) exit code $? (124 = stopped at ${ATTN_LIMIT}s)"
tail -n 3 "$OUT/pytest.log"

echo "== grid-barrier floor (the persistent strategy's per-step minimum)"
timeout 60 python3 -m bench.barrier_floor --out "$OUT" || echo "barrier_floor failed or timed out"

echo "== strategy table (persistent and stepwise at every goal shape; rows only at H=256, where it can win)"
timeout "$STRATEGY_LIMIT" python3 bench/strategy_table.py --out "$OUT" --strategies persistent,stepwise \
  || echo "strategy table (persistent, stepwise) failed or timed out"
timeout "$ROWS_LIMIT" python3 bench/strategy_table.py --out "$OUT" --strategies rows --hiddens 256 \
  || echo "strategy table (rows) failed or timed out"

if [ -z "${GPU_CHECK_SKIP_REST:-}" ]; then
echo "== the rest of the suite on CUDA (at most ${REST_LIMIT}s; appended to pytest.log)"
timeout "$REST_LIMIT" python3 -m pytest $XDIST -m "not gpu" --maxfail=8 -rfE -v --tb=short --no-header -p no:cacheprovider >> "$OUT/pytest.log" 2>&1
echo "pytest -m 'not gpu' exit code $? (124 = stopped at ${REST_LIMIT}s)"
tail -n 3 "$OUT/pytest.log"
fi

if [ -z "${GPU_CHECK_SKIP_QUICK:-}" ]; then
  echo "== quick sweep"
  timeout 120 python3 -m bench --quick --out "$QUICK_DIR" --no-plots
  quick_json=$(ls "$QUICK_DIR"/*/*.json 2>/dev/null | head -n 1)
  if [ -n "$quick_json" ]; then
    cp "$quick_json" "$OUT/quick.json"   # its table is in gpu_check.log
  fi
fi

if [ -z "${GPU_CHECK_SKIP_FULL:-}" ]; then
left=$(( BUDGET - (SECONDS - start) - 40 ))
if [ "$left" -lt 30 ]; then left=30; fi
echo "== full sweep (new cases start for ${left}s)"
before=$(ls "$RESULTS"/*/*.json 2>/dev/null | sort)
python3 -m bench --out "$RESULTS" --budget-s "$left" --no-plots
full_json=$(comm -13 <(echo "$before") <(ls "$RESULTS"/*/*.json 2>/dev/null | sort) | head -n 1)
if [ -n "$full_json" ]; then
  stem="${full_json%.json}"
  for f in "$full_json" "$stem.md"; do
    [ -f "$f" ] && cp "$f" "$OUT/"
  done
  echo "full run: $full_json (commit it with its .md and .png files and $RESULTS/README.md)"
fi
fi
echo "== done in $((SECONDS - start))s; files in $OUT:"
ls -la "$OUT"
}

# A pipeline (not exec + process substitution) so the script waits for the log to be complete.
main 2>&1 | tee "$LOG"
