# Shell functions the gateway benchmarks share (benches/gateway.sh, benches/gateway_tls.sh):
# the binary, free ports, processes stopped on exit, waiting for a server, and private nginx
# instances. Source it after `set -euo pipefail`; it expects $root (the checkout) and $NGINX
# (the nginx binary).

# tollgate_binary: $TOLLGATE_BIN, or target/release/tollgate, built if missing.
tollgate_binary() {
  local bin="${TOLLGATE_BIN:-$root/target/release/tollgate}"
  if [ ! -x "$bin" ]; then
    (cd "$root" && cargo build --release -p tollgate-server >/dev/null)
    bin="$root/target/release/tollgate"
  fi
  echo "$bin"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# wait_for URL WHAT LOG [CURL-ARGS...]: until URL answers 2xx (20 s), else the log's tail and exit.
wait_for() {
  local url=$1 what=$2 log=$3
  shift 3
  for _ in $(seq 200); do curl -sf -o /dev/null "$@" "$url" && return; sleep 0.1; done
  echo "$what did not come up: $(tail -5 "$log")" >&2; exit 1
}

# nginx_conf DIR SERVER-BLOCK [UPSTREAM-BLOCK]: a private nginx's configuration (temp paths in
# DIR, no access log).
nginx_conf() {
  mkdir -p "$1/tmp"
  cat >"$1/nginx.conf" <<EOF_NGINX
worker_processes auto;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    client_body_temp_path $1/tmp/body;
    proxy_temp_path $1/tmp/proxy;
    fastcgi_temp_path $1/tmp/fastcgi;
    uwsgi_temp_path $1/tmp/uwsgi;
    scgi_temp_path $1/tmp/scgi;
    ${3:-}
    $2
}
EOF_NGINX
}
# start_nginx DIR: runs the nginx configured in DIR in the foreground of a background job.
start_nginx() {
  "$NGINX" -p "$1" -c "$1/nginx.conf" -g "daemon off; pid $1/nginx.pid; error_log stderr;" \
    2>"$1/error.log" & pids+=("$!")
}
