#!/usr/bin/env bash
# The demo: on a fresh Debian 12 machine, as root, from a checkout.
# Installs what is missing (packaging/setup.sh), builds, starts a throwaway
# Dovecot LMTP on loopback, and delivers one message to alice, bob and the
# over-quota user full four ways: with the lmtp-send command, through the C API
# (tests/integration/example.c), through Perl (Net::LMTP) and through Python
# (lmtp). Shows each recipient's verdict and where the mail landed, then stops
# the server.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=$root/build/release
packaging/setup.sh
echo "== building in $build"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" --target lmtp-send lmtp_example perl_module python_package >/dev/null

start=$(date +%s%N)
dir=$(mktemp -d /tmp/lmtp-demo.XXXXXX)
trap 'tests/support/dovecot.sh stop "$dir/server"; rm -rf "$dir"' EXIT
eval "$(tests/support/dovecot.sh start "$dir/server")"
echo "== Dovecot LMTP listening on 127.0.0.1 port $LMTP_PORT (and $LMTP_SOCKET)"
rcpts=(alice@example.org bob@example.org full@example.org)
message() {  # message FACE: the message each face delivers
    printf 'From: demo@example.org\nSubject: hello from %s\n\nOne message, one verdict per recipient.\n' "$1"
}

echo
echo "== 1. lmtp-send (exit status 65: a recipient refused the message permanently)"
set +e
message lmtp-send | "$build/cli/lmtp-send" --server "127.0.0.1:$LMTP_PORT" \
    --from demo@example.org "${rcpts[@]/#/--to=}"
echo "   exit status $?"
set -e

echo
echo "== 2. the C API (tests/integration/example.c)"
"$build/tests/integration/lmtp_example" 127.0.0.1 "$LMTP_PORT" "${rcpts[@]}" || true

echo
echo "== 3. Perl: Net::LMTP, over the unix socket"
perl -Mblib="$build/bindings/perl" -MNet::LMTP -e '
    my ($socket, $msg, @to) = @ARGV;
    my $lmtp = Net::LMTP->new($socket, 0, Timeout => 10) or die "connect: $@\n";
    for my $r ($lmtp->deliver("demo\@example.org", [@to], $msg)) {
        printf "%-22s %d %-5s %s\n", $r->{address}, $r->{code}, $r->{enhanced}, $r->{text};
    }
    $lmtp->quit;
' "$LMTP_SOCKET" "$(message Perl)" "${rcpts[@]}"

echo
echo "== 4. Python: lmtp, with the smtplib interface"
PYTHONPATH=$build/bindings/python /usr/bin/python3 - "$LMTP_PORT" "$(message Python)" "${rcpts[@]}" <<'EOF'
import sys
import lmtp

port, msg, rcpts = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3:]
with lmtp.LMTP("127.0.0.1", port, timeout=10) as server:
    refused = server.sendmail("demo@example.org", rcpts, msg)
    for r in server.last_results:
        enhanced = ".".join(map(str, r.enhanced)) if r.enhanced else "-"
        print(f"{r.address:22} {r.outcome:8} {r.code} {enhanced:5} {r.text}")
    print(f"sendmail() returned the refused recipients: {refused}")
EOF

echo
echo "== where the mail landed"
for user in alice bob full; do
    new=$LMTP_DIR/mail/$user/Maildir/new
    n=$(ls "$new" 2>/dev/null | wc -l)
    echo "   $user: $n message(s) in $new"
    for f in "$new"/*; do
        [ -e "$f" ] && echo "      $(grep -m1 '^Subject:' "$f")"
    done
done
f=$(ls "$LMTP_DIR"/mail/alice/Maildir/new/* | head -1)
echo "== one of alice's copies ($f):"
sed 's/^/   | /' "$f"
ms=$(( ($(date +%s%N) - start) / 1000000 ))
printf '== done in %d.%03d s after the build; stopping the server\n' $((ms / 1000)) $((ms % 1000))
