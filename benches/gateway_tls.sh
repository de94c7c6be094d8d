#!/usr/bin/env bash
# `tollgate gateway` terminating TLS (issue 22, docs/performance.md's TLS table), all in one run
# on one machine, against:
#   - the ceiling: nginx terminating TLS and proxying with no auth at all;
#   - the peer: HAProxy terminating TLS and checking the bearer token with `jwt_verify` (ES256:
#     HAProxy 2.6 verifies no EdDSA), `iss`, `aud` and `exp`, with no revocation.
# The gateway is measured without and with its verified-token cache, with ES256 and EdDSA
# tokens, following a private Redis (one token revoked with `tollgate revoke`, checked refused).
#
# Two ways of connecting, each wrk -t2 -c$CONNECTIONS for DURATION after a 3 s warm-up, ROUNDS
# times in alternation:
#   1. keep-alive: TLS connections opened once and reused (requests/s, p99);
#   2. a new connection per request (`Connection: close`; wrk resumes no session, so every
#      request costs a full handshake): handshakes/s, p99.
# Then 3. resident memory per open TLS connection: CONNS_HELD connections, each with one
# request answered, held open; (VmRSS with them - VmRSS before) / CONNS_HELD, summed over every
# process of the proxy (nginx's and HAProxy's workers included).
#
# Everything is private (target/gateway-tls-bench, free ports); one ECDSA P-256 certificate
# serves all three proxies; TLS 1.3 is what each negotiates with wrk. Needs: wrk, nginx, haproxy
# (Debian's 2.6), redis-server, openssl, curl, python3. The tollgate binary is
# ${TOLLGATE_BIN:-target/release/tollgate}, built if missing.
#   benches/gateway_tls.sh                       # DURATION=10s ROUNDS=2 CONNECTIONS=64
#   DURATION=5s ROUNDS=1 benches/gateway_tls.sh
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$root/target/gateway-tls-bench"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
CONNS_HELD="${CONNS_HELD:-1000}"
NGINX="${NGINX:-/usr/sbin/nginx}"
HAPROXY="${HAPROXY:-/usr/sbin/haproxy}"
rm -rf "$work" && mkdir -p "$work"
cd "$root"

# tollgate_binary, free_port, pids and the cleanup on exit, wait_for, nginx_conf, start_nginx.
source "$root/benches/lib.sh"
bin=$(tollgate_binary)

# --- the certificate every proxy serves -----------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -keyout "$work/tls.key" -out "$work/tls.crt" 2>/dev/null
cat "$work/tls.crt" "$work/tls.key" >"$work/tls.pem" # HAProxy's `crt` takes both in one file
tls_curl=(--cacert "$work/tls.crt")

# --- the upstream (plain HTTP), and the ceiling -----------------------------------------------------
up_port=$(free_port); ceiling_port=$(free_port)
nginx_conf "$work/upstream" \
  "server { listen 127.0.0.1:$up_port; location / { return 200 \"ok\\n\"; } }"
nginx_conf "$work/ceiling" \
  "server { listen 127.0.0.1:$ceiling_port ssl; ssl_certificate $work/tls.crt; ssl_certificate_key $work/tls.key; ssl_protocols TLSv1.2 TLSv1.3; location / { proxy_pass http://trivial; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" \
  "upstream trivial { server 127.0.0.1:$up_port; keepalive 64; keepalive_requests 1000000; }"
start_nginx "$work/upstream"
start_nginx "$work/ceiling"
wait_for "http://127.0.0.1:$up_port/" "the upstream nginx" "$work/upstream/error.log"
wait_for "https://127.0.0.1:$ceiling_port/" "the ceiling nginx" "$work/ceiling/error.log" "${tls_curl[@]}"

