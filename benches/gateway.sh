#!/usr/bin/env bash
# `tollgate gateway` figures (issue 9, docs/performance.md's gateway table), all in one run on
# one machine:
#   1. throughput and p99 latency (wrk --latency) through the gateway to a trivial upstream, with
#      EdDSA tokens and REVOKED (1,000,000) revoked ids in the gateway's index, against nginx
#      proxying the same upstream with no auth at all (the ceiling); then the same gateway with
#      the verified-token cache on ([validation] cache_verified_tokens = 100000). Targets are
#      measured in alternation, ROUNDS times, and the ratios given per round and over the sums;
#   2. forward-auth alone: requests/s of `/auth` (proxy = "traefik": X-Forwarded-Method, -Uri,
#      -Host and the bearer token), without and with the cache;
#   3. the gateway's resident memory (VmRSS) at idle, once the revocations are loaded, and the
#      largest sampled during its wrk runs.
#
# Everything is private: the upstream and the ceiling are two nginx processes (`nginx -p`, their
# own prefix in target/), Redis is a private redis-server; every port is a free one. The shared
# instances (6379, 8080, ...) are never touched.
#
# Fairness, on a 2-core machine where wrk, the proxy under test and the upstream share the cores:
#   - the ceiling nginx has `worker_processes auto` (one per core: 2), as the gateway has
#     `workers` (one request-serving thread per core, by default); the upstream nginx likewise;
#   - the ceiling keeps upstream connections alive (`keepalive 64`, HTTP/1.1, `Connection ""`) as
#     the gateway's pooled client does; neither logs requests (nginx `access_log off`, gateway
#     RUST_LOG=warn); nginx's 1,000-requests-per-connection default is lifted on both sides
#     (hyper has no such limit), so no side reconnects during a run;
#   - the revoked ids reach the gateway the way they do in production: XADD entries in the
#     stream it follows (docs/replication.md's wire format), piped with `redis-cli --pipe`.
#
# Needs: wrk, nginx (Debian's, /usr/sbin/nginx), redis-server + redis-cli, curl, python3. The
# tollgate binary is ${TOLLGATE_BIN:-target/release/tollgate}, built if missing. Run from anywhere:
#   benches/gateway.sh                                    # DURATION=10s ROUNDS=2 REVOKED=1000000
#   DURATION=5s ROUNDS=1 REVOKED=100000 benches/gateway.sh
#   CPU=1 benches/gateway.sh     # also CPU time per request of the proxy under test (user and
#                                # system, every thread, from /proc/<pid>/stat), of the upstream
#                                # nginx and of wrk, around each measured run
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/gateway-bench"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-2}"
REVOKED="${REVOKED:-1000000}"
CONNECTIONS="${CONNECTIONS:-64}"
NGINX="${NGINX:-/usr/sbin/nginx}"
rm -rf "$work" && mkdir -p "$work"
cd "$root"

# tollgate_binary, free_port, pids and the cleanup on exit, wait_for, nginx_conf, start_nginx.
source "$root/benches/lib.sh"
bin=$(tollgate_binary)

# --- nginx: the trivial upstream, and the ceiling proxying to it --------------------------------
up_port=$(free_port); ceiling_port=$(free_port)
nginx_conf "$work/upstream" \
  "server { listen 127.0.0.1:$up_port; location / { return 200 \"ok\\n\"; } }"
nginx_conf "$work/ceiling" \
  "server { listen 127.0.0.1:$ceiling_port; location / { proxy_pass http://trivial; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" \
  "upstream trivial { server 127.0.0.1:$up_port; keepalive 64; keepalive_requests 1000000; }"
start_nginx "$work/upstream"
start_nginx "$work/ceiling"
wait_for "http://127.0.0.1:$up_port/" "the upstream nginx" "$work/upstream/error.log"
wait_for "http://127.0.0.1:$ceiling_port/" "the ceiling nginx" "$work/ceiling/error.log"
# Their worker processes, whose CPU time CPU=1 reports per request.
upstream_workers=$(pgrep -P "$(cat "$work/upstream/nginx.pid")" | tr '\n' ' ')
ceiling_workers=$(pgrep -P "$(cat "$work/ceiling/nginx.pid")" | tr '\n' ' ')

