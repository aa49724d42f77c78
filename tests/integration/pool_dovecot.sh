#!/usr/bin/env bash
# lmtp-send --connections K (a bulk run over a delivery pool) against a real Dovecot LMTP, which
# forks one lmtp process per connection:
#  1. an mbox of M messages to 4*K users for K = 1, 2, 4, 8, 16: every message stored exactly once
#     in every mailbox (its unique Subject found once), K connections used;
#  2. a hot mailbox: everything to one user with lmtp_user_concurrency_limit = 2 over 8 connections:
#     Dovecot's 451s are re-sent until all are delivered (attempts > 1 seen), none twice;
#  3. one Dovecot lmtp worker killed (SIGKILL) in the middle of a run: only the message it carried
#     may be unknown (the report says so, exit 74), the rest delivered, nothing stored twice, and
#     stored + unknown adds up for every mailbox;
#  4. a server that refuses connections for a while (a unix socket path that appears later): back-off,
#     then delivery; one that never comes: each message fails clearly (exit 69). Neither spins: the
#     CPU time of lmtp-send stays small.
set -euo pipefail
send=${1:?path to lmtp-send}
here=$(cd "$(dirname "$0")" && pwd)
dovecot=$here/../support/dovecot.sh
dir=$(mktemp -d /tmp/lmtp-pool-dovecot.XXXXXX)
servers=()
cleanup() {
    local s
    for s in "${servers[@]}"; do "$dovecot" stop "$s"; done
    rm -rf "$dir"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
begun=$EPOCHREALTIME
took() { awk -v a="$begun" -v b="$EPOCHREALTIME" 'BEGIN { printf "at %.1f s", b - a }'; }
# start NAME [VAR=VALUE...]: a Dovecot in $dir/NAME; its LMTP_* assignments go to $dir/NAME.env.
start() {
    local name=$1
    shift
    servers+=("$dir/$name")
    env "$@" "$dovecot" start "$dir/$name" > "$dir/$name.env"
}
# mbox FILE COUNT TAG [BODY_LINES]: messages with the Subjects "TAG message 0" ... "TAG message COUNT-1".
mbox() {
    /usr/bin/python3 - "$@" <<'EOF'
import sys
path, count, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
lines = int(sys.argv[4]) if len(sys.argv) > 4 else 20
with open(path, "wb") as f:
    for i in range(count):
        f.write(b"From sender@example.org Thu Jan  1 00:00:00 2024\nFrom: sender@example.org\n"
                b"Subject: %s message %d\nMessage-ID: <%s.%d@test>\n\n" % (tag.encode(), i, tag.encode(), i))
        f.write(b"A line of the body of the message, long enough to be a line.\n" * lines)
EOF
}
# stored TAG USER...: "USER DISTINCT TWICE IDS" for each user: how many of the Subjects "TAG message N"
# are in its Maildir, how many of those more than once, and their Ns. (One process for all: quick.)
stored() {
    /usr/bin/python3 - "$LMTP_DIR" "$@" <<'EOF'
import collections, os, re, sys
root, tag, users = sys.argv[1], sys.argv[2].encode(), sys.argv[3:]
for u in users:
    d = os.path.join(root, "mail", u, "Maildir", "new")
    seen = collections.Counter()
    for f in os.listdir(d) if os.path.isdir(d) else []:
        with open(os.path.join(d, f), "rb") as fh:
            m = re.search(rb"^Subject: " + re.escape(tag) + rb" message (\d+)$", fh.read(65536), re.M)
        if m:
            seen[int(m.group(1))] += 1
    print(u, len(seen), sum(1 for n in seen.values() if n > 1), " ".join(str(i) for i in sorted(seen)))
EOF
}
# report JSON_FILE: per message "INDEX EXIT STATUS,STATUS... MAX_ATTEMPTS" then "summary EXIT".
report() {
    /usr/bin/python3 - "$1" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    d = json.loads(line)
    if "summary" in d:
        print("summary", d["summary"]["exit"], d["summary"]["messages"])
    else:
        r = d["recipients"]
        print(d["index"], d["exit"], ",".join(x["status"] for x in r), max(x["attempts"] for x in r))
EOF
}
cpu_ok() {  # cpu_ok TIME_FILE LIMIT: user + system seconds of /usr/bin/time -f "%U %S"
    awk -v limit="$2" '{ t = $1 + $2 } END { if (t > limit) { print "cpu " t " s"; exit 1 } print "cpu " t " s" }' "$1"
}

# ---- 1. M messages to 4*K users, K = 1 ... 16 ---------------------------------------------------
start scale LMTP_USERS=64
eval "$(cat "$dir/scale.env")"
M=24
for K in 1 2 4 8 16; do
    users=$((4 * K))
    mbox "$dir/scale-$K.mbox" "$M" "K$K"
    to=()
    for ((u = 0; u < users; u++)); do to+=(--to "user$u@example.org"); done
    connects_before=$(grep -c "Connect from" "$LMTP_DIR/dovecot.log" || true)
    start_s=$EPOCHREALTIME
    code=0
    "$send" --server "127.0.0.1:$LMTP_PORT" --from sender@example.org "${to[@]}" --mbox "$dir/scale-$K.mbox" \
        --connections "$K" --mailbox-concurrency 0 --json > "$dir/scale-$K.json" || code=$?
    took=$(awk -v a="$start_s" -v b="$EPOCHREALTIME" 'BEGIN { print b - a }')
    [ "$code" = 0 ] || fail "K=$K: exit $code: $(tail -1 "$dir/scale-$K.json")"
    report "$dir/scale-$K.json" > "$dir/scale-$K.report"
    [ "$(tail -1 "$dir/scale-$K.report")" = "summary 0 $M" ] || fail "K=$K: $(tail -1 "$dir/scale-$K.report")"
    # In the order of the input.
    [ "$(head -n -1 "$dir/scale-$K.report" | cut -d' ' -f1 | tr '\n' ' ')" = "$(seq -s ' ' 1 "$M") " ] ||
        fail "K=$K: report not in the order of the input"
    bad=$(stored "K$K" $(seq -f 'user%.0f' 0 $((users - 1))) | awk -v m="$M" '$2 != m || $3 != 0')
    [ -z "$bad" ] || fail "K=$K: user, messages stored, stored twice: $bad"
    connects=$(($(grep -c "Connect from" "$LMTP_DIR/dovecot.log") - connects_before))
    [ "$connects" = "$K" ] || fail "K=$K: $connects connections, expected $K"
    printf 'K=%-2d %d messages to %d users: %d stored once each over %d connections in %.2f s\n' \
        "$K" "$M" "$users" $((M * users)) "$connects" "$took"
done
echo "(part 1 done $(took))"

# ---- 2. a hot mailbox --------------------------------------------------------------------------
start hot LMTP_USER_CONCURRENCY=2
eval "$(cat "$dir/hot.env")"
# Whether Dovecot sees more than 2 deliveries to alice at once depends on how the workers are
# scheduled on the cores; a run where none was refused proves nothing about re-sends, so up to 3
# runs are made (each must deliver everything exactly once) until one had re-sends.
retried=0
for round in 1 2 3; do
    mbox "$dir/hot.mbox" 40 "hot$round" 5000   # about 300 KB each: the 8 connections overlap
    code=0
    "$send" --server "127.0.0.1:$LMTP_PORT" --from sender@example.org --to alice@example.org \
        --mbox "$dir/hot.mbox" --connections 8 --mailbox-concurrency 0 --retries 30 --retry-delay 0.02 \
        --retry-delay-max 0.1 --json > "$dir/hot.json" || code=$?
    [ "$code" = 0 ] || fail "hot mailbox: exit $code: $(grep -v '"exit":0' "$dir/hot.json" | head -3)"
    report "$dir/hot.json" > "$dir/hot.report"
    read -r _ n twice _ <<<"$(stored "hot$round" alice)"
    [ "$n" = 40 ] && [ "$twice" = 0 ] || fail "hot mailbox: $n of 40 messages stored, $twice twice"
    retried=$(awk '$1 != "summary" && $4 > 1' "$dir/hot.report" | wc -l)
    [ "$retried" -gt 0 ] && break
done
[ "$retried" -gt 0 ] || fail "hot mailbox: no message needed a re-send in 3 runs (Dovecot's limit not met?)"
max=$(awk '$1 != "summary" { if ($4 > m) m = $4 } END { print m }' "$dir/hot.report")
echo "hot mailbox: 40 messages to one user over 8 connections, Dovecot's limit 2: all stored once;" \
    "$retried needed re-sends (up to $max attempts) in run $round ($(took))"

# ---- 3. a Dovecot lmtp worker killed in the middle of a run ------------------------------------
start kill LMTP_USERS=4
eval "$(cat "$dir/kill.env")"
mbox "$dir/kill.mbox" 60 kill 4000   # about 250 KB each: the workers are busy with them
to=(--to user0@example.org --to user1@example.org --to user2@example.org --to user3@example.org)
code_file=$dir/kill.code
( code=0; "$send" --server "127.0.0.1:$LMTP_PORT" --from sender@example.org "${to[@]}" --mbox "$dir/kill.mbox" --timeout 30 \
      --connections 4 --mailbox-concurrency 0 --json > "$dir/kill.json" || code=$?; echo "$code" > "$code_file" ) &
runner=$!
landed() { ls "$LMTP_DIR/mail/user0/Maildir/new" 2>/dev/null | wc -l; }
for _ in $(seq 1 400); do [ "$(landed)" -ge 10 ] && break; sleep 0.01; done
[ "$(landed)" -ge 10 ] || fail "kill: the run did not start"
workers=$(pgrep -P "$LMTP_PGID" -x lmtp || true)
[ "$(wc -w <<<"$workers")" -ge 1 ] || fail "kill: no lmtp worker under the Dovecot master $LMTP_PGID"
victim=$(head -1 <<<"$workers")
kill -KILL "$victim"
at=$(landed)
wait "$runner" || true
code=$(cat "$code_file")
report "$dir/kill.json" > "$dir/kill.report"
[ "$(tail -1 "$dir/kill.report")" = "summary $code 60" ] || fail "kill: $(tail -1 "$dir/kill.report"), exit $code"
unknown=$(awk '$1 != "summary" && $3 ~ /unknown/' "$dir/kill.report")
n_unknown=$(grep -c . <<<"$unknown" || true)
bad=$(awk '$1 != "summary" && $3 !~ /unknown/ && $3 != "ok,ok,ok,ok"' "$dir/kill.report")
[ -z "$bad" ] || fail "kill: messages neither delivered nor unknown: $bad"
case "$code" in
    0) [ "$n_unknown" = 0 ] || fail "kill: exit 0 with unknown recipients" ;;
    74) [ "$n_unknown" = 1 ] || fail "kill: exit 74 with $n_unknown messages unknown (only the one in flight may be): $unknown; dovecot.log: $(grep -v "saved mail\|Connect from\|Disconnect from" "$LMTP_DIR/dovecot.log" | tail -5)" ;;
    *) fail "kill: exit $code" ;;
