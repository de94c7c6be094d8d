#!/usr/bin/env bash
# Runs schemathesis (PyPI) against the real `tollgate serve` binary and the token service's OpenAPI
# description (crates/tollgate-issuer/openapi.json), with its stateful and negative-data checks.
#
#   tests/schemathesis/run.sh [MAX_EXAMPLES] [MAX_SECONDS]     defaults: 25 examples, 150 s
#
# What it does: installs schemathesis (pinned) into target/schemathesis-venv on first use; builds
# the `tollgate` binary (debug); starts it on the demo configuration (examples/tollgate.toml) with
# the memory store, a free loopback port and a temporary data directory; takes credentials from the
# demo configuration (client `svc` over HTTP Basic) and an admin and a user access token through
# the password grant (client `integration`); runs `st run` with every check and every phase; stops
# the server. Exits non-zero when schemathesis reports a failure. Reports (JUnit, and a pytest file
# reproducing each failure) go to target/schemathesis-report/. SCHEMATHESIS_ARGS adds options.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
max_examples=${1:-25}
max_seconds=${2:-150}
version=4.32.5
venv=target/schemathesis-venv
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$version"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==$version" openapi-spec-validator
fi
"$venv/bin/openapi-spec-validator" crates/tollgate-issuer/openapi.json

cargo build --quiet -p tollgate-server
work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
# The demo configuration, on our port and data directory, with the memory store.
{
  echo 'store = "memory"'
  sed -e "s|^listen = .*|listen = \"127.0.0.1:$port\"|" \
      -e "s|^issuer = .*|issuer = \"$base\"|" \
      -e "s|^data_dir = .*|data_dir = \"$work/data\"|" examples/tollgate.toml
} > "$work/tollgate.toml"
target/debug/tollgate serve --config "$work/tollgate.toml" > "$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  if curl -fsS -o /dev/null "$base/.well-known/openid-configuration" 2>/dev/null; then break; fi
  if ! kill -0 "$server_pid" 2>/dev/null; then cat "$work/server.log"; exit 1; fi
  sleep 0.2
done

token() { # username password tenant
  curl -fsS -u "$ST_PASSWORD_CLIENT_ID:$ST_PASSWORD_CLIENT_SECRET" -d grant_type=password -d "username=$1" \
       -d "password=$2" -d "tenant_path=$3" "$base/connect/token" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])'
}
# The demo configuration's clients and users (their secrets are written beside their hashes there).
export ST_CLIENT_ID=svc ST_CLIENT_SECRET=svc-secret-0123456789
export ST_PASSWORD_CLIENT_ID=integration ST_PASSWORD_CLIENT_SECRET=integration-secret
export ST_ADMIN_PASSWORD=admin-password ST_USER_PASSWORD=alice-password
ST_ADMIN_TOKEN=$(token admin admin-password /)
export ST_ADMIN_TOKEN

mkdir -p target/schemathesis-report
status=0
# /openapi.json is described but not served yet (the lead wires it into the routing table).
# From target/schemathesis-report, where schemathesis also keeps its cache (.schemathesis/).
(cd target/schemathesis-report && "$root/$venv/bin/st" --config-file "$root/tests/schemathesis/schemathesis.toml" \
  run "$root/crates/tollgate-issuer/openapi.json" \
  --url "$base" --checks all --phases examples,coverage,fuzzing,stateful --mode all \
  --max-examples "$max_examples" --max-time "$max_seconds" --seed 1 --workers 1 \
  --request-timeout 10 --generation-database none \
  --report junit,pytest --report-dir . --no-color \
  ${SCHEMATHESIS_ARGS:-}) || status=$?
if [ "$status" -ne 0 ]; then
  echo "--- server log (last 20 lines)"; tail -20 "$work/server.log"
fi
exit "$status"
