#!/usr/bin/env bash
# Runs tollgate's fuzz targets with cargo-fuzz (libFuzzer), one after the other.
#
#   fuzz/run.sh [SECONDS] [TARGET...]     default: 300 s each, every target
#
# Each target starts from its committed seeds in fuzz/corpus/<target>/ (read only) plus its working
# corpus fuzz/work/<target>/ (not committed), where it adds what it finds, so later runs resume;
# crashes land in fuzz/artifacts/<target>/. A crash becomes a regular test in
# crates/tollgate-fuzz before it is fixed (copy the input into fuzz/corpus/<target>/ too, so that
# `cargo test -p tollgate-fuzz` replays it). The stable toolchain runs cargo-fuzz with
# RUSTC_BOOTSTRAP=1 (it needs -Z sanitizer flags). Extra libFuzzer flags: FUZZ_FLAGS="-jobs=1 ...".
# A summary line per target (time, executions, coverage, crashes) goes to fuzz/last-run.txt.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${1:-300}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(bearer signed_claims tenant_path token_service replication_wire logout_token client_cert config gateway_request gateway_config)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
: > last-run.txt
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "work/$t" "artifacts/$t" logs
  log="logs/$t.log"
  echo "== $t: ${seconds}s"
  status=0
  features=()
  if [ "$t" = config ]; then features=(--features config); fi
  case "$t" in gateway_*) features=(--features gateway) ;; esac
  # `-rss_limit_mb`: the token service keeps a fresh store per input, so growth is a leak.
  cargo fuzz run "${features[@]}" "$t" "work/$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -print_final_stats=1 ${FUZZ_FLAGS:-} >"$log" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -1)
  crashes=$(ls "artifacts/$t" | wc -l)
  echo "$t: ${seconds}s, exit $status, executions ${execs:-?}, last: ${last:-?}, artifacts: $crashes" | tee -a last-run.txt
done
