#!/usr/bin/env bash
# Runs a small cluster on this machine: one coordinator and two workers as
# separate processes, submits wordcount over examples/corpus, shows the
# status and the workers, then stops everything.
#
#   bash examples/cluster.sh [OUTPUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin harrow
harrow=target/debug/harrow
out=${1:-$(mktemp -d)/wordcount}
logs=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

# The coordinator prints "harrow coordinator listening on ADDRESS" when ready.
coproc COORDINATOR { exec "$harrow" coordinator --listen 127.0.0.1:0 2>"$logs/coordinator.log"; }
pids+=("$COORDINATOR_PID")
read -r line <&"${COORDINATOR[0]}"
export HARROW_COORDINATOR="http://${line##* }"
echo "coordinator at $HARROW_COORDINATOR (logs in $logs)"

for i in 1 2; do
  "$harrow" worker --slots 2 --work-dir "$logs/work-$i" >"$logs/worker-$i.out" 2>"$logs/worker-$i.log" &
  pids+=("$!")
done
until [ "$("$harrow" workers --json | grep -c worker_id)" -eq 2 ]; do sleep 0.2; done
"$harrow" workers

job=$("$harrow" submit wordcount --input examples/corpus --output "$out" --reducers 4 --split-size 16KiB)
echo "submitted $job"
"$harrow" status "$job"
"$harrow" submit wordcount --input examples/corpus --output "$out-2" --wait >/dev/null
"$harrow" status "$job"
"$harrow" jobs
echo "most frequent words:"
sort -t$'\t' -k2,2nr "$out"/part-r-* | head -5
