#!/usr/bin/env bash
# Revocations from identity providers, all in one run on one machine (see docs/performance.md,
# "Revocations from identity providers"):
#   1. logout tokens validated and published per second (to the index; through Redis)
#   2. propagation: a tollgate gateway answers a logout 200 -> a follower in another process
#      refuses the session's token, beside 1,000 other revocations/s
#   3. the Verifier with three issuers against one (token of the third)
#
# Needs: redis-server (every Redis here is private: free port, temporary directory).
#   benches/signals.sh        # LOGOUTS=500 LOGOUT_RATE=50 RATE=1000 by default
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
cargo build --release -p tollgate-server >/dev/null
TOLLGATE_BIN="$root/target/release/tollgate" cargo bench -q -p tollgate-signals --features redis --bench logout 2>/dev/null
echo "== 3. one issuer against three"
cargo bench -q -p tollgate-layer --bench issuers 2>/dev/null | grep -E '^issuers|time:'
