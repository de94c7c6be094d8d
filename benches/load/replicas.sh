#!/usr/bin/env bash
# Replicas on PostgreSQL against one replica on SQLite, in one run on one machine (docs/performance.md's
# "Replicas as one service" figures):
#   1. client_credentials issuance, wrk -t1 -c64 (ISSUE_CONNECTIONS): one replica on SQLite, one on PostgreSQL, two on
#      PostgreSQL (two wrk processes, one per replica, started together; their rates summed);
#   2. /connect/revocation of distinct tokens, wrk -t2 -c64: the same three set-ups;
#   3. a batch revocation over LIVE live tokens on PostgreSQL (rows added with one INSERT ...
#      SELECT generate_series, since issuing a million through HTTP only measures step 1 again),
#      and its repeat.
# PostgreSQL is a private server (initdb + pg_ctl, default settings: fsync and synchronous_commit
# on) on a free port in target/; Redis is a private redis-server. The shared instances on 5432 and
# 6379 are never touched.
#
# Needs: wrk, curl, python3, redis-server, PostgreSQL's server binaries. Run from anywhere:
#   benches/load/replicas.sh                 # LIVE=1000000 DURATION=10s
#   LIVE=200000 DURATION=5s benches/load/replicas.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
here="$root/benches/load"
work="$root/target/load-replicas"
LIVE="${LIVE:-1000000}"
DURATION="${DURATION:-10s}"
rm -rf "$work" && mkdir -p "$work"
chmod 777 "$work"
cd "$root"
cargo build --release -p tollgate-server >/dev/null
bin="$root/target/release/tollgate"

pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

pg_port=$(free_port)
mkdir -p "$work/pg" && [ "$(id -u)" != 0 ] || chown postgres "$work/pg"
as_pg "$pgbin/initdb" -D "$work/pg" -A trust -U tollgate >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg" -l "$work/pg/log" -w \
  -o "-p $pg_port -k $work/pg -c listen_addresses=127.0.0.1 -c max_connections=200" start >/dev/null
pg_url="postgresql://tollgate@127.0.0.1:$pg_port/postgres"
psql() { "$pgbin/psql" -q -X -v ON_ERROR_STOP=1 "$pg_url" "$@"; }

redis_port=$(free_port)
redis-server --port "$redis_port" --save '' --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
pids+=("$!")
redis_url="redis://127.0.0.1:$redis_port/"

"$bin" keygen --kid bench --out "$work/signing.der" >/dev/null

# config NAME PORT STORE: a replica's configuration (STORE is sqlite or postgres).
config() {
  local dir="$work/$1"
  mkdir -p "$dir"
  {
    if [ "$3" = postgres ]; then echo 'store = "postgres"'; fi
    sed -e 's|^data_dir = .*|data_dir = "'"$dir"'/data"|' -e 's|^listen = .*|listen = "127.0.0.1:'"$2"'"|' \
      examples/tollgate.toml
    if [ "$3" = postgres ]; then
      printf '\n[postgres]\nurl = "%s"\n\n[replication]\nredis_url = "%s"\n' "$pg_url" "$redis_url"
    fi
    printf '\n[[keys]]\nkid = "bench"\nalgorithm = "EdDSA"\nfile = "%s"\nsigning = true\n' "$work/signing.der"
  } >"$dir/tollgate.toml"
  echo "$dir/tollgate.toml"
}
# start NAME PORT STORE: serves; sets $last_pid.
start() {
  local file
  file=$(config "$1" "$2" "$3")
  "$bin" serve --config "$file" 2>"$work/$1.log" & last_pid=$!
  pids+=("$last_pid")
  for _ in $(seq 200); do curl -sf -o /dev/null "http://127.0.0.1:$2/.well-known/jwks.json" && return; sleep 0.1; done
  echo "$1 did not start: $(tail -3 "$work/$1.log")" >&2; exit 1
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }

BASIC=$(printf 'svc:svc-secret-0123456789' | base64 -w0)
export BASIC
rate() { awk '/Requests\/sec/ {print int($2)}'; }
non2xx() { awk '/Non-2xx/ {n=$NF} END {print n+0}'; }
issue() { wrk -t1 -c"${ISSUE_CONNECTIONS:-64}" -d"$2" -s "$here/issue.lua" "http://127.0.0.1:$1/connect/token"; }
collect() { OUT=$2 wrk -t1 -c16 -d"$3" -s "$here/collect_tokens.lua" "http://127.0.0.1:$1/connect/token" >/dev/null; }
revoke() { TOKENS=$2 THREADS=2 wrk -t2 -c"$3" -d"$DURATION" -s "$here/revoke.lua" "http://127.0.0.1:$1/connect/revocation"; }

