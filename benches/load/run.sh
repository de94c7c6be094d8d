#!/usr/bin/env bash
# Load figures for the token service, all in one run on one machine (see docs/performance.md):
#   1. client_credentials issuance: tollgate vs node-oidc-provider (same wrk script, same client)
#   2. /connect/revocation with durable writes, 64 connections
#   3. 1,000,000 live tokens: the server's resident memory, then one batch revocation over them
#
# Needs: wrk (Debian package `wrk`), node + npm (the peer in benches/load/peer), curl, python3.
# Run from anywhere:
#   benches/load/run.sh            # LIVE=1000000 by default; LIVE=200000 for a quicker run
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/benches/load"
work="$root/target/load"
LIVE="${LIVE:-1000000}"
DURATION="${DURATION:-10s}"
rm -rf "$work" && mkdir -p "$work"
cd "$root"

cargo build --release -p tollgate-server >/dev/null
bin="$root/target/release/tollgate"
sed -e 's|^data_dir = .*|data_dir = "'"$work"'/data"|' examples/tollgate.toml > "$work/tollgate.toml"

# The peer (benches/load/peer), installed under target/ so the source tree stays clean.
peer="$root/target/load-peer"
if [ ! -d "$peer/node_modules" ] || ! cmp -s "$here/peer/package.json" "$peer/package.json"; then
  mkdir -p "$peer" && cp "$here/peer/package.json" "$peer/"
  (cd "$peer" && npm install --silent --no-audit --no-fund)
fi
cp "$here/peer/peer.mjs" "$peer/"

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

"$bin" serve --config "$work/tollgate.toml" 2>"$work/tollgate.log" & tg=$!; pids+=("$tg")
(cd "$peer" && PEER_PORT=3000 exec node peer.mjs >"$work/peer.log" 2>&1) & peer_pid=$!; pids+=("$peer_pid")
for url in http://127.0.0.1:8080/.well-known/jwks.json http://127.0.0.1:3000/.well-known/openid-configuration; do
  for _ in $(seq 100); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
done

BASIC_TG=$(printf 'svc:svc-secret-0123456789' | base64 -w0)
BASIC_PEER=$(printf 'svc:svc-secret-0123456789' | base64 -w0)
cc="$here/issue.lua"
rate() { awk '/Requests\/sec/ {print int($2)}'; }
non2xx() { awk '/Non-2xx/ {print $NF}'; }

echo "== 1. client_credentials, wrk -t1 -c16 -d$DURATION (warm-up 3 s each)"
BASIC=$BASIC_TG wrk -t1 -c16 -d3s -s "$cc" http://127.0.0.1:8080/connect/token >/dev/null
BASIC=$BASIC_PEER wrk -t1 -c16 -d3s -s "$cc" http://127.0.0.1:3000/token >/dev/null
tg_out=$(BASIC=$BASIC_TG wrk -t1 -c16 -d"$DURATION" -s "$cc" http://127.0.0.1:8080/connect/token)
peer_out=$(BASIC=$BASIC_PEER wrk -t1 -c16 -d"$DURATION" -s "$cc" http://127.0.0.1:3000/token)
tg_rate=$(echo "$tg_out" | rate); peer_rate=$(echo "$peer_out" | rate)
echo "tollgate:           $tg_rate tokens/s (non-2xx: $(echo "$tg_out" | non2xx))"
echo "node-oidc-provider: $peer_rate tokens/s (non-2xx: $(echo "$peer_out" | non2xx))"
echo "ratio:              $(python3 -c "print(f'{$tg_rate/$peer_rate:.1f}x')")"
kill "$peer_pid"

echo "== 2. /connect/revocation, durable, wrk -t2 -c64 -d$DURATION"
tokens="$work/revoke-tokens.txt"
OUT=$tokens BASIC=$BASIC_TG wrk -t1 -c16 -d8s -s "$here/collect_tokens.lua" http://127.0.0.1:8080/connect/token >/dev/null
echo "distinct tokens to revoke: $(wc -l < "$tokens")"
rev_out=$(TOKENS=$tokens THREADS=2 BASIC=$BASIC_TG wrk -t2 -c64 -d"$DURATION" -s "$here/revoke.lua" http://127.0.0.1:8080/connect/revocation)
echo "$rev_out" | grep -E "thread|Latency"
echo "revocations/s: $(echo "$rev_out" | rate)"

echo "== 3. at least $LIVE live tokens"
seconds=$(( LIVE / (tg_rate * 9 / 10) + 2 ))
BODY="grant_type=client_credentials&scope=api&access-token-lifetime=3600" BASIC=$BASIC_TG \
  wrk -t1 -c16 -d"${seconds}s" -s "$cc" http://127.0.0.1:8080/connect/token | grep -E "requests in|Non-2xx" || true
sleep 2
echo "resident memory (VmRSS): $(awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$tg/status)"
admin=$(curl -s -u integration:integration-secret -d grant_type=password -d username=admin -d password=admin-password \
  http://127.0.0.1:8080/connect/token | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
# The count is every live token of the client (steps 1 and 2 included) not already revoked.
batch=$(curl -s -o "$work/batch.json" -w '%{time_total}' -X POST -H "Authorization: Bearer $admin" \
  -H 'content-type: application/json' -d '{"clientId":"svc"}' http://127.0.0.1:8080/api/v2/identity/token/batch-revocation)
echo "batch revocation: $(cat "$work/batch.json") in $(python3 -c "print(f'{$batch*1000:.0f} ms')") (curl time_total)"
again=$(curl -s -w ' %{time_total}s' -X POST -H "Authorization: Bearer $admin" -H 'content-type: application/json' -d '{"clientId":"svc"}' \
  http://127.0.0.1:8080/api/v2/identity/token/batch-revocation)
echo "repeat: $again"
echo "resident memory after: $(awk '/VmRSS/ {printf "%.0f MiB", $2/1024}' /proc/$tg/status)"
