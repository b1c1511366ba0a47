#!/usr/bin/env bash
# Two builds side by side, embedded mode: idle-19k, direct-5k, group-100-1k and storm-10k
# (docs/benchmarks.md), ROUNDS times, alternating A and B within each scenario and
# round (A B, then B A, ...), a new server and data directory per run. One line per run.
#
#   crates/loadgen/scripts/interleave.sh A_DIR B_DIR [ROUNDS]
#   crates/loadgen/scripts/interleave.sh /tmp/before /tmp/after 2
#
# A_DIR and B_DIR each hold chat-server and chat-loadgen release binaries
# (`cargo build --release -p server -p loadgen`, copied away). Environment (optional):
#   INTERLEAVE_SCENARIOS  which to run    ("idle-19k direct-5k group-100-1k storm-10k")
#   INTERLEAVE_PORT       the HTTP port   (18300)
#   INTERLEAVE_OUT        JSON reports    (a new /tmp/interleave.* directory)
# Exit code 2 when a run was not correct (the generator's own verdict).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

if [[ $# -lt 2 ]]; then
  sed -n '2,15p' "$0" >&2
  exit 64
fi
A=$1
B=$2
ROUNDS=${3:-2}
for dir in "$A" "$B"; do
  for bin in chat-server chat-loadgen; do
    [[ -x "$dir/$bin" ]] || { echo "not an executable: $dir/$bin" >&2; exit 64; }
  done
done
command -v jq >/dev/null || { echo "needs jq on PATH" >&2; exit 64; }
SCENARIOS=${INTERLEAVE_SCENARIOS:-idle-19k direct-5k group-100-1k storm-10k}
PORT=${INTERLEAVE_PORT:-18300}
OUT=${INTERLEAVE_OUT:-$(mktemp -d /tmp/interleave.XXXXXX)}
mkdir -p "$OUT"

SERVER=""
DATA=""
stop_node() {
  stop_pid "$SERVER"
  SERVER=""
  [[ -z "$DATA" ]] || rm -rf "$DATA"
  DATA=""
}
trap stop_node EXIT
trap 'exit 130' INT TERM

args_of() {
  case $1 in
    idle-19k) echo "--scenario idle --clients 19000 --duration 15s --settle 5s" ;;
    direct-5k) echo "--scenario direct --clients 10000 --rate 5000 --duration 20s" ;;
    group-100-1k) echo "--scenario group --clients 1000 --group-size 100 --rate 1000 --duration 15s" ;;
    storm-10k) echo "--scenario storm --clients 10000 --rate 1000 --duration 20s" ;;
    *) echo "unknown scenario: $1" >&2; exit 64 ;;
  esac
}

summary() {
  jq -r '
    def ms: (. / 1000 * 10 | round / 10 | tostring);
    if .setup.scenario == "idle" then
      "RSS \(.resources.server_rss_before_kib) -> \(.resources.server_rss_after_kib) KiB, \(.resources.server_rss_per_connection_bytes) B per connection"
    elif .storm != null then
      "recovery p50/p95/max \(.storm.recovery.p50_us | ms)/\(.storm.recovery.p95_us | ms)/\(.storm.recovery.max_us | ms) ms, server cpu \(.resources.server_cpu_s) s"
    else
      "\(.traffic.persisted_per_s | round) msg/s, send->receive p50/p99 \(.delivery_latency.p50_us | ms)/\(.delivery_latency.p99_us | ms) ms, server cpu \(.resources.server_cpu_s) s"
    end
    + "; dup/gap/lost \(.correctness.duplicates)/\(.correctness.gaps)/\(.correctness.acked_but_lost)"' "$1"
}

ALL_CORRECT=1
n=0
for round in $(seq 1 "$ROUNDS"); do
  for scenario in $SCENARIOS; do
    if (( round % 2 == 1 )); then order="A B"; else order="B A"; fi
    for which in $order; do
      n=$((n + 1))
      dir=$A
      [[ $which == B ]] && dir=$B
      DATA=$(mktemp -d)
      CHAT_DATA__DIR="$DATA" CHAT_HTTP__ADDR="127.0.0.1:$PORT" CHAT_LOG__LEVEL=warn \
        CHAT_REALTIME__UPGRADES_PER_SECOND=1000000 CHAT_REALTIME__UPGRADE_BURST=1000000 \
        CHAT_REALTIME__MESSAGES_PER_SECOND=1000 CHAT_REALTIME__MESSAGE_BURST=1000 \
        "$dir/chat-server" >"$OUT/server-$n.log" 2>&1 &
      SERVER=$!
      if ! wait_healthy "$PORT" "$SERVER"; then
        echo "run $n: the node did not come up; see $OUT/server-$n.log" >&2
        exit 1
      fi
      json="$OUT/$scenario-$which-round$round.json"
      rc=0
      # shellcheck disable=SC2046
      "$dir/chat-loadgen" $(args_of "$scenario") --target "127.0.0.1:$PORT" \
        --server-pid "$SERVER" --data-dir "$DATA" --source-addrs "127.0.$((n % 200 + 20)).1" \
        --json "$json" >"$OUT/loadgen-$n.txt" 2>&1 || rc=$?
      stop_node
      [[ $rc -eq 0 ]] || ALL_CORRECT=0
      if [[ -s "$json" ]]; then
        echo "$scenario $which round $round: $(summary "$json"); exit $rc"
      else
        echo "$scenario $which round $round: no report (exit $rc): $(tail -1 "$OUT/loadgen-$n.txt")"
        ALL_CORRECT=0
      fi
    done
  done
done
echo "reports in $OUT"
[[ $ALL_CORRECT -eq 1 ]] || exit 2
