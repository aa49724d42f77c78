#!/usr/bin/env bash
# The C API against a real Dovecot LMTP, over TCP (IPv4 and IPv6) and a unix
# socket: each recipient's verdict as reported, and what landed in the Maildirs.
set -euo pipefail
example=${1:?path to lmtp_example}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/lmtp-dovecot.XXXXXX)
cleanup() { "$here/../support/dovecot.sh" stop "$dir/server"; rm -rf "$dir"; }
trap cleanup EXIT
eval "$("$here/../support/dovecot.sh" start "$dir/server")"

fail() { echo "FAIL: $*" >&2; exit 1; }
expect_line() {  # output, address, verdict, code
    grep -Eq "^$2 +$3 +$4 " <<<"$1" || fail "expected '$2 $3 $4' in:
$1"
}

n=0
for target in "127.0.0.1 $LMTP_PORT" "::1 $LMTP_PORT" "$LMTP_SOCKET 0"; do
    set -- $target
    out=$("$example" "$1" "$2" alice@example.org full@example.org bob@example.org nosuch@example.org \
          tempfull@example.org broken@example.org alice@example.org) || fail "delivery over $1 failed: $out"
    echo "$out"
    expect_line "$out" alice@example.org ok 250
    expect_line "$out" bob@example.org ok 250
    expect_line "$out" full@example.org permfail 552
    expect_line "$out" tempfull@example.org tempfail 452
    expect_line "$out" broken@example.org tempfail 451
    expect_line "$out" nosuch@example.org permfail 550
    [ "$(grep -c '^alice@example.org  *ok  *250' <<<"$out")" = 2 ] || fail "the duplicate recipient needs its own reply"
    n=$((n + 1))
done

# One message per run for alice and bob: Dovecot answers each copy for a
# duplicate recipient (checked above) but stores it once.
count() { ls "$LMTP_DIR/mail/$1/Maildir/new" 2>/dev/null | wc -l; }
[ "$(count alice)" = "$n" ] || fail "alice has $(count alice) messages, expected $n"
[ "$(count bob)" = "$n" ] || fail "bob has $(count bob) messages, expected $n"
[ "$(count full)" = 0 ] || fail "full should have nothing"
body=$'From: demo@example.org\nSubject: hello from liblmtp\n\nOne message, one verdict per recipient.\n'
for f in "$LMTP_DIR"/mail/bob/Maildir/new/*; do
    tail -c ${#body} "$f" | cmp -s - <(printf '%s' "$body") || fail "message in $f is not what was sent"
done
echo "dovecot_deliver: $n runs, every verdict and every Maildir as expected"
