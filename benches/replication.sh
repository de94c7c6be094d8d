#!/usr/bin/env bash
# Replication figures, all in one run on one machine (see docs/performance.md, "Revocations across
# processes" section):
#   1. /connect/revocation throughput, replication off vs on (wrk, same tokens, same settings)
#   2. propagation: 200 of /connect/revocation -> refused by a Layer's index in another process
#   3. the follower: apply rate, snapshot load, snapshot sizes
#
# Needs: wrk (Debian package `wrk`), redis-server, curl. Every Redis here is private (free port,
# temporary directory); the machine's shared one is never touched.
#   benches/replication.sh           # DURATION=10s RATE=1000 PROPAGATION_SECONDS=30 by default
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
load="$root/benches/load"
work="$root/target/replication-bench"
DURATION="${DURATION:-10s}"
rm -rf "$work" && mkdir -p "$work"
cd "$root"

cargo build --release -p tollgate-server >/dev/null
bin="$root/target/release/tollgate"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >/dev/null & pids+=($!)

BASIC=$(printf 'svc:svc-secret-0123456789' | base64 -w0)
rate() { awk '/Requests\/sec/ {print int($2)}'; }

# One server at a time on 127.0.0.1:8080, its own data directory; $1 = extra config.
run_server() {
  local name=$1 extra=$2
  sed -e 's|^data_dir = .*|data_dir = "'"$work/$name"'"|' examples/tollgate.toml > "$work/$name.toml"
  printf '%s\n' "$extra" >> "$work/$name.toml"
  "$bin" serve --config "$work/$name.toml" 2>"$work/$name.log" & server=$!; pids+=("$server")
  for _ in $(seq 100); do curl -sf -o /dev/null http://127.0.0.1:8080/.well-known/jwks.json && break; sleep 0.1; done
}

revocations() {
  local name=$1
  local tokens="$work/$name-tokens.txt"
  OUT=$tokens BASIC=$BASIC wrk -t1 -c16 -d8s -s "$load/collect_tokens.lua" http://127.0.0.1:8080/connect/token >/dev/null
  TOKENS=$tokens THREADS=2 BASIC=$BASIC wrk -t2 -c64 -d"$DURATION" -s "$load/revoke.lua" \
    http://127.0.0.1:8080/connect/revocation | rate
}

echo "== 1. /connect/revocation, wrk -t2 -c64 -d$DURATION, replication off and on, alternating ${ROUNDS:-2} times"
replication=$(printf '[replication]\nredis_url = "redis://127.0.0.1:%s/"' "$port")
off_total=0; on_total=0
for round in $(seq "${ROUNDS:-2}"); do
  for mode in off on; do
    extra=""; [ "$mode" = on ] && extra=$replication
    rm -rf "$work/$mode"
    run_server "$mode" "$extra"
    r=$(revocations "$mode")
    kill "$server"; wait "$server" 2>/dev/null || true
    echo "round $round, replication $mode: $r revocations/s"
    if [ "$mode" = on ]; then on_total=$((on_total + r)); else off_total=$((off_total + r)); fi
  done
done
echo "ratio on/off (sums): $(python3 -c "print(f'{$on_total/$off_total:.2f}')")"
echo "stream entries left after trimming: $(redis-cli -p "$port" XLEN '{tollgate}:revocations')"

echo "== 2. propagation, ${RATE:-1000} revocations/s for ${PROPAGATION_SECONDS:-30} s"
TOLLGATE_BIN="$bin" cargo bench -q -p tollgate-redis --bench propagation 2>/dev/null

echo "== 3. the follower"
cargo bench -q -p tollgate-redis --bench feed 2>/dev/null
