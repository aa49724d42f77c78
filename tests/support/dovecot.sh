#!/usr/bin/env bash
# A throwaway Dovecot LMTP server on loopback, for tests and the demo.
#
#   dovecot.sh start DIR [CERT KEY]
#                          start one in DIR (created); prints shell assignments:
#                          LMTP_DIR, LMTP_PORT, LMTP_SOCKET, LMTP_PGID. With a
#                          certificate and key (PEM), it offers STARTTLS.
#   dovecot.sh stop DIR    stop it (SIGKILL to its process group) and keep DIR
#
# Users (passwd-file): alice, bob (deliver), full (552 at DATA: quota),
# tempfull (452 at DATA), broken (451 at DATA); any other user gets 550 at RCPT.
# Environment: LMTP_USERS=N adds user0 ... user(N-1); LMTP_USER_CONCURRENCY=N sets
# lmtp_user_concurrency_limit (deliveries to one user at once; more get
# "451 4.3.0 Too many concurrent deliveries for user").
# Mail lands in DIR/mail/<user>/Maildir/new/. Dovecot will not deliver as
# uid 0, so as root the server runs as nobody:nogroup.
set -euo pipefail

DOVECOT=${DOVECOT:-/usr/sbin/dovecot}

free_port() {
    /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() {
    local dir=$1 cert=${2:-} key=${3:-}
    [ -x "$DOVECOT" ] || { echo "dovecot.sh: $DOVECOT not found (apt-get install dovecot-core dovecot-lmtpd)" >&2; exit 1; }
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    local user group
    if [ "$(id -u)" = 0 ]; then user=nobody; group=nogroup; else user=$(id -un); group=$(id -gn); fi
    # Every parent must be traversable by the server's user.
    local p=$dir
    while [ "$p" != / ]; do
        if [ "$(id -u)" = 0 ] && [ -O "$p" ]; then chmod o+x "$p" 2>/dev/null || true; fi
        p=$(dirname "$p")
    done
    cat > "$dir/passwd" <<EOF
alice:{PLAIN}x::::::
bob:{PLAIN}x::::::
full:{PLAIN}x::::::userdb_quota_rule=*:bytes=1
tempfull:{PLAIN}x::::::userdb_quota_rule=*:bytes=1 userdb_quota_full_tempfail=yes
broken:{PLAIN}x::::::userdb_mail=maildir:/dev/null/Maildir
EOF
    # LMTP_USERS=N adds user0 ... user(N-1), for runs over many mailboxes at once.
    local u
    for ((u = 0; u < ${LMTP_USERS:-0}; u++)); do echo "user$u:{PLAIN}x::::::" >> "$dir/passwd"; done
    if [ -n "$cert" ]; then
        cp "$cert" "$dir/cert.pem"
        cp "$key" "$dir/key.pem"
    fi
    local port
    port=$(free_port)
    cat > "$dir/dovecot.conf" <<EOF
protocols = lmtp
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
instance_name = lmtp-test-$$-$port
log_path = $dir/dovecot.log
default_internal_user = $user
default_internal_group = $group
default_login_user = $user
$(if [ -n "$cert" ]; then printf 'ssl = yes\nssl_cert = <%s/cert.pem\nssl_key = <%s/key.pem\n' "$dir" "$dir"; else echo 'ssl = no'; fi)
passdb {
  driver = passwd-file
  args = $dir/passwd
}
userdb {
  driver = passwd-file
  args = username_format=%n $dir/passwd
  default_fields = home=$dir/mail/%n
}
auth_username_format = %Ln
recipient_delimiter = +
mail_location = maildir:~/Maildir
mail_fsync = never
$(if [ -n "${LMTP_USER_CONCURRENCY:-}" ]; then echo "lmtp_user_concurrency_limit = $LMTP_USER_CONCURRENCY"; fi)
mail_plugins = quota
plugin {
  quota = count:User quota
  quota_vsizes = yes
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1 ::1
    port = $port
  }
  unix_listener lmtp {
    mode = 0666
  }
}
service anvil {
  chroot =
}
EOF
    if [ "$(id -u)" = 0 ]; then
        chown -R "$user:$group" "$dir"
        setsid setpriv --reuid="$user" --regid="$group" --clear-groups "$DOVECOT" -F -c "$dir/dovecot.conf" \
            > "$dir/stdout.log" 2>&1 < /dev/null &
    else
        setsid "$DOVECOT" -F -c "$dir/dovecot.conf" > "$dir/stdout.log" 2>&1 < /dev/null &
    fi
    local pid=$!
    echo "$pid" > "$dir/pgid"
    # Ready when it answers with its banner (the socket file alone proves nothing).
    local i
    for i in $(seq 1 100); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "dovecot.sh: dovecot exited; see $dir/stdout.log and $dir/dovecot.log" >&2
            cat "$dir/stdout.log" >&2 || true
            exit 1
        fi
        if banner=$(timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; head -c 4 <&3" 2>/dev/null) &&
           [ "$banner" = "220 " ]; then
            echo "LMTP_DIR=$dir"
            echo "LMTP_PORT=$port"
            echo "LMTP_SOCKET=$dir/run/lmtp"
            echo "LMTP_PGID=$pid"
            return 0
        fi
        sleep 0.05
    done
    echo "dovecot.sh: no banner on port $port after 5 s" >&2
    kill -KILL -- "-$pid" 2>/dev/null || true
    exit 1
}

stop() {
    local dir=$1
    [ -f "$dir/pgid" ] || return 0
    local pgid
    pgid=$(cat "$dir/pgid")
    kill -KILL -- "-$pgid" 2>/dev/null || true
    rm -f "$dir/pgid"
}

case "${1:-}" in
    start) start "${2:?directory}" "${3:-}" "${4:-}" ;;
    stop) stop "${2:?directory}" ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
