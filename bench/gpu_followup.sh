#!/usr/bin/env bash
# The prepared follow-up to bench/gpu_check.sh, for the same lease while the machine is still warm
# (the machine goes back after about 30 s idle: issue it as soon as the first call returns):
#   bash bench/gpu_followup.sh            (timeout_s 150)
# Nsight Compute on the recurrence kernels the goal table times, each case of bench/profile_case.py
# in its order (persistent GRU forward, bf16 B 1 H 512 and H 1024, T 512; its training forward and
# backward at B 8 H 512; the persistent LSTM forward, fp16 B 16 H 768), the profiled run alone
# (--profile-from-start off; the program warms up first), clocks left alone (--clock-control none).
# What bounds each kernel is in its sections: speed of light (compute against memory), warp state
# statistics (what the warps wait on: the grid barrier's spin shows as branch and memory stalls),
# occupancy, launch statistics. Each case is cut off by its own limit and all by
# GPU_FOLLOWUP_BUDGET_S (default 130 s, so the files come back inside a 150-s call).
# At most 6 files land in $OUT:
#   followup.log  ncu-details.txt (every case's details page)  <case>.ncu-rep (one per case profiled)
# GPU_FOLLOWUP_NCU_SET picks ncu's section set (default full); GPU_FOLLOWUP_DRY_RUN=1 prints each
# command and runs none (no GPU needed).
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/fastgru-gpu-followup}"
BUDGET="${GPU_FOLLOWUP_BUDGET_S:-130}"
CASE_S="${GPU_FOLLOWUP_CASE_S:-45}"
NCU_SET="${GPU_FOLLOWUP_NCU_SET:-full}"
DRY="${GPU_FOLLOWUP_DRY_RUN:-}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1

# ncu: on the PATH, or the newest Nsight Compute under /opt/nvidia.
NCU="$(command -v ncu || ls -d /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | sort | tail -n 1)"
if [ -z "$NCU" ]; then
  [ -n "$DRY" ] && NCU=ncu || { echo "ncu not found (PATH, /opt/nvidia/nsight-compute/*/ncu)"; exit 2; }
fi

# The seconds a case may take: its own limit, or what is left of the budget less a 10-s reserve.
limit() {
  local left=$(( BUDGET - (SECONDS - start) - 10 ))
  if [ "$left" -lt 15 ]; then echo 0; elif [ "$CASE_S" -lt "$left" ]; then echo "$CASE_S"; else echo "$left"; fi
}

main() {
start=$SECONDS
echo "== ncu: $NCU (set $NCU_SET), budget ${BUDGET}s"
[ -z "$DRY" ] && { "$NCU" --version | tail -n 1; python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . \
  || echo "pip install -e . failed: continuing with the tree as it is"; }
: > "$OUT/ncu-details.txt"
python3 -m bench.profile_case --list | while IFS=$'\t' read -r name regex launches; do
  secs=$(limit)
  if [ "$secs" -eq 0 ]; then echo "== $name: skipped (budget spent)"; continue; fi
  cmd=("$NCU" --profile-from-start off --clock-control none --target-processes all --set "$NCU_SET"
       -k "$regex" -c "$launches" --export "$OUT/$name" --force-overwrite
       python3 -m bench.profile_case "$name")
  echo "== $name (at most ${secs}s): ${cmd[*]}"
  [ -n "$DRY" ] && continue
  timeout "$secs" "${cmd[@]}"
  echo "$name: exit code $? (124 = stopped at ${secs}s)"
  if [ -f "$OUT/$name.ncu-rep" ]; then
    { echo "######## $name"; "$NCU" --import "$OUT/$name.ncu-rep" --page details; } >> "$OUT/ncu-details.txt" 2>&1
  fi
done
echo "== summary (ncu-details.txt has every section)"
grep -E "^######## |  [a-z_]+_kernel|Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per Thread|Achieved Occupancy|Stall|One or More Eligible|Issued Warp Per Scheduler" \
  "$OUT/ncu-details.txt" | head -n 80
echo "== done in $((SECONDS - start))s; files in $OUT:"
ls -la "$OUT"
}

main 2>&1 | tee "$OUT/followup.log"
