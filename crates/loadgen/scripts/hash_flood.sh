#!/usr/bin/env bash
# The server's memory under a password-hashing flood: N registrations, then N logins with
# unknown emails, C at a time, from one address, with default settings except the
# registration and login limits (raised so that every request reaches the hasher).
# Prints VmRSS (from /proc/PID/status) before, at its peak during each flood, and after.
#
# usage: crates/loadgen/scripts/hash_flood.sh [CHAT_SERVER_BINARY] [N] [C]
#   defaults: target/release/chat-server 1000 64 (build: cargo build --release -p server)
# Extra CHAT_* variables in the environment reach the server (e.g. CHAT_AUTH__HASH_CONCURRENCY).
set -euo pipefail

BIN=${1:-target/release/chat-server}
N=${2:-1000}
C=${3:-64}
DIR=$(mktemp -d)
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PORT

CHAT_CONFIG_DIR=$DIR/no-config CHAT_DATA__DIR=$DIR CHAT_HTTP__ADDR=127.0.0.1:$PORT \
  CHAT_AUTH__REGISTRATIONS_PER_MINUTE=1000000 CHAT_AUTH__REGISTRATION_BURST=1000000 \
  CHAT_AUTH__LOGIN_ATTEMPTS_PER_MINUTE=1000000 CHAT_AUTH__LOGIN_BURST=1000000 \
  CHAT_LOG__LEVEL=${CHAT_LOG__LEVEL:-warn} "$BIN" &
PID=$!
SAMPLER=
cleanup() {
  [[ -n "$SAMPLER" ]] && kill "$SAMPLER" 2>/dev/null || true
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

for _ in $(seq 100); do
  curl -sf "$BASE/healthz" >/dev/null && break
  sleep 0.1
done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
mb() { awk -v kb="$1" 'BEGIN {printf "%.1f MB", kb / 1024}'; }
# VmRSS every 50 ms, one number a line.
(while kill -0 "$PID" 2>/dev/null; do rss_kb; sleep 0.05; done) >"$DIR/rss" &
SAMPLER=$!

# flood NAME PATH BODY_TEMPLATE: N requests, C at a time; {} in the body becomes 1..N.
flood() {
  local name=$1 path=$2 body=$3 from start
  from=$(wc -l <"$DIR/rss")
  start=$(date +%s.%N)
  echo "$name: $N requests, $C at a time"
  seq "$N" | xargs -P "$C" -I{} curl -s -o /dev/null -w '%{http_code}\n' \
    -H 'content-type: application/json' -d "$body" "$BASE$path" | sort | uniq -c |
    awk '{printf "  HTTP %s: %s\n", $2, $1}'
  echo "  took $(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f s", e - s}')," \
    "peak RSS $(mb "$(tail -n +"$((from + 1))" "$DIR/rss" | sort -n | tail -1)")," \
    "RSS at the end $(mb "$(rss_kb)")"
  sleep 5
  echo "  RSS 5 s after: $(mb "$(rss_kb)")"
}

echo "RSS before: $(mb "$(rss_kb)")"
flood registrations /api/v1/auth/register \
  '{"email":"flood-{}@example.com","password":"correct horse battery","display_name":"F"}'
flood "logins with unknown emails" /api/v1/auth/login \
  '{"email":"nobody-{}@example.com","password":"correct horse battery"}'
sleep 25
echo "RSS 30 s after the last flood: $(mb "$(rss_kb)")"
