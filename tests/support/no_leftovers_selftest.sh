#!/usr/bin/env bash
# no-leftovers: a command's exit status passes through when it leaves nothing running; a process
# it leaves behind (detached, in a session of its own, as the Dovecot harness starts servers) is
# reported, killed, and fails the run.
set -euo pipefail
tool=${1:?path to no-leftovers}
fail() { echo "FAIL: $*" >&2; exit 1; }

"$tool" true || fail "a clean command failed"
set +e
"$tool" sh -c 'exit 3'; [ $? = 3 ] || fail "the command's own status is not passed through"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$tool" sh -c "setsid sleep 300 > /dev/null 2>&1 < /dev/null & echo \$! > '$tmp/pid'" 2> "$tmp/err"
status=$?
set -e
[ "$status" = 1 ] || fail "a leftover process did not fail the run (status $status)"
grep -q "sleep 300" "$tmp/err" || fail "the leftover is not named: $(cat "$tmp/err")"
pid=$(cat "$tmp/pid")
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
! kill -0 "$pid" 2>/dev/null || fail "the leftover $pid still runs"
echo "no-leftovers: passes a clean status through, finds and stops a leftover"