# --- keys, and tokens from tollgate serve: ES256 (kid k2) and EdDSA (kid k1) ---------------------
"$bin" keygen --kid k1 --algorithm EdDSA --out "$work/k1.der" >"$work/k1.toml"
"$bin" keygen --kid k2 --algorithm ES256 --out "$work/k2.der" >"$work/k2.toml"
# HAProxy's jwt_verify takes the ES256 key as a PEM public key (2.6 refuses a certificate's).
openssl pkey -inform DER -in "$work/k2.der" -pubout -out "$work/k2.pub"
# tokens KID: starts tollgate serve signing with that key alone, prints two tokens (the
# measured one, and one to revoke), stops it.
tokens() {
  local port; port=$(free_port)
  {
    sed -e 's|^data_dir = .*|data_dir = "'"$work"'/serve-'"$1"'"|' \
        -e 's|^listen = .*|listen = "127.0.0.1:'"$port"'"|' examples/tollgate.toml
    echo; cat "$work/$1.toml"
  } >"$work/serve-$1.toml"
  "$bin" serve --config "$work/serve-$1.toml" 2>"$work/serve-$1.log" & local serve=$!
  wait_for "http://127.0.0.1:$port/.well-known/jwks.json" "tollgate serve" "$work/serve-$1.log"
  for _ in 1 2; do
    curl -sf -u svc:svc-secret-0123456789 -d grant_type=client_credentials -d access-token-lifetime=3600 \
      "http://127.0.0.1:$port/connect/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
  done
  kill "$serve"; wait "$serve" 2>/dev/null || true
}
claim() { python3 -c 'import base64,json,sys; p=sys.argv[1].split(".")['"${3:-1}"']; print(json.loads(base64.urlsafe_b64decode(p+"="*(-len(p)%4)))[sys.argv[2]])' "$1" "$2"; }
mapfile -t es < <(tokens k2); ES=${es[0]}; ES_REVOKED=${es[1]}
mapfile -t ed < <(tokens k1); ED=${ed[0]}
[ "$(claim "$ES" alg 0)" = ES256 ] && [ "$(claim "$ED" alg 0)" = EdDSA ] || { echo "tokens of the wrong algorithm" >&2; exit 1; }
issuer=$(claim "$ES" iss); audience=$(claim "$ES" aud)
echo "tokens: ES256 $(printf %s "$ES" | wc -c) bytes, EdDSA $(printf %s "$ED" | wc -c) bytes; iss $issuer, aud $audience"

# --- the peer: HAProxy, TLS + jwt_verify ES256 -----------------------------------------------------
haproxy_port=$(free_port)
cat >"$work/haproxy.cfg" <<EOF
global
    nbthread $(nproc)
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-keep-alive 75s
    option http-keep-alive
frontend tls
    bind 127.0.0.1:$haproxy_port ssl crt $work/tls.pem ssl-min-ver TLSv1.2
    http-request set-var(txn.bearer) http_auth_bearer
    http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('\$.alg')
    http-request deny deny_status 401 unless { var(txn.alg) -m str ES256 }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.iss') -m str "$issuer" }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_payload_query('\$.aud') -m str "$audience" }
    http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"$work/k2.pub") -m int 1 }
    http-request set-var(txn.exp) var(txn.bearer),jwt_payload_query('\$.exp','int')
    http-request set-var(txn.now) date()
    http-request deny deny_status 401 if { var(txn.exp),sub(txn.now) -m int lt 0 }
    default_backend trivial
backend trivial
    http-reuse always
    server up 127.0.0.1:$up_port
EOF
"$HAPROXY" -c -f "$work/haproxy.cfg" >/dev/null
"$HAPROXY" -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 & haproxy_pid=$!; pids+=("$haproxy_pid")
wait_for "https://127.0.0.1:$haproxy_port/" "haproxy" "$work/haproxy.log" "${tls_curl[@]}" -H "Authorization: Bearer $ES"

