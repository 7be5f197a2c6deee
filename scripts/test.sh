#!/usr/bin/env bash
# The project's test command: install and start the FTP test bed (real servers on 127.0.0.1),
# then cargo fmt --check, cargo clippy (warnings are errors) and every test; the test bed is
# stopped on exit. Exit status is non-zero if any step failed.
#
#   FTPFS_SKIP_INSTALL=1   skip `scripts/testbed.sh install` (packages already there)
#   FTPFS_KEEP_TESTBED=1   leave the servers running afterwards
#   extra arguments        are passed to `cargo test` (e.g. scripts/test.sh --test testbed_smoke)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
TESTBED=(bash scripts/testbed.sh)

step() { printf '\n==> %s\n' "$*"; }

stop_testbed() {
    if [ "${FTPFS_KEEP_TESTBED:-0}" = 1 ]; then
        step "leaving the test bed running (FTPFS_KEEP_TESTBED=1)"
        return
    fi
    step "testbed stop"
    timeout 120 "${TESTBED[@]}" stop || echo "test.sh: testbed stop failed" >&2
}

if [ "${FTPFS_SKIP_INSTALL:-0}" != 1 ]; then
    step "testbed install"
    timeout 1800 "${TESTBED[@]}" install || { echo "test.sh: testbed install failed" >&2; exit 1; }
fi

trap stop_testbed EXIT
step "testbed start"
timeout 300 "${TESTBED[@]}" start || { echo "test.sh: testbed start failed" >&2; exit 1; }

failed=()
step "cargo fmt --check"
timeout 300 cargo fmt --all -- --check || failed+=("cargo fmt --check")

step "cargo clippy --all-targets -- -D warnings"
timeout 1800 cargo clippy --all-targets -- -D warnings || failed+=("cargo clippy")

step "cargo test $*"
# A hung test must not hold CI: the whole run is bounded (TERM, then KILL 30 s later).
timeout --kill-after=30 2700 cargo test "$@" || failed+=("cargo test")

if [ ${#failed[@]} -gt 0 ]; then
    printf '\ntest.sh: FAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
printf '\ntest.sh: all steps passed\n'
