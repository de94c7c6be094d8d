#!/usr/bin/env bash
# The server's memory per live token, in one run for one or more builds of `tollgate` (the
# docs/performance.md's memory model):
#   1. client_credentials issuance, wrk -t1 -c16, the builds taking turns ROUNDS times (so that
#      a ratio between builds is taken in one run, on one machine, under the same noise);
#   2. for each build, a fresh server filled with at least LIVE live tokens (1 h lifetime): its
#      resident memory (VmRSS) empty and full, then a batch revocation over them, and a repeat.
#
# Needs: wrk, curl, python3. Run from anywhere:
#   benches/load/live_memory.sh                              # this tree's release build
#   benches/load/live_memory.sh old/tollgate target/release/tollgate
#   LIVE=200000 DURATION=5s ROUNDS=2 PORT=18080 benches/load/live_memory.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/benches/load"
work="$root/target/load-live"
LIVE="${LIVE:-1000000}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-3}"
PORT="${PORT:-18080}"
url="http://127.0.0.1:$PORT"
rm -rf "$work" && mkdir -p "$work"
if [ "$#" -eq 0 ]; then
  (cd "$root" && cargo build --release -p tollgate-server >/dev/null)
  set -- "$root/target/release/tollgate"
fi

server=""
stop() { if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; server=""; fi; }
trap stop EXIT

# start BIN: a fresh server (empty data directory) on $PORT.
start() {
  rm -rf "$work/data"
  sed -e 's|^data_dir = .*|data_dir = "'"$work"'/data"|' -e 's|^listen = .*|listen = "127.0.0.1:'"$PORT"'"|' \
    "$root/examples/tollgate.toml" > "$work/tollgate.toml"
  "$1" serve --config "$work/tollgate.toml" 2>"$work/tollgate.log" & server=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "$url/.well-known/jwks.json" && return; sleep 0.1; done
  echo "server did not start: $(tail -3 "$work/tollgate.log")" >&2; exit 1
}
rss() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }
BASIC=$(printf 'svc:svc-secret-0123456789' | base64 -w0)
export BASIC
issue() { wrk -t1 -c16 -d"$1" -s "$here/issue.lua" "$url/connect/token"; }

echo "== 1. client_credentials issuance, wrk -t1 -c16 -d$DURATION, $ROUNDS rounds (builds in turn)"
declare -A rates
for round in $(seq "$ROUNDS"); do
  for bin in "$@"; do
    start "$bin"
    issue 3s >/dev/null
    rate=$(issue "$DURATION" | awk '/Requests\/sec/ {print int($2)}')
    stop
    rates[$bin]="${rates[$bin]:-} $rate"
    echo "round $round  $bin: $rate tokens/s"
  done
done
for bin in "$@"; do
  [ "$ROUNDS" -gt 0 ] || break
  echo "median $bin: $(printf '%s\n' ${rates[$bin]} | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') tokens/s"
done

echo "== 2. at least $LIVE live tokens (1 h lifetime)"
for bin in "$@"; do
  start "$bin"
  empty=$(rss)
  # Issue in slices until the count is reached, checking the live count with a batch revocation
  # only at the end (it revokes them: one measurement per server).
  issue 3s >/dev/null
  rate=$(issue 5s | awk '/Requests\/sec/ {print int($2)}')
  # Issuance slows as the store grows: aim at 70% of the measured rate.
  seconds=$(( (LIVE - rate * 8) / (rate * 7 / 10) + 2 ))
  if [ "$seconds" -gt 0 ]; then
    BODY="grant_type=client_credentials&scope=api&access-token-lifetime=3600" issue "${seconds}s" >/dev/null
  fi
  # The store writes access-token records behind the answers: let its queue drain (RSS steady
  # for 2 s, at most 30 s) before reading the resident size.
  full=$(rss)
  for _ in $(seq 15); do sleep 2; now=$(rss); [ "$now" -eq "$full" ] && break; full=$now; done
  admin=$(curl -s -u integration:integration-secret -d grant_type=password -d username=admin -d password=admin-password \
    "$url/connect/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  batch() {
    curl -s -o "$work/batch.json" -w '%{time_total}' -X POST -H "Authorization: Bearer $admin" \
      -H 'content-type: application/json' -d '{"clientId":"svc"}' "$url/api/v2/identity/token/batch-revocation"
  }
  first=$(batch); first_body=$(cat "$work/batch.json")
  again=$(batch); again_body=$(cat "$work/batch.json")
  count=$(python3 -c "import json; print(json.loads('$first_body')['count'])")
  echo "$bin"
  echo "  VmRSS empty $(( empty / 1024 )) MiB, holding $count live tokens $(( full / 1024 )) MiB:" \
    "$(python3 -c "print(f'{($full-$empty)*1024/$count:.0f}')") bytes per live token (RSS difference / count)"
  echo "  batch revocation: $first_body in $(python3 -c "print(f'{$first*1000:.0f} ms')");" \
    "repeated: $again_body in $(python3 -c "print(f'{$again*1000:.0f} ms')") (curl time_total)"
  stop
done
