#!/usr/bin/env bash
# The one command for a lent GPU (torch and triton already installed there, no network):
#   bash bench/gpu_check.sh            (one call of at most 9 minutes: timeout_s 540)
# Prints nvidia-smi and versions, installs fastgru in place (offline), then, each step cut off by
# its own limit and all of them by GPU_CHECK_BUDGET_S (default 480 s, so the files come back
# inside a 540-s call):
#   1. correctness first: the GPU tests of the hazards the interpreter hides
#      (tests/test_gpu_hazards.py), then the GRU, dispatcher, CUDA-graph capture and persistent
#      variant tests, then the LSTM's (tests/test_gpu_lstm.py);
#   2. the LSTM beside nn.LSTM where PyTorch runs cuDNN's persistent LSTM (fp16, B 16, H 768,
#      T 512, inference and training; bench/lstm_strategy_table.py), eager and graphed;
#   3. the persistent kernel's variants: bench/strategy_table.py --variants goal, every
#      step variant, hidden block and warp count beside nn.GRU (eager and graphed) at T = 512
#      (bench/variants.py has the matrix; `--dry-run` lists it with its expected duration);
#   4. the grid-barrier floor, each barrier form alone (bench/barrier_floor.py);
#   5. the goal table, shrunk to fastgru as dispatched beside nn.GRU, bf16, B 1/8/64 (the
#      persistent strategy's own rows are step 3's);
#   6. with what is left: the quick sweep (every suite's quick cases: the GRUCell, attention and
#      decoder goal rows), the other GPU tests, the rest of the suite on CUDA, the full sweep.
# Step limits (seconds; each also capped by what is left of the budget less a 15-s reserve):
#   machine + install ~15 | hazards 60 | GRU/dispatch/capture/variant tests 105 | LSTM tests 45 |
#   LSTM table 40 (its own --budget-s 25: no cell starts after it) | variants 130 (its own
#   --budget-s 115: no row starts past its expected end; the goal set's dry-run estimate is 198 with
#   the warm-up pool of 8 workers, GPU_CHECK_PRECOMPILE_WORKERS, so it stops before its tail, the
#   least important cells) | barrier floor 30 | goal table 40 | = 465 = 480 - 15; the quick sweep, other GPU tests, the rest of the suite and
#   the full sweep run only on what earlier steps left unused (a test step that ends early).
# Dropped to make room: the stepwise/rows plan-table step (both measured on 2026-11-23, neither
# won a shape; bench/results/nvidia-h100-80gb-hbm3/strategies/) and the goal table's fp32 and
# persistent rows (fp32 goes to cuDNN in the table; persistent is timed in step 2).
# pytest uses pytest-xdist when present and prints one line per test, so a run cut short still
# shows what passed. GPU_CHECK_SKIP_REST / _QUICK / _FULL leave out the non-GPU tests, the quick
# or the full sweep. At most 8 files, flat, land in $OUT:
#   gpu_check.log  pytest.log  strategies-lstm-dispatched-persistent-rows.json
#   strategies-variants-goal.json  strategies-dispatched.json  barrier_floor.json  quick.json
#   <full>.json     (its Markdown and plots: from the JSON, fastgru.bench.table.markdown, bench/plots.py)
# The variant run and the full sweep stop starting new rows when their budget is spent, and their
# JSON says so.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/fastgru-gpu-check}"
BUDGET="${GPU_CHECK_BUDGET_S:-480}"
RESULTS="${RESULTS_DIR:-bench/results}"
QUICK_DIR="$(mktemp -d)"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
LOG="$OUT/gpu_check.log"

# The seconds a step may take: its own limit, or what is left of the budget (less a 15-s reserve
# for copying files), whichever is smaller; 0 when under 15 s are left (the step is skipped).
limit() {
  local left=$(( BUDGET - (SECONDS - start) - 15 ))
  if [ "$left" -lt 15 ]; then echo 0; elif [ "$1" -lt "$left" ]; then echo "$1"; else echo "$left"; fi
}

# run_step NAME LIMIT LOG COMMAND...: the command under timeout, its output appended to LOG (- for
# the console), its exit code reported on the console.
run_step() {
  local name="$1" secs log="$3" rc
  secs=$(limit "$2"); shift 3
  if [ "$secs" -eq 0 ]; then echo "== $name: skipped (budget spent)"; return; fi
  echo "== $name (at most ${secs}s)"
  if [ "$log" = "-" ]; then timeout "$secs" "$@"; else timeout "$secs" "$@" >> "$log" 2>&1; fi
  rc=$?
  echo "$name: exit code $rc (124 = stopped at ${secs}s)"
}

PYTEST_FLAGS="-rfE -v --tb=short --no-header -p no:cacheprovider"

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

# 1. Correctness first (pytest.log: read it before any number).
: > "$OUT/pytest.log"
run_step "hazards the interpreter hides (pytest.log)" "${GPU_CHECK_HAZARD_S:-60}" "$OUT/pytest.log" \
  python3 -m pytest $XDIST tests/test_gpu_hazards.py $PYTEST_FLAGS
grep -E "(FAILED|ERROR)" "$OUT/pytest.log" | head -n 40; tail -n 3 "$OUT/pytest.log"
run_step "GRU, dispatcher, CUDA-graph capture and variant tests on CUDA (pytest.log)" "${GPU_CHECK_TEST_S:-105}" "$OUT/pytest.log" \
  python3 -m pytest $XDIST tests/test_gpu_gru.py tests/test_gpu_dispatch.py tests/test_gpu_capture.py tests/test_gpu_variants.py $PYTEST_FLAGS
