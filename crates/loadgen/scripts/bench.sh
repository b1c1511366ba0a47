#!/usr/bin/env bash
# Short benchmark: each scenario of chat-loadgen for a few seconds against a fresh release
# server on 127.0.0.1. Embedded mode (SQLite in a temporary data dir) by default; with
# CHAT_DATABASE__URL (postgres://...@127.0.0.1/...) and optionally CHAT_REDIS__URL set,
# the server runs in scale-out mode on them.
#
#   crates/loadgen/scripts/bench.sh            # or: just bench
#   BENCH_SCALE=10 crates/loadgen/scripts/bench.sh   # 10x the clients and rates
#   BENCH_BIN=/tmp/bin crates/loadgen/scripts/bench.sh # binaries already built
#
# Reports (table on stdout, JSON in target/bench/) come from the generator; the script
# fails when a run finds duplicates, gaps, acked-but-lost messages or failed clients.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

cd "$(dirname "$0")/../../.."
SCALE=${BENCH_SCALE:-1}
PORT=${BENCH_PORT:-18080}
OUT=target/bench
mkdir -p "$OUT"

# BENCH_BIN: a directory holding chat-server and chat-loadgen already built (no build).
if [[ -n "${BENCH_BIN:-}" ]]; then
  BIN=$BENCH_BIN
else
  cargo build --release -p server -p loadgen
  BIN=target/release
fi

DATA=$(mktemp -d)
export CHAT_DATA__DIR="$DATA"
export CHAT_HTTP__ADDR="127.0.0.1:$PORT"
export CHAT_LOG__LEVEL=${CHAT_LOG__LEVEL:-warn}
# The generator opens thousands of sockets from few source addresses and sends from every
# client: the per-IP upgrade limit and the per-user message limit are raised for it.
export CHAT_REALTIME__UPGRADES_PER_SECOND=1000000 CHAT_REALTIME__UPGRADE_BURST=1000000
export CHAT_REALTIME__MESSAGES_PER_SECOND=1000 CHAT_REALTIME__MESSAGE_BURST=1000
if [[ -n "${CHAT_DATABASE__URL:-}" && -z "${CHAT_AUTH__JWT_SECRET:-}" ]]; then
  CHAT_AUTH__JWT_SECRET="bench-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  export CHAT_AUTH__JWT_SECRET
fi

"$BIN/chat-server" &
SERVER=$!
cleanup() {
  kill "$SERVER" 2>/dev/null || true
  wait "$SERVER" 2>/dev/null || true
  rm -rf "$DATA"
}
trap cleanup EXIT

wait_healthy "$PORT" "$SERVER" || { echo "the server did not come up" >&2; exit 1; }

run() {
  local name=$1
  shift
  echo "== $name"
  "$BIN/chat-loadgen" --target "127.0.0.1:$PORT" --server-pid "$SERVER" \
    --json "$OUT/$name.json" "$@"
}

run idle   --scenario idle   --clients $((2000 * SCALE)) --duration 5s
run direct --scenario direct --clients $((1000 * SCALE)) --rate $((2000 * SCALE)) --duration 5s
run group  --scenario group  --clients $((1000 * SCALE)) --group-size 50 \
  --rate $((200 * SCALE)) --duration 5s
run storm  --scenario storm  --clients $((1000 * SCALE)) --rate $((500 * SCALE)) --duration 6s
# The store alone (no server involved): group-commit appends as fast as they go.
run persist --scenario persist --clients $((200 * SCALE)) --rate 0 --duration 3s
echo "reports: $OUT/{idle,direct,group,storm,persist}.json"