esac
unknown_index=$(cut -d' ' -f1 <<<"$unknown")
# Stored: every delivered message once, plus the unknown one at most once (Dovecot may have
# saved it for some recipients before the worker died): stored + unknown adds up to 60.
all=$(seq -s ' ' 0 59)
without=$(tr ' ' '\n' <<<"$all" | grep -vx -e "$((${unknown_index:-0} - 1))" | tr '\n' ' ' | sed 's/ $//')
while read -r u n twice ids; do
    [ "$twice" = 0 ] || fail "kill: $u has a message twice"
    if [ "$n_unknown" = 0 ] || [ "$n" = 60 ]; then
        [ "$ids" = "$all" ] || fail "kill: $u has $n of 60"
    else
        [ "$ids" = "$without" ] || fail "kill: $u lacks a delivered message: $ids"
    fi
done < <(stored kill user0 user1 user2 user3)
if [ "$code" = 74 ]; then
    echo "kill -9 of lmtp worker $victim at $at of 60: 59 messages delivered, message $unknown_index unknown" \
        "(exit 74), nothing stored twice ($(took))"
else
    echo "kill -9 of lmtp worker $victim at $at of 60: its message was re-sent (the break came before its end);" \
        "60 delivered, nothing stored twice ($(took))"
fi

# ---- 4. a server that refuses connections for a while, and one that never comes -----------------
eval "$(cat "$dir/scale.env")"
mbox "$dir/later.mbox" 10 later
later=$dir/later.sock
( code=0; /usr/bin/time -f "%U %S" -o "$dir/later.time" "$send" --server "$later" --from sender@example.org \
      --to user0@example.org --mbox "$dir/later.mbox" --connections 4 --retries 8 --retry-delay 0.05 \
      --retry-delay-max 0.4 --json > "$dir/later.json" || code=$?; echo "$code" > "$dir/later.code" ) &