p1=$(free_port); p2=$(free_port)
echo "== 1. client_credentials issuance, wrk -t1 -c${ISSUE_CONNECTIONS:-64} -d$DURATION per replica (warm-up 3 s)"
start sqlite "$p1" sqlite; s=$last_pid
issue "$p1" 3s >/dev/null
out=$(issue "$p1" "$DURATION"); sqlite_issue=$(echo "$out" | rate)
echo "one replica, SQLite:      $sqlite_issue tokens/s (non-2xx: $(echo "$out" | non2xx))"
collect "$p1" "$work/sqlite-tokens.txt" 8s
out=$(revoke "$p1" "$work/sqlite-tokens.txt" 64); sqlite_revoke=$(echo "$out" | rate)
stop "$s"

start pg-a "$p1" postgres; a=$last_pid
issue "$p1" 3s >/dev/null
out=$(issue "$p1" "$DURATION"); pg_issue=$(echo "$out" | rate)
echo "one replica, PostgreSQL:  $pg_issue tokens/s (non-2xx: $(echo "$out" | non2xx))"
start pg-b "$p2" postgres; b=$last_pid
issue "$p2" 3s >/dev/null
issue "$p1" "$DURATION" >"$work/two-a.txt" & wa=$!
issue "$p2" "$DURATION" >"$work/two-b.txt" & wb=$!
wait "$wa" "$wb"
two_issue=$(( $(rate <"$work/two-a.txt") + $(rate <"$work/two-b.txt") ))
echo "two replicas, PostgreSQL: $two_issue tokens/s (non-2xx: $(non2xx <"$work/two-a.txt") + $(non2xx <"$work/two-b.txt"))"

echo "== 2. /connect/revocation of distinct tokens, wrk -t2 -d$DURATION, 64 connections in all"
echo "one replica, SQLite:      $sqlite_revoke revocations/s"
collect "$p1" "$work/pg-tokens.txt" 8s
out=$(revoke "$p1" "$work/pg-tokens.txt" 64); pg_revoke=$(echo "$out" | rate)
echo "one replica, PostgreSQL:  $pg_revoke revocations/s ($(echo "$out" | grep -c 'non-200 responses: 0') of 2 threads without a non-200)"
collect "$p1" "$work/two-tokens-a.txt" 5s
collect "$p2" "$work/two-tokens-b.txt" 5s
revoke "$p1" "$work/two-tokens-a.txt" 32 >"$work/rev-a.txt" & wa=$!
revoke "$p2" "$work/two-tokens-b.txt" 32 >"$work/rev-b.txt" & wb=$!
wait "$wa" "$wb"
two_revoke=$(( $(rate <"$work/rev-a.txt") + $(rate <"$work/rev-b.txt") ))
echo "two replicas, PostgreSQL: $two_revoke revocations/s"
python3 - "$sqlite_issue" "$pg_issue" "$two_issue" <<'EOF'
import sys
s, p, t = map(int, sys.argv[1:])
print(f"issuance, PostgreSQL / SQLite (one replica): {p / s:.2f}; two replicas / one: {t / p:.2f}")
EOF

echo "== 3. batch revocation over $LIVE live tokens on PostgreSQL"
psql -c "INSERT INTO access_tokens (jti, grant_id, tenant, subject, client_id, issued_at, expires_at)
  SELECT 'bench-' || n, NULL, '/Acme', 'svc', 'svc',
         (extract(epoch from now()) * 1000)::bigint - 1000,
         (extract(epoch from now()) * 1000)::bigint + 3600000
  FROM generate_series(1, $LIVE) AS n; ANALYZE access_tokens;"
echo "live access tokens in the database: $(psql -t -A -c 'SELECT count(*) FROM access_tokens')"
admin=$(curl -s -u integration:integration-secret -d grant_type=password -d username=admin -d password=admin-password \
  "http://127.0.0.1:$p1/connect/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
for round in first repeat; do
  took=$(curl -s -o "$work/batch.json" -w '%{time_total}' -X POST -H "Authorization: Bearer $admin" \
    -H 'content-type: application/json' -d '{"clientId":"svc"}' \
    "http://127.0.0.1:$p1/api/v2/identity/token/batch-revocation")
  echo "$round: $(cat "$work/batch.json") in $(python3 -c "print(f'{$took*1000:.0f} ms')") (curl time_total)"
done
stop "$a"; stop "$b"
