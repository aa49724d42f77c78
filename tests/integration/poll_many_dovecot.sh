#!/usr/bin/env bash
# The non-blocking API's example (capi/examples/poll_many.c) against a real Dovecot: 100
# connections from one thread, over TCP and over the unix socket, each delivering to its own
# mailbox; every message stored exactly once, and each the one that was sent.
set -euo pipefail
poll_many=${1:?path to poll_many}
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d /tmp/lmtp-poll-many.XXXXXX)
cleanup() { "$here/../support/dovecot.sh" stop "$dir/server"; rm -rf "$dir"; }
trap cleanup EXIT
eval "$(LMTP_USERS=100 "$here/../support/dovecot.sh" start "$dir/server")"

fail() { echo "FAIL: $*" >&2; exit 1; }
count() { ls "$LMTP_DIR/mail/$1/Maildir/new" 2>/dev/null | wc -l; }

out=$("$poll_many" 127.0.0.1 "$LMTP_PORT" 100 1 'user#@example.org') || fail "over TCP: $out"
echo "$out"
grep -q '^100 messages over 100 connections: 100 delivered' <<<"$out" || fail "over TCP: $out"
out=$("$poll_many" "$LMTP_SOCKET" 0 100 1 'user#@example.org') || fail "over the unix socket: $out"
echo "$out"
grep -q '^100 messages over 100 connections: 100 delivered' <<<"$out" || fail "over the unix socket: $out"
# Two messages per mailbox, one from each run, each naming its connection.
for u in $(seq 0 99); do
    [ "$(count "user$u")" = 2 ] || fail "user$u has $(count "user$u") messages, expected 2"
    grep -lq "^Subject: connection $u message 0" "$LMTP_DIR/mail/user$u/Maildir/new/"* ||
        fail "user$u did not get the message of connection $u"
done
# Mailboxes nobody wrote to stay empty: nothing went twice or astray.
[ "$(count alice)" = 0 ] || fail "alice got mail"
echo "poll_many_dovecot: 2 x 100 connections from one thread, 200 messages, each stored once"