# --- Redis, and the gateways (cache off and on), TLS ------------------------------------------------
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 & pids+=("$!")
redis_url="redis://127.0.0.1:$redis_port/"
for _ in $(seq 100); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
# gateway NAME CACHE: writes NAME.toml, starts it, sets $gw_pid $gw_port.
gateway() {
  gw_port=$(free_port); local ops; ops=$(free_port)
  cat >"$work/$1.toml" <<EOF
listen = "127.0.0.1:$gw_port"
issuer = "$issuer"
audience = ["$audience"]

[tls]
certificate = "$work/tls.crt"
private_key = "$work/tls.key"

[keys]
files = [
  { kid = "k1", algorithm = "EdDSA", file = "$work/k1.der" },
  { kid = "k2", algorithm = "ES256", file = "$work/k2.der" },
]

[validation]
cache_verified_tokens = $2

[revocations]
redis_url = "$redis_url"

[limits]
max_connections = 8000

[ops]
listen = "127.0.0.1:$ops"

[[upstreams]]
name = "trivial"
url = "http://127.0.0.1:$up_port"

[[routes]]
prefix = "/"
EOF
  RUST_LOG=warn "$bin" gateway --config "$work/$1.toml" 2>"$work/$1.log" & gw_pid=$!; pids+=("$gw_pid")
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$ops/readyz")" = 200 ] && return
    kill -0 "$gw_pid" 2>/dev/null || { echo "gateway $1 exited: $(tail -5 "$work/$1.log")" >&2; exit 1; }
    sleep 0.1
  done
  echo "gateway $1 never became ready: $(tail -5 "$work/$1.log")" >&2; exit 1
}
gateway plain 0; plain=$gw_pid; plain_port=$gw_port
gateway cached 10000; cached=$gw_pid; cached_port=$gw_port

# Sanity: each token passes where it should; the revoked one is refused by both gateways.
"$bin" revoke --redis "$redis_url" --jti "$(claim "$ES_REVOKED" jti)" --expires-at "$(claim "$ES_REVOKED" exp)" >/dev/null
sleep 1
code() { curl -s -o /dev/null -w '%{http_code}' "${tls_curl[@]}" -H "Authorization: Bearer $2" "https://127.0.0.1:$1/"; }
for port in "$plain_port" "$cached_port"; do
  echo "sanity, gateway on $port: ES256 $(code "$port" "$ES"), EdDSA $(code "$port" "$ED"), revoked $(code "$port" "$ES_REVOKED"), none $(code "$port" "")"
  [ "$(code "$port" "$ES")" = 200 ] && [ "$(code "$port" "$ED")" = 200 ] && [ "$(code "$port" "$ES_REVOKED")" = 401 ] \
    || { echo "sanity check failed" >&2; exit 1; }
done
echo "sanity, haproxy: ES256 $(code "$haproxy_port" "$ES"), EdDSA $(code "$haproxy_port" "$ED"), none $(code "$haproxy_port" "")"
[ "$(code "$haproxy_port" "$ES")" = 200 ] && [ "$(code "$haproxy_port" "$ED")" = 401 ] || { echo "haproxy sanity check failed" >&2; exit 1; }

