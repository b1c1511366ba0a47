#!/usr/bin/env bash
# Direct traffic on a brand-new PostgreSQL database, RUNS times: what a new deployment
# sees. Per run: create a database, start a release server node on it with Redis (a key
# prefix of its own), run `chat-loadgen --scenario direct --fresh-database` (2,000 clients
# in 1,000 pairs by default, no warm-up: the first measured send is the first message the
# database ever stores), keep its JSON, stop the node, drop the database and the run's
# Redis keys. Then one line per run.
#
#   crates/loadgen/scripts/fresh-direct.sh SERVER_BIN LOADGEN_BIN RATE [RUNS]
#   crates/loadgen/scripts/fresh-direct.sh target/release/chat-server \
#       target/release/chat-loadgen 4000 5
#
# Builds nothing: pass binaries built with `cargo build --release -p server -p loadgen`.
# Settings (environment, all optional):
#   FRESH_PG_URL     PostgreSQL server, no database  (postgres://postgres@127.0.0.1:5432)
#   FRESH_REDIS_URL  Redis                           (redis://127.0.0.1:6379)
#   FRESH_CLIENTS    clients, even                   (2000)
#   FRESH_DURATION   traffic window per run          (25s)
#   FRESH_PORT       the node's HTTP port            (18200)
#   FRESH_OUT        directory for the JSON reports  (a new /tmp/fresh-direct.* directory)
# The exit code is 0 when every run was correct (all sends acked, nothing duplicated,
# missing or lost), 2 otherwise.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"

if [[ $# -lt 3 ]]; then
  sed -n '2,21p' "$0" >&2
  exit 64
fi
SERVER_BIN=$1
LOADGEN_BIN=$2
RATE=$3
RUNS=${4:-5}
for bin in "$SERVER_BIN" "$LOADGEN_BIN"; do
  [[ -x "$bin" ]] || { echo "not an executable: $bin" >&2; exit 64; }
done
for tool in psql redis-cli curl jq; do
  command -v "$tool" >/dev/null || { echo "needs $tool on PATH" >&2; exit 64; }
done

PG=${FRESH_PG_URL:-postgres://postgres@127.0.0.1:5432}
PG=${PG%/}
REDIS=${FRESH_REDIS_URL:-redis://127.0.0.1:6379}
CLIENTS=${FRESH_CLIENTS:-2000}
DURATION=${FRESH_DURATION:-25s}
PORT=${FRESH_PORT:-18200}
OUT=${FRESH_OUT:-$(mktemp -d /tmp/fresh-direct.XXXXXX)}
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%d%H%M%S)

SERVER=""
DB=""
PREFIX=""
DATA=""

psql_admin() {
  psql "$PG/postgres" -v ON_ERROR_STOP=1 -qAt -c "$1"
}

stop_node() {
  stop_pid "$SERVER"
  SERVER=""
}

clean_run() {
  stop_node
  if [[ -n "$DB" ]]; then
    psql_admin "DROP DATABASE IF EXISTS $DB WITH (FORCE)" || true
    DB=""
  fi
  if [[ -n "$PREFIX" ]]; then
    # Only this run's keys: the Redis may be shared.
    redis-cli -u "$REDIS" --scan --pattern "${PREFIX}*" |
      xargs -r -n 500 redis-cli -u "$REDIS" DEL >/dev/null || true
    PREFIX=""
  fi
  if [[ -n "$DATA" ]]; then
    rm -rf "$DATA"
    DATA=""
  fi
}
trap clean_run EXIT
trap 'exit 130' INT TERM

SUMMARY=()
ALL_CORRECT=1
for run in $(seq 1 "$RUNS"); do
  DB="fresh_direct_${STAMP}_${run}"
  PREFIX="fresh-direct-${STAMP}-${run}:"
  DATA=$(mktemp -d)
  SECRET="fresh-$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  URL="$PG/$DB"
  JSON="$OUT/direct-$RATE-run$run.json"
  psql_admin "CREATE DATABASE $DB"

  # The node migrates the new database at start; its pool prepares every statement on
  # tables that are empty (messages stays empty until the first measured send).
  CHAT_DATABASE__URL="$URL" CHAT_REDIS__URL="$REDIS" CHAT_REDIS__KEY_PREFIX="$PREFIX" \
    CHAT_AUTH__JWT_SECRET="$SECRET" CHAT_DATA__DIR="$DATA" \
    CHAT_HTTP__ADDR="127.0.0.1:$PORT" CHAT_LOG__LEVEL="${CHAT_LOG__LEVEL:-warn}" \
    CHAT_REALTIME__UPGRADES_PER_SECOND=1000000 CHAT_REALTIME__UPGRADE_BURST=1000000 \
    CHAT_REALTIME__MESSAGES_PER_SECOND=1000 CHAT_REALTIME__MESSAGE_BURST=1000 \
    "$SERVER_BIN" >"$OUT/server-$RATE-run$run.log" 2>&1 &
  SERVER=$!
  if ! wait_healthy "$PORT" "$SERVER"; then
    echo "run $run: the node did not come up; see $OUT/server-$RATE-run$run.log" >&2
    tail -5 "$OUT/server-$RATE-run$run.log" >&2 || true
    exit 1
  fi

  rc=0
  "$LOADGEN_BIN" --scenario direct --fresh-database --clients "$CLIENTS" --rate "$RATE" \
    --duration "$DURATION" --target "127.0.0.1:$PORT" --server-pid "$SERVER" \
    --database-url "$URL" --jwt-secret "$SECRET" \
    --source-addrs "127.0.$((run % 200 + 20)).1" \
    --json "$JSON" >"$OUT/loadgen-$RATE-run$run.txt" 2>&1 || rc=$?
  clean_run

  if [[ ! -s "$JSON" ]]; then
    line="run $run: no report (exit $rc): $(tail -1 "$OUT/loadgen-$RATE-run$run.txt")"
    ALL_CORRECT=0
  else
    [[ $rc -eq 0 ]] || ALL_CORRECT=0
    line=$(jq -r --arg run "$run" --arg rc "$rc" '
      def ms: (. / 1000 * 10 | round / 10 | tostring);
      (.fresh_database // [] | map(select(.table == "messages")) | .[0]) as $m
      | "run \($run): acked \(.traffic.acked_total)/\(.traffic.sent_total) sent (\(.traffic.persisted_per_s | round)/s"
        + " of \(.setup.rate | round)/s offered, unacked at end \(.traffic.unacked_at_end));"
        + " send->receive p50/p95/p99/max \(.delivery_latency.p50_us | ms)/\(.delivery_latency.p95_us | ms)"
        + "/\(.delivery_latency.p99_us | ms)/\(.delivery_latency.max_us | ms) ms;"
        + " send->ack p99 \(.ack_latency.p99_us | ms) ms;"
        + " errors \(if (.errors | length) == 0 then "none" else (.errors | tojson) end);"
        + " dup/gap/lost \(.correctness.duplicates)/\(.correctness.gaps)/\(.correctness.acked_but_lost);"
        + (if $m then " messages: \($m.seq_scans) seq scans (\($m.seq_rows_read) rows read)" else "" end)
        + "; exit \($rc)"' "$JSON")
  fi
  echo "$line"
  SUMMARY+=("$line")
done

echo
echo "direct at $RATE msg/s, $CLIENTS clients, $DURATION, fresh PostgreSQL database per run" \
  "(reports in $OUT):"
printf '%s\n' "${SUMMARY[@]}"
[[ $ALL_CORRECT -eq 1 ]] || exit 2
