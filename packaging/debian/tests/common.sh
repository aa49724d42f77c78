# Sourced by the autopkgtests: a throwaway Dovecot LMTP server and Maildir checks.
#   start_dovecot              starts one; sets LMTP_DIR, LMTP_PORT, LMTP_SOCKET
#   expect_mail USER MARKER    exactly one message in USER's Maildir, holding MARKER
# The server is stopped when the test exits. Run from the source tree (as
# autopkgtest does): the server script is tests/support/dovecot.sh there.

tmp=${AUTOPKGTEST_TMP:-$(mktemp -d)}
dovecot_dir=$tmp/dovecot
dovecot_sh=$PWD/tests/support/dovecot.sh
[ -x "$dovecot_sh" ] || { echo "no $dovecot_sh: run from the source tree" >&2; exit 1; }

start_dovecot() {
    trap '"$dovecot_sh" stop "$dovecot_dir"' EXIT
    eval "$("$dovecot_sh" start "$dovecot_dir")"
    echo "Dovecot LMTP on 127.0.0.1:$LMTP_PORT and $LMTP_SOCKET"
}

expect_mail() {
    local user=$1 marker=$2 new files
    new=$LMTP_DIR/mail/$user/Maildir/new
    files=$(find "$new" -type f 2>/dev/null | wc -l)
    if [ "$files" != 1 ]; then
        echo "FAIL: $files messages in $new, expected 1" >&2
        exit 1
    fi
    if ! grep -rqF -- "$marker" "$new"; then
        echo "FAIL: the message in $new does not hold '$marker'" >&2
        exit 1
    fi
    echo "ok: $user got the message ($marker)"
}
