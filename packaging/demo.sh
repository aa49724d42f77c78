#!/usr/bin/env bash
# Sets up everything, builds, starts a throwaway Dovecot LMTP on loopback,
# delivers one message to alice, bob, an over-quota user and an unknown user
# through the C API, shows each recipient's verdict and where the mail
# landed, and stops the server.
set -euo pipefail
cd "$(dirname "$0")/.."
packaging/setup.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build/release -j"$(nproc)" --target lmtp_example >/dev/null

dir=$(mktemp -d /tmp/lmtp-demo.XXXXXX)
trap 'tests/support/dovecot.sh stop "$dir/server"; rm -rf "$dir"' EXIT
eval "$(tests/support/dovecot.sh start "$dir/server")"
echo "== Dovecot LMTP listening on 127.0.0.1 port $LMTP_PORT (and $LMTP_SOCKET)"
echo "== one message, four recipients, one verdict each:"
build/release/tests/integration/lmtp_example 127.0.0.1 "$LMTP_PORT" \
    alice@example.org bob@example.org full@example.org nosuch@example.org || true
echo "== where the mail landed:"
for user in alice bob full; do
    files=$(ls "$LMTP_DIR/mail/$user/Maildir/new" 2>/dev/null | wc -l)
    echo "   $user: $files message(s) in $LMTP_DIR/mail/$user/Maildir/new"
done
f=$(ls "$LMTP_DIR"/mail/alice/Maildir/new/* | head -1)
echo "== alice's copy ($f):"
sed 's/^/   | /' "$f"