# --- Redis, and the revoked ids in the stream the gateway follows --------------------------------
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 & pids+=("$!")
redis_url="redis://127.0.0.1:$redis_port/"
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
started=$(date +%s.%N)
# RESP commands: the epoch (SET NX, as a producer does), then one XADD per revoked access token:
# `XADD {tollgate}:revocations * 1 "<published_ms> T <expires_at_ms> <jti>"`, jti 22 characters
# of base64url (128 random bits, as tollgate's own), expiring in two hours.
python3 - "$REVOKED" <<'EOF' | redis-cli -p "$redis_port" --pipe >"$work/pipe.log"
import base64, os, sys, time
n = int(sys.argv[1])
out = sys.stdout.buffer
def cmd(*args):
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        parts.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(parts)
out.write(cmd(b"SET", b"{tollgate}:epoch", os.urandom(8).hex().encode(), b"NX"))
now = int(time.time() * 1000)
expires = now + 2 * 3600 * 1000
stream = b"{tollgate}:revocations"
random = os.urandom(16 * n)
chunk = []
for i in range(n):
    jti = base64.urlsafe_b64encode(random[16 * i:16 * i + 16]).rstrip(b"=")
    chunk.append(cmd(b"XADD", stream, b"*", b"1", b"%d T %d %s" % (now, expires, jti)))
    if len(chunk) == 10000:
        out.write(b"".join(chunk)); chunk = []
out.write(b"".join(chunk))
EOF
entries=$(redis-cli -p "$redis_port" XLEN '{tollgate}:revocations')
[ "$entries" -eq "$REVOKED" ] || { echo "only $entries of $REVOKED entries in the stream: $(tail -3 "$work/pipe.log")" >&2; exit 1; }
echo "== $entries revocations in the stream in $(python3 -c "import time; print(f'{time.time()-$started:.1f} s')") (redis-cli --pipe)"

