#!/usr/bin/env bash
# Where a Harrow job's CPU time goes: runs one job under `perf record` on
# two in-process workers (so half of the shuffle crosses gRPC on loopback)
# and sorts the samples' own time into the engine's overheads (scheduling,
# RPC, serialization) and the rest (reading, decoding, the job's map and
# reduce, sorting, writing). Needs Debian's linux-perf and the bench data:
#
#   cargo run --release -p harrow-benches -- wordcount --size 1GiB
#   benches/overhead.sh wordcount
#   benches/overhead.sh parquet
#   benches/overhead.sh terasort    # all of its input crosses the shuffle
#
# The shares are of CPU samples over the whole run, both cores included.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
workload="${1:-wordcount}"
data="$root/target/bench-data"
case "$workload" in
wordcount)
    input="$(ls "$data"/zipf-*.txt 2>/dev/null | head -1)"
    job=(wordcount)
    ;;
parquet)
    input="$(ls "$data"/groupby-*.parquet 2>/dev/null | head -1)"
    job=(aggregate --arg key=key --arg value=value)
    ;;
terasort)
    input="$(ls "$data"/terasort-*.txt 2>/dev/null | head -1)"
    job=(terasort)
    ;;
*)
    echo "usage: $0 wordcount|parquet|terasort" >&2
    exit 2
    ;;
esac
if [ -z "$input" ]; then
    echo "no $workload input under $data: run harrow-bench $workload first" >&2
    exit 1
fi
command -v perf >/dev/null || {
    echo "perf not found (Debian: apt-get install linux-perf)" >&2
    exit 1
}
cargo build --release --quiet -p harrow-cli --manifest-path "$root/Cargo.toml"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
perf record --quiet -F 999 -o "$work/perf.data" \
    "$root/target/release/harrow" run "${job[@]}" --input "$input" \
    --output "$work/out" --workers 2 --slots 1 >"$work/run.log" 2>&1
tail -1 "$work/run.log"
perf report -i "$work/perf.data" --no-children --sort sym --stdio 2>/dev/null |
    awk '
    /^ *[0-9.]+%/ {
        share = $1 + 0
        sym = $0
        sub(/^ *[0-9.]+% +\[[^]]*\] +/, "", sym)
        category = "compute and I/O"
        if (sym ~ /tonic|h2::|hyper|prost|tower|tokio::net|mio::|tcp_|inet_|sock_|skb|__sys_send|__sys_recv|ip_rcv|ip_finish|__dev_queue|netif|loopback_xmit/) {
            category = "RPC (gRPC, HTTP/2, loopback TCP)"
        } else if (sym ~ /arrow_ipc|flatbuffers|lz4|LZ4|crc32c|harrow_worker::segment|harrow_core::wire/) {
            category = "serialization (Arrow IPC, LZ4, CRC32C)"
        } else if (sym ~ /harrow_coordinator::(scheduler|service|report)|harrow_worker::agent/) {
            category = "scheduling (coordinator, task pulls)"
        }
        total[category] += share
        all += share
    }
    END {
        for (c in total) printf "%6.2f%%  %s\n", total[c], c
        overhead = all - total["compute and I/O"]
        printf "%6.2f%%  engine overhead (scheduling + RPC + serialization) of %.2f%% sampled\n", overhead, all
    }' | sort -rn
