# Shared by the benchmark scripts (sourced, not run).

# stop_pid PID: SIGTERM, up to 30 s for a graceful exit, then SIGKILL; reaps it.
stop_pid() {
  local pid=$1
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  fi
}

# wait_healthy PORT PID: waits up to 30 s for /healthz on 127.0.0.1:PORT; fails when the
# process PID exits first or the time runs out.
wait_healthy() {
  local port=$1 pid=$2
  for _ in $(seq 1 300); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