# --- keys and tokens ------------------------------------------------------------------------------
"$bin" keygen --kid k1 --out "$work/k1.der" >"$work/keys.toml"
serve_port=$(free_port)
{
  sed -e 's|^data_dir = .*|data_dir = "'"$work"'/serve-data"|' \
      -e 's|^listen = .*|listen = "127.0.0.1:'"$serve_port"'"|' examples/tollgate.toml
  echo; cat "$work/keys.toml"
} >"$work/tollgate.toml"
issuer=$(sed -n 's/^issuer = "\(.*\)"$/\1/p' "$work/tollgate.toml")
"$bin" serve --config "$work/tollgate.toml" 2>"$work/serve.log" & serve=$!; pids+=("$serve")
wait_for "http://127.0.0.1:$serve_port/.well-known/jwks.json" "tollgate serve" "$work/serve.log"
token() {
  curl -sf -u svc:svc-secret-0123456789 -d grant_type=client_credentials -d access-token-lifetime=3600 \
    "http://127.0.0.1:$serve_port/connect/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
claim() { python3 -c 'import base64,json,sys; p=sys.argv[1].split(".")[1]; print(json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4)))[sys.argv[2]])' "$1" "$2"; }
AT=$(token)          # the measured token: valid throughout
REVOKED_AT=$(token)  # revoked below through `tollgate revoke`, to check revocation is enforced
kill "$serve"; wait "$serve" 2>/dev/null || true
echo "token: $(claim "$AT" jti) (kid k1, EdDSA, $(printf %s "$AT" | wc -c) bytes)"

# --- the gateways: cache off and on ---------------------------------------------------------------
# gateway NAME CACHE: writes NAME.toml, starts it, sets $gw_pid $gw_port $gw_ops.
gateway() {
  gw_port=$(free_port); gw_ops=$(free_port)
  cat >"$work/$1.toml" <<EOF
listen = "127.0.0.1:$gw_port"
issuer = "$issuer"
audience = ["$issuer"]

[keys]
files = [{ kid = "k1", algorithm = "EdDSA", file = "$work/k1.der" }]

[validation]
cache_verified_tokens = $2

[revocations]
redis_url = "$redis_url"

[ops]
listen = "127.0.0.1:$gw_ops"

[forward_auth]
path = "/auth"
proxy = "traefik"

[[upstreams]]
name = "trivial"
url = "http://127.0.0.1:$up_port"

[[routes]]
prefix = "/"
EOF
  local t0; t0=$(date +%s.%N)
  RUST_LOG=warn "$bin" gateway --config "$work/$1.toml" 2>"$work/$1.log" & gw_pid=$!; pids+=("$gw_pid")
  for _ in $(seq 1200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$gw_ops/readyz")" = 200 ] && break
    kill -0 "$gw_pid" 2>/dev/null || { echo "gateway $1 exited: $(tail -5 "$work/$1.log")" >&2; exit 1; }
    sleep 0.1
  done
  local index
  index=$(curl -sf "http://127.0.0.1:$gw_ops/metrics" | awk '$1 == "tollgate_gateway_revocation_index_tokens" {print int($2)}')
  if [ "${index:-0}" -lt "$REVOKED" ]; then
    echo "gateway $1: ready with ${index:-no} revoked ids in its index, not $REVOKED" >&2; exit 1
  fi
  echo "gateway $1 (cache_verified_tokens = $2): ready with $index revoked ids after $(python3 -c "import time; print(f'{time.time()-$t0:.1f} s')")"
}
rss_mib() { awk '/^VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }

gateway plain 0; plain=$gw_pid; plain_port=$gw_port
sleep 2
plain_idle=$(rss_mib "$plain")
gateway cached 100000; cached=$gw_pid; cached_port=$gw_port
sleep 2
cached_idle=$(rss_mib "$cached")

# Sanity: the measured token passes, a token revoked through `tollgate revoke` is refused, by both.
"$bin" revoke --redis "$redis_url" --jti "$(claim "$REVOKED_AT" jti)" --expires-at "$(claim "$REVOKED_AT" exp)" >/dev/null
sleep 1
for port in "$plain_port" "$cached_port"; do
  ok=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT" "http://127.0.0.1:$port/")
  refused=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $REVOKED_AT" "http://127.0.0.1:$port/")
  fa=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $AT" -H 'X-Forwarded-Method: GET' \
    -H 'X-Forwarded-Uri: /orders/1' -H 'X-Forwarded-Host: api.example.com' "http://127.0.0.1:$port/auth")
  echo "sanity, gateway on $port: valid token $ok, revoked token $refused, forward-auth $fa"
  if [ "$ok" != 200 ] || [ "$refused" != 401 ] || [ "$fa" != 200 ]; then echo "sanity check failed" >&2; exit 1; fi
done

# --- measurements ---------------------------------------------------------------------------------
wrk_run() { wrk -t2 -c"$CONNECTIONS" "$@"; }
rate() { awk '/Requests\/sec/ {print int($2)}'; }
p99() { awk '$1 == "99%" {print $2}'; }
non2xx() { awk '/Non-2xx/ {n=$NF} END {print n+0}'; }
errors() { awk '/Socket errors/ {print}'; }
# measure NAME PID URL [HEADER...]: a 3 s warm-up, then wrk --latency for DURATION while PID's
# VmRSS is sampled every 100 ms (PID "-" for nginx). Sets $m_rate and $m_p99, keeps wrk's output,
# raises peak[NAME]; a non-2xx answer stops the run (it would not measure what it says).
declare -A peak=()
# ticks PID...: user and system clock ticks of those processes (every thread), summed.
ticks() {
  local u=0 st=0 p a b
  for p in "$@"; do read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat"); u=$((u + a)); st=$((st + b)); done
  echo "$u $st"
}
# children_seconds: prints the CPU seconds (user + system) of this shell's finished children,
# wrk included. `times` must run in this shell (a subshell's count starts at zero): call it as
# `children_seconds >FILE`, not in `$(...)`.
children_seconds() {
  times >"$work/times.raw"
  awk 'NR == 2 {gsub(/[ms]/, " "); print $1 * 60 + $2 + $3 * 60 + $4}' "$work/times.raw"
}
measure() {
  local name=$1 pid=$2 url=$3 h sampler="" out bad sock r
  shift 3
  local args=()
  for h in "$@"; do args+=(-H "$h"); done
  wrk_run -d3s "${args[@]}" "$url" >/dev/null
  if [ "$pid" != - ]; then
    echo 0 >"$work/$name.rss"
    (max=0; while kill -0 "$pid" 2>/dev/null; do
       r=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)
       if [ "${r:-0}" -gt "$max" ]; then max=$r; echo "$max" >"$work/$name.rss"; fi
       sleep 0.1
     done) & sampler=$!
  fi
  local proxy_pids=$pid cpu0 cpu1 up0 up1 wrk0 wrk1
  if [ "$pid" = - ]; then proxy_pids=$ceiling_workers; fi
  cpu0=$(ticks $proxy_pids); up0=$(ticks $upstream_workers); children_seconds >"$work/wrk.cpu"
  wrk0=$(cat "$work/wrk.cpu")
  out=$(wrk_run -d"$DURATION" --latency "${args[@]}" "$url")
  cpu1=$(ticks $proxy_pids); up1=$(ticks $upstream_workers); children_seconds >"$work/wrk.cpu"
  wrk1=$(cat "$work/wrk.cpu")
  if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true; fi
  if [ "${CPU:-0}" = 1 ]; then
    python3 - "$name" "$(echo "$out" | awk '/requests in/ {print $1}')" "$(getconf CLK_TCK)" \
      $cpu0 $cpu1 $up0 $up1 $wrk0 $wrk1 <<'PY'
import sys
name, n, hz = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
u0, s0, u1, s1, uu0, us0, uu1, us1 = map(int, sys.argv[4:12])
w0, w1 = map(float, sys.argv[12:14])
per = lambda ticks: ticks / hz / n * 1e6
print(f"  cpu per request, {name}: user {per(u1 - u0):.1f} us + system {per(s1 - s0):.1f} us; "
      f"upstream nginx {per(uu1 - uu0 + us1 - us0):.1f} us; wrk {(w1 - w0) / n * 1e6:.1f} us")
PY
  fi
  echo "$out" >"$work/$name.$round.wrk"
  bad=$(echo "$out" | non2xx)
  if [ "$bad" -ne 0 ]; then echo "$name: $bad non-2xx answers (see $work/$name.$round.wrk)" >&2; exit 1; fi
  sock=$(echo "$out" | errors)
  if [ -n "$sock" ]; then echo "  ($name: $sock)"; fi
  if [ "$pid" != - ]; then
    r=$(cat "$work/$name.rss")
    if [ "$r" -gt "${peak[$name]:-0}" ]; then peak[$name]=$r; fi
  fi
  m_rate=$(echo "$out" | rate)
  m_p99=$(echo "$out" | p99)
}
bearer="Authorization: Bearer $AT"
fa_headers=("$bearer" "X-Forwarded-Method: GET" "X-Forwarded-Uri: /orders/1" "X-Forwarded-Host: api.example.com")

echo "== 1. proxying, wrk -t2 -c$CONNECTIONS -d$DURATION --latency (warm-up 3 s each), $ROUNDS rounds"
declare -A total=()
for round in $(seq "$ROUNDS"); do
  measure gateway "$plain" "http://127.0.0.1:$plain_port/" "$bearer"; g=$m_rate g99=$m_p99
  measure nginx - "http://127.0.0.1:$ceiling_port/" "$bearer"; n=$m_rate n99=$m_p99
  measure gateway-cache "$cached" "http://127.0.0.1:$cached_port/" "$bearer"; c=$m_rate c99=$m_p99
  total[g]=$(( ${total[g]:-0} + g )); total[n]=$(( ${total[n]:-0} + n )); total[c]=$(( ${total[c]:-0} + c ))
  printf 'round %s: gateway %6d req/s p99 %-8s nginx %6d req/s p99 %-8s gateway+cache %6d req/s p99 %-8s ratios %s, %s\n' \
    "$round" "$g" "$g99" "$n" "$n99" "$c" "$c99" \
    "$(python3 -c "print(f'{$g/$n:.2f}')")" "$(python3 -c "print(f'{$c/$n:.2f}')")"
done
echo "gateway / nginx (sums):         $(python3 -c "print(f'{${total[g]}/${total[n]}:.2f}')") (target >= 0.70)"
echo "gateway+cache / nginx (sums):   $(python3 -c "print(f'{${total[c]}/${total[n]}:.2f}')")"

echo "== 2. forward-auth alone (proxy = traefik), wrk -t2 -c$CONNECTIONS -d$DURATION --latency, $ROUNDS rounds"
for round in $(seq "$ROUNDS"); do
  measure forward-auth "$plain" "http://127.0.0.1:$plain_port/auth" "${fa_headers[@]}"; f=$m_rate f99=$m_p99
  measure forward-auth-cache "$cached" "http://127.0.0.1:$cached_port/auth" "${fa_headers[@]}"; fc=$m_rate fc99=$m_p99
  total[f]=$(( ${total[f]:-0} + f )); total[fc]=$(( ${total[fc]:-0} + fc ))
  printf 'round %s: forward-auth %6d req/s p99 %-8s with the cache %6d req/s p99 %s\n' "$round" "$f" "$f99" "$fc" "$fc99"
done
echo "forward-auth (mean):            $(( total[f] / ROUNDS )) req/s; with the cache $(( total[fc] / ROUNDS )) req/s"

echo "== 3. gateway resident memory (VmRSS), $REVOKED revoked ids in the index"
mib() { python3 -c "print(f'{${1:-0}/1024:.0f} MiB')"; }
echo "idle (after loading):           $plain_idle MiB; with the cache $cached_idle MiB"
echo "under load (max sampled):       proxying $(mib "${peak[gateway]:-0}"), forward-auth $(mib "${peak[forward-auth]:-0}"); with the cache $(mib "${peak[gateway-cache]:-0}"), $(mib "${peak[forward-auth-cache]:-0}")"
echo "after the runs:                 $(rss_mib "$plain") MiB; with the cache $(rss_mib "$cached") MiB"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); wrk, nginx, the gateways and Redis all on it"