runner=$!
sleep 1.5
ln -s "$LMTP_SOCKET" "$later"   # the server appears
wait "$runner" || true
[ "$(cat "$dir/later.code")" = 0 ] || fail "refused for a while: exit $(cat "$dir/later.code"): $(tail -1 "$dir/later.json")"
read -r _ n twice _ <<<"$(stored later user0)"
[ "$n" = 10 ] && [ "$twice" = 0 ] || fail "refused for a while: $n of 10 stored, $twice twice"
cpu=$(cpu_ok "$dir/later.time" 0.3) || fail "refused for a while: lmtp-send spun ($cpu)"
echo "refused for 1.5 s, then there: 10 messages stored once each; $cpu ($(took))"

code=0
/usr/bin/time -f "%U %S" -o "$dir/never.time" "$send" --server "$dir/never.sock" --from sender@example.org \
    --to user0@example.org --mbox "$dir/later.mbox" --connections 4 --retries 3 --retry-delay 0.1 --json \
    > "$dir/never.json" || code=$?
[ "$code" = 69 ] || fail "never there: exit $code"
report "$dir/never.json" > "$dir/never.report"
[ "$(tail -1 "$dir/never.report")" = "summary 69 10" ] || fail "never there: $(tail -1 "$dir/never.report")"
[ "$(grep -c '^[0-9]* 69 unknown 0$' "$dir/never.report")" = 10 ] || fail "never there: $(cat "$dir/never.report")"
grep -q "No such file or directory" "$dir/never.json" || fail "never there: no reason given"
cpu=$(cpu_ok "$dir/never.time" 0.3) || fail "never there: lmtp-send spun ($cpu)"
echo "never there: each of the 10 messages failed with the connect error after 4 rounds (exit 69); $cpu ($(took))"
echo "pool_dovecot: ok"