# --- measurements -------------------------------------------------------------------------------------
# measure NAME URL TOKEN [HEADER...]: a 3 s warm-up, then wrk --latency for DURATION. Sets
# $m_rate and $m_p99; a non-2xx answer or a socket error stops the run.
measure() {
  local name=$1 url=$2 token=$3 out bad sock
  shift 3
  local args=(-H "Authorization: Bearer $token")
  local h
  for h in "$@"; do args+=(-H "$h"); done
  wrk -t2 -c"$CONNECTIONS" -d3s "${args[@]}" "$url" >/dev/null
  out=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "${args[@]}" "$url")
  echo "$out" >"$work/$name.$round.wrk"
  bad=$(echo "$out" | awk '/Non-2xx/ {n=$NF} END {print n+0}')
  if [ "$bad" -ne 0 ]; then echo "$name: $bad non-2xx answers (see $work/$name.$round.wrk)" >&2; exit 1; fi
  sock=$(echo "$out" | awk '/Socket errors/ {print}')
  if [ -n "$sock" ]; then echo "  ($name: $sock)"; fi
  m_rate=$(echo "$out" | awk '/Requests\/sec/ {print int($2)}')
  m_p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
}
declare -A total=() p99s=()
# run MODE [HEADER...]: every target once, in alternation, for ROUNDS rounds.
run() {
  local mode=$1
  shift
  for round in $(seq "$ROUNDS"); do
    local line="round $round:"
    for target in nginx haproxy-ES256 gateway-ES256 gateway-EdDSA gateway-cache-ES256 gateway-cache-EdDSA; do
      local port token
      case $target in
        nginx) port=$ceiling_port token=$ES ;;
        haproxy-ES256) port=$haproxy_port token=$ES ;;
        gateway-ES256) port=$plain_port token=$ES ;;
        gateway-EdDSA) port=$plain_port token=$ED ;;
        gateway-cache-ES256) port=$cached_port token=$ES ;;
        gateway-cache-EdDSA) port=$cached_port token=$ED ;;
      esac
      measure "$mode-$target" "https://127.0.0.1:$port/" "$token" "$@"
      total[$mode-$target]=$(( ${total[$mode-$target]:-0} + m_rate ))
      p99s[$mode-$target]="${p99s[$mode-$target]:-}${p99s[$mode-$target]:+ }$m_p99"
      line="$line $target $m_rate ($m_p99)"
    done
    echo "$line"
  done
  echo "sums of $ROUNDS rounds, req/s (p99 per round); ratios to HAProxy ES256 (the peer) and to nginx (the ceiling):"
  for target in nginx haproxy-ES256 gateway-ES256 gateway-EdDSA gateway-cache-ES256 gateway-cache-EdDSA; do
    local t=${total[$mode-$target]}
    printf '  %-22s %8d  p99 %-18s  ÷ haproxy %s  ÷ nginx %s\n' "$target" "$t" "${p99s[$mode-$target]}" \
      "$(python3 -c "print(f'{$t/${total[$mode-haproxy-ES256]}:.2f}')")" \
      "$(python3 -c "print(f'{$t/${total[$mode-nginx]}:.2f}')")"
  done
}
echo "== 1. keep-alive TLS connections: wrk -t2 -c$CONNECTIONS -d$DURATION --latency, $ROUNDS rounds"
run keepalive
echo "== 2. a new TLS connection per request (Connection: close; full handshakes): wrk -t2 -c$CONNECTIONS -d$DURATION, $ROUNDS rounds"
run handshake "Connection: close"

echo "== 3. resident memory per open TLS connection ($CONNS_HELD held, one request answered on each)"
# rss_kib PID...: VmRSS of those processes and their children, summed.
rss_kib() {
  local total=0 p c
  for p in "$@"; do
    for c in $p $(pgrep -P "$p" || true); do
      total=$(( total + $(awk '/^VmRSS/ {print $2}' "/proc/$c/status" 2>/dev/null || echo 0) ))
    done
  done
  echo "$total"
}
# hold.py PORT TOKEN N CA: opens N TLS connections, one request answered on each, says "held",
# and keeps them until its standard input closes.
cat >"$work/hold.py" <<'PY'
import socket, ssl, sys
port, token, n, ca = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
ctx.set_alpn_protocols(["http/1.1"])
held = []
request = f"GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
    s.sendall(request)
    answer = b""
    while not answer.endswith(b"ok\n"):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit(f"closed after {len(held)} connections: {answer[:80]!r}")
        answer += chunk
    if not answer.startswith(b"HTTP/1.1 200"):
        sys.exit(f"not 200: {answer[:80]!r}")
    held.append(s)
print("held", flush=True)
sys.stdin.read()
PY
per_connection() { # per_connection NAME PORT TOKEN PID...
  local name=$1 port=$2 token=$3
  shift 3
  local before after
  sleep 1; before=$(rss_kib "$@")
  coproc HOLD { exec python3 "$work/hold.py" "$port" "$token" "$CONNS_HELD" "$work/tls.crt"; }
  read -r ready <&"${HOLD[0]}" || { echo "$name: could not hold $CONNS_HELD connections" >&2; exit 1; }
  sleep 1; after=$(rss_kib "$@")
  kill "$HOLD_PID" 2>/dev/null || true; wait "$HOLD_PID" 2>/dev/null || true
  printf '  %-10s %6.1f KiB per connection (VmRSS %d -> %d KiB)\n' "$name" \
    "$(python3 -c "print(($after - $before) / $CONNS_HELD)")" "$before" "$after"
}
per_connection nginx "$ceiling_port" "$ES" "$(cat "$work/ceiling/nginx.pid")"
per_connection haproxy "$haproxy_port" "$ES" "$haproxy_pid"
per_connection gateway "$plain_port" "$ES" "$plain"
echo "machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo); wrk, nginx, HAProxy, the gateways and Redis all on it"