grep -E "(FAILED|ERROR)" "$OUT/pytest.log" | head -n 40; tail -n 3 "$OUT/pytest.log"
run_step "LSTM tests on CUDA (pytest.log)" "${GPU_CHECK_LSTM_TEST_S:-45}" "$OUT/pytest.log" \
  python3 -m pytest $XDIST tests/test_gpu_lstm.py $PYTEST_FLAGS
grep -E "(FAILED|ERROR)" "$OUT/pytest.log" | head -n 40; tail -n 3 "$OUT/pytest.log"

# 2. The LSTM where cuDNN is at its best (its persistent LSTM: fp16, B 16, H 768), beside
# nn.LSTM eager and graphed. No cell starts once its own budget (the limit less 15 s) is spent.
lsecs=$(limit "${GPU_CHECK_LSTM_S:-40}")
run_step "LSTM table: fp16 B16 H768 T512 beside nn.LSTM (cuDNN's persistent LSTM)" "$lsecs" - \
  python3 bench/lstm_strategy_table.py --out "$OUT" --dtypes fp16 --hiddens 768 --batches 16 \
    --strategies dispatched,persistent,rows --rep-ms 20 --budget-s "$(( lsecs > 30 ? lsecs - 15 : 15 ))"

# 3. The persistent kernel's variants beside nn.GRU (one JSON, written after every row). Its own
# budget is its limit less 15 s, so it stops starting rows before the timeout would cut one.
vsecs=$(limit "${GPU_CHECK_VARIANTS_S:-130}")
run_step "persistent variants beside nn.GRU (bench/variants.py, goal set)" "$vsecs" - \
  python3 bench/strategy_table.py --variants goal --out "$OUT" --budget-s "$(( vsecs > 30 ? vsecs - 15 : 15 ))" \
    --precompile-workers "${GPU_CHECK_PRECOMPILE_WORKERS:-8}"

# 4. Each barrier form alone.
run_step "grid-barrier floor, counter and flags, split and not" "${GPU_CHECK_BARRIER_S:-30}" - \
  python3 -m bench.barrier_floor --out "$OUT"

# 5. The goal table: fastgru as dispatched (the user's number) beside nn.GRU.
run_step "goal table: dispatched beside nn.GRU, bf16, eager and graphed" "${GPU_CHECK_STRATEGY_S:-40}" - \
  python3 bench/strategy_table.py --out "$OUT" --strategies dispatched --dtypes bf16 --batches 1,8,64 --rep-ms 20

# 6. Everything else, while the budget lasts.
if [ -z "${GPU_CHECK_SKIP_QUICK:-}" ]; then
  run_step "quick sweep, every suite, eager and graphed" "${GPU_CHECK_QUICK_S:-120}" - \
    python3 -m bench --quick --out "$QUICK_DIR" --no-plots
  quick_json=$(ls "$QUICK_DIR"/*/*.json 2>/dev/null | head -n 1)
  [ -n "$quick_json" ] && cp "$quick_json" "$OUT/quick.json"   # its table is in gpu_check.log
fi
run_step "the other GPU tests (stops at the 8th failure; pytest.log)" "${GPU_CHECK_ATTN_S:-90}" "$OUT/pytest.log" \
  python3 -m pytest $XDIST -m gpu --ignore=tests/test_gpu_gru.py --ignore=tests/test_gpu_hazards.py \
    --ignore=tests/test_gpu_dispatch.py --ignore=tests/test_gpu_capture.py --ignore=tests/test_gpu_variants.py \
    --ignore=tests/test_gpu_lstm.py --maxfail=8 $PYTEST_FLAGS
tail -n 3 "$OUT/pytest.log"
if [ -z "${GPU_CHECK_SKIP_REST:-}" ]; then
  run_step "the rest of the suite on CUDA (pytest.log)" "${GPU_CHECK_REST_S:-90}" "$OUT/pytest.log" \
    python3 -m pytest $XDIST -m "not gpu" --maxfail=8 $PYTEST_FLAGS
  tail -n 3 "$OUT/pytest.log"
fi
if [ -z "${GPU_CHECK_SKIP_FULL:-}" ]; then
  left=$(( BUDGET - (SECONDS - start) - 40 ))
  if [ "$left" -ge 30 ]; then
    echo "== full sweep (new cases start for ${left}s)"
    before=$(ls "$RESULTS"/*/*.json 2>/dev/null | sort)
    timeout $(( left + 25 )) python3 -m bench --out "$RESULTS" --budget-s "$left" --no-plots
    full_json=$(comm -13 <(echo "$before") <(ls "$RESULTS"/*/*.json 2>/dev/null | sort) | head -n 1)
    if [ -n "$full_json" ]; then
      cp "$full_json" "$OUT/"   # its .md stays behind: 8 files come back at most (regenerate it from the JSON)
      echo "full run: $full_json (commit it with its .md and .png files and $RESULTS/README.md)"
    fi
  else
    echo "== full sweep: skipped (budget spent)"
  fi
fi
echo "== done in $((SECONDS - start))s; files in $OUT:"
ls -la "$OUT"
}

# A pipeline (not exec + process substitution) so the script waits for the log to be complete.
main 2>&1 | tee "$LOG"
