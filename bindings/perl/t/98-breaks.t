# The connection breaks after the message went out, after k of the n
# per-recipient final replies (RFC 2033: one per accepted recipient, in RCPT
# order): no verdict the server gave may be lost, and every recipient without
# one is reported as such.
#
# A matrix over transfer (DATA, BDAT) x action (close: EOF, reset: RST) x n
# recipients (1..4) x k final replies before the break (0..n). In each cell:
#   - the step API: mail, to, then data/datasend/dataend (DATA) or
#     bdat/bdatlast (BDAT), then response() for each further recipient, then
#     response() once more after the last one; by DATA also data(MSG);
#   - by DATA the same calls with OldLMTP (the old Net::LMTP 0.02): the same
#     return values and codes;
#   - deliver(FROM, [TO...], DATA);
#   - deliver_many of three messages, the break at the end of the second.
# Every recipient is checked against what the fake sent: r0..r3 get the final
# codes 250, 552, 452, 250; with --fault-replies k the fake sends the first k
# of them, then closes or resets. One fake per (transfer, action, k) serves the
# single-message calls (the fault fires at the end of every message); each
# batch gets a fresh fake whose fault fires once, at the second message.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes ();
use File::Temp ();
use LMTPTest qw(:all);
use Net::LMTP qw(CMD_ERROR);

need_fake();

my $RULES = 'r0@x=250,250;r1@x=250,552;r2@x=250,452;r3@x=250,250';

# What the fake sends after the message for r0..r3: code, enhanced code, text.
my @FINAL = (
    [250, '2.0.0', '<r0@x> Saved'],
    [552, '5.2.2', '<r1@x> Quota exceeded'],
    [452, '4.2.2', '<r2@x> Mailbox is full, try again later'],
    [250, '2.0.0', '<r3@x> Saved'],
);
my %STATUS_OF = (2 => 'ok', 4 => 'tempfail', 5 => 'permfail');

my $TIMEOUT = 10;    # the objects' Timeout
my $PROMPT  = 2;     # seconds: a break is noticed at once, never by the Timeout
my $CLOSED  = qr/^\[Net::LMTP\] Connection closed/;
# After the last recipient nothing is owed: response() says so at once, with
# 503 while the connection lives (every reply came), else 421 "Connection
# closed" as the old module said.
my $NOTHING_OWED_CODE = 503;
my $NOTHING_OWED      = qr/^\[Net::LMTP\] no reply is owed/;

sub rcpts { map { "r$_\@x" } 0 .. $_[0] - 1 }

# The final reply line of r$i as the fake writes it, and as message() gives it.
sub final_line    { my $f = $FINAL[$_[0]]; "$f->[0] $f->[1] $f->[2]\r\n" }
sub final_message { my $f = $FINAL[$_[0]]; "$f->[1] $f->[2]\n" }

# The message as the fake stores it (CRLF line ends).
sub stored_body { my $tag = shift; "Subject: $tag\r\n\r\nthe body of $tag\r\n" }

# What results() must say about recipient $i when $k final replies came (and
# its RCPT was answered: 250; a message never answered has rcpt_code 0).
sub want_result {
    my ($i, $k, $rcpt_code) = @_;
    my %r = (address => "r$i\@x", rcpt_code => defined $rcpt_code ? $rcpt_code : 250);
    if ($i < $k) {
        my ($code, $enh, $text) = @{ $FINAL[$i] };
        @r{qw(status code stage enhanced text)} = ($STATUS_OF{ substr $code, 0, 1 }, $code, 'data', $enh, $text);
    }
    else {
        @r{qw(status code stage enhanced text)} = ('unknown', 0, 'none', '', '');
    }
    \%r;
}

sub brief {
    map { my $r = $_; +{ map { ($_ => $r->{$_}) } qw(address status code stage enhanced text rcpt_code) } } @_;
}

# Checks results (a list of hashes) recipient by recipient.
sub check_results {
    my ($what, $n, $k, $rcpt_code, @got) = @_;
    is(scalar @got, $n, "$what: one result per recipient");
    for my $i (0 .. $n - 1) {
        is_deeply((brief($got[$i]))[0], want_result($i, $k, $rcpt_code),
                  "$what: r$i " . ($i < $k ? "has its verdict $FINAL[$i][0]" : 'unknown'));
    }
}

sub timed(&) {
    my $code = shift;
    my $t0 = Time::HiRes::time();
    my @r = $code->();
    (Time::HiRes::time() - $t0, @r);
}

# ---------------------------------------------------------------------------
# fakes

# start_fake with the fault after k final replies, and the bytes it sends
# recorded (->{sent_file}).
sub faulty_fake {
    my ($transfer, $action, $k, @more) = @_;
    my $dir = File::Temp::tempdir('lmtp-breaks-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $f = start_fake('--rules', $RULES, ($transfer eq 'BDAT' ? ('--cap', 'CHUNKING') : ()),
                       '--fault-on', '.', '--fault-replies', $k, '--fault-action', $action,
                       '--sent', "$dir/sent.bin", @more);
    $f->{sent_file} = "$dir/sent.bin";
    $f;
}

sub sent_bytes {
    my $s = slurp($_[0]{sent_file});
    defined $s ? $s : '';
}

sub count_of {
    my ($hay, $needle) = @_;
    my $c = 0;
    my $at = 0;
    while ((my $p = index($hay, $needle, $at)) >= 0) { $c++; $at = $p + 1 }
    $c;
}

# One call on a shared fake: afterwards the fake stored exactly this message,
# the client used this transfer, and the fake sent the final replies of r0..r{k-1}
# and never those of the others.
sub snapshot {
    my $f = shift;
    { fake => $f, messages => scalar(my @m = $f->messages), transcript => length($f->transcript) };
}

sub check_call {
    my ($snap, $what, $transfer, $tag, $n, $k) = @_;
    my $f = $snap->{fake};
    my @m = $f->messages;
    is(scalar @m, $snap->{messages} + 1, "$what: the server stored the message once");
    is($m[-1], stored_body($tag), "$what: as it was sent");
    my $wire = substr($f->transcript, $snap->{transcript});
    if ($transfer eq 'BDAT') {
        ok($wire =~ /^BDAT \d+ LAST\r\n/m && $wire !~ /^DATA\r\n/m, "$what: sent by BDAT");
    }
    else {
        ok($wire =~ /^DATA\r\n/m && $wire !~ /^BDAT /m, "$what: sent by DATA");
    }
    my $sent = sent_bytes($f);
    for my $i (0 .. $n - 1) {
        is(index($sent, final_line($i)) >= 0 ? 1 : 0, $i < $k ? 1 : 0,
           "$what: the fake " . ($i < $k ? 'sent' : 'never sent') . " r$i\'s final reply");
    }
}

# ---------------------------------------------------------------------------
# the step API

# Runs mail, to, the end of the message ($how: 'step' = data/datasend/dataend,
# 'data' = data(MSG), 'bdat' = bdat/bdatlast), then response() n-1 times and
# twice more. Returns a hash: setup => [...], steps => [[ret, code, message,
# seconds], ...] (the end, each response), after => [[class, code, message,
# seconds] x 2], results => [...] (Net::LMTP only).
sub run_steps {
    my ($class, $f, $how, $n, $tag) = @_;
    my $l = $class->new($f->host, $f->port, Timeout => $TIMEOUT) or die "$class->new: $@";
    my %out;
    my @rc = rcpts($n);
    $out{setup} = [$l->mail('s@x') ? 1 : 0, $l->to(@rc) ? 1 : 0];
    my ($dt, $ret);
    if ($how eq 'step') {
        push @{ $out{setup} }, $l->data ? 1 : 0, $l->datasend("Subject: $tag\n\nthe body of $tag\n") ? 1 : 0;
        ($dt, $ret) = timed { $l->dataend };
    }
    elsif ($how eq 'data') {
        ($dt, $ret) = timed { $l->data("Subject: $tag\n\nthe body of $tag\n") };
    }
    else {
        push @{ $out{setup} }, $l->bdat("Subject: $tag\r\n\r\n") ? 1 : 0;
        ($dt, $ret) = timed { $l->bdatlast("the body of $tag\r\n") };
    }
    my @steps = ([$ret ? 1 : 0, $l->code, scalar $l->message, $dt]);
    for (1 .. $n - 1) {
        my ($t, $c) = timed { $l->response };
        push @steps, [$c, $l->code, scalar $l->message, $t];
    }
    $out{steps} = \@steps;
    for (1 .. 2) {
        my ($t, $c) = timed { $l->response };
        push @{ $out{after} }, [$c, $l->code, scalar $l->message, $t];
    }
    $out{results} = [$l->results] if $class eq 'Net::LMTP';
    my ($t, $next) = timed { $l->mail('s@x') };
    $out{next} = [$next ? 1 : 0, $l->code, scalar $l->message, $t];
    $l->close;
    \%out;
}

sub check_steps {
    my ($what, $out, $transfer, $action, $n, $k) = @_;
    is_deeply($out->{setup}, [(1) x @{ $out->{setup} }], "$what: mail, to (and the start of the message) succeed");
    my $end = $transfer eq 'BDAT' ? 'bdatlast' : $what =~ /data\(MSG\)/ ? 'data(MSG)' : 'dataend';
    for my $i (0 .. $n - 1) {
        my ($ret, $code, $msg, $dt) = @{ $out->{steps}[$i] };
        my $call = $i == 0 ? $end : "response $i";
        if ($i < $k) {
            my $want_code = $FINAL[$i][0];
            my $want_ret = $i == 0 ? ($want_code < 300 ? 1 : 0) : substr($want_code, 0, 1);
            is($ret, $want_ret, "$what: $call returns " . ($i == 0 ? ($want_ret ? 'true' : 'false') : $want_ret)
                                . " (r$i\'s $want_code)");
            is($code, $want_code, "$what: $call: code $want_code");
            is($msg, final_message($i), "$what: $call: r$i\'s reply");
        }
        else {
            is($ret, $i == 0 ? 0 : CMD_ERROR, "$what: $call returns " . ($i == 0 ? 'false' : 'CMD_ERROR')
                                               . " (r$i never got a verdict)");
            is($code, 421, "$what: $call: code 421");
            like($msg, $CLOSED, "$what: $call: message '[Net::LMTP] Connection closed...'");
            like($msg, qr/<r$i\@x>/, "$what: $call: it names r$i");
            like($msg, $action eq 'reset' ? qr/reset/ : qr/closed the connection/,
                 "$what: $call: the reason says the connection was $action");
        }
        cmp_ok($dt, '<', $PROMPT, "$what: $call returns at once");
    }
    for my $j (0, 1) {
        my ($c, $code, $msg, $dt) = @{ $out->{after}[$j] };
        my $w = "$what: response after the last recipient" . ($j ? ', again' : '');
        is($c, CMD_ERROR, "$w: CMD_ERROR");
        if ($k == $n) {
            is($code, $NOTHING_OWED_CODE, "$w: code $NOTHING_OWED_CODE");
            like($msg, $NOTHING_OWED, "$w: nothing is owed");
        }
        else {
            is($code, 421, "$w: code 421: the connection is gone");
            like($msg, $CLOSED, "$w: Connection closed");
        }
        cmp_ok($dt, '<', $PROMPT, "$w: at once (Timeout is $TIMEOUT s)");
    }
    check_results("$what: results", $n, $k, 250, @{ $out->{results} });
    my ($ok, $code, $msg, $dt) = @{ $out->{next} };
    is($ok, 0, "$what: the next command fails");
    is($code, 421, "$what: the next command: 421");
    like($msg, $CLOSED, "$what: the next command: Connection closed");
    cmp_ok($dt, '<', $PROMPT, "$what: the next command fails at once");
}

# The old module on the same calls: the same return values and codes; each
# message the same, ours with the reason after "Connection closed".
sub check_as_old {
    my ($what, $new, $old) = @_;
    my $rc = sub { [map { [$_->[0] + 0, $_->[1] + 0] } @_] };
    is_deeply($rc->(@{ $new->{steps} }), $rc->(@{ $old->{steps} }), "$what: return values and codes as the old module's");
    for my $i (0 .. $#{ $new->{steps} }) {
        (my $old_msg = $old->{steps}[$i][2]) =~ s/^\[OldLMTP\]/[Net::LMTP]/;
        is(substr($new->{steps}[$i][2], 0, length $old_msg), $old_msg, "$what: message $i begins as the old module's");
    }
    is_deeply([map { $_->[0] } @{ $new->{after} }], [map { $_->[0] } @{ $old->{after} }],
              "$what: after the last recipient: CMD_ERROR as the old module");
    is_deeply([@{ $new->{next} }[0, 1]], [@{ $old->{next} }[0, 1]], "$what: the next command: as the old module");
}

# ---------------------------------------------------------------------------
# deliver

sub check_deliver {
    my ($what, $f, $transfer, $action, $n, $k, $tag) = @_;
    my $snap = snapshot($f);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => $TIMEOUT) or die "Net::LMTP->new: $@";
    my ($dt, @r) = timed { $l->deliver('s@x', [rcpts($n)], "Subject: $tag\n\nthe body of $tag\n") };
    cmp_ok($dt, '<', $PROMPT, "$what: returns at once");
    check_results($what, $n, $k, 250, @r);
    is_deeply([brief($l->results)], [brief(@r)], "$what: results() says the same");
    if ($k < $n) {
        ok(!$l->ok, "$what: ok() is false: the session broke");
        is($l->code, 421, "$what: code 421");
        like(scalar $l->message, $CLOSED, "$what: message '[Net::LMTP] Connection closed...'");
        like(scalar $l->message, $action eq 'reset' ? qr/reset/ : qr/closed the connection/,
             "$what: the reason says the connection was $action");
    }
    else {
        # Every verdict came before the break: nothing is missing, code and
        # message are the last recipient's reply, as in a session that goes on.
        my $last = $FINAL[$n - 1][0];
        is($l->code, $last, "$what: every verdict came: code is r" . ($n - 1) . "'s $last");
        is(scalar $l->message, final_message($n - 1), "$what: and message its reply");
        is($l->ok ? 1 : 0, $last < 400 ? 1 : 0, "$what: ok() as that reply");
    }
    my ($t, $next) = timed { $l->noop };
    ok(!$next, "$what: the next command fails");
    is($l->code, 421, "$what: the next command: 421");
    like(scalar $l->message, $CLOSED, "$what: the next command: Connection closed");
    cmp_ok($t, '<', $PROMPT, "$what: the next command fails at once");
    $l->close;
    check_call($snap, $what, $transfer, $tag, $n, $k);
}

# ---------------------------------------------------------------------------
# deliver_many: three messages, the break at the end of the second

sub check_batch {
    my ($what, $transfer, $action, $n, $k, $tag) = @_;
    my $f = faulty_fake($transfer, $action, $k, '--fault-skip', 1, '--fault-times', 1);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => $TIMEOUT) or die "Net::LMTP->new: $@";
    my @tags = map { "$tag m$_" } 1 .. 3;
    my ($dt, @res) = timed {
        $l->deliver_many(map { ['s@x', [rcpts($n)], "Subject: $_\n\nthe body of $_\n"] } @tags);
    };
    cmp_ok($dt, '<', $PROMPT, "$what: returns at once");
    is(scalar @res, 3, "$what: one entry per message");
    check_results("$what: the first message (answered before the break)", $n, $n, 250, @{ $res[0] || [] });
    check_results("$what: the second message (the break after $k replies)", $n, $k, 250, @{ $res[1] || [] });
    check_results("$what: the third message (never answered)", $n, 0, 0, @{ $res[2] || [] });
    ok(!$l->ok, "$what: ok() is false: the session broke");
    is($l->code, 421, "$what: code 421");
    like(scalar $l->message, $CLOSED, "$what: message '[Net::LMTP] Connection closed...'");
    like(scalar $l->message, $action eq 'reset' ? qr/reset/ : qr/closed the connection/,
         "$what: the reason says the connection was $action");
    $l->close;
    my $stats = $f->stop;
    is_deeply([$f->messages], [map { stored_body($_) } @tags[0, 1]], "$what: the server stored the first two messages");
    my $wire = $f->transcript;
    if ($transfer eq 'BDAT') {
        ok($wire =~ /^BDAT \d+ LAST\r\n/m && $wire !~ /^DATA\r\n/m, "$what: sent by BDAT");
    }
    else {
        ok($wire =~ /^DATA\r\n/m && $wire !~ /^BDAT /m, "$what: sent by DATA");
    }
    my $sent = sent_bytes($f);
    is_deeply([map { count_of($sent, final_line($_)) } 0 .. $n - 1], [map { $_ < $k ? 2 : 1 } 0 .. $n - 1],
              "$what: the fake sent every final reply of the first message and the first $k of the second");
}

# ---------------------------------------------------------------------------
# the matrix

my $serial = 0;
for my $transfer (qw(DATA BDAT)) {
    for my $action (qw(close reset)) {
        my %fake;    # k => the fake that breaks after k final replies at every message end
        for my $n (1 .. 4) {
            for my $k (0 .. $n) {
                my $cell = "$transfer $action n=$n k=$k";
                subtest $cell => sub {
                    my $f = $fake{$k} ||= faulty_fake($transfer, $action, $k);

                    my $tag = 'm' . ++$serial;
                    my $snap = snapshot($f);
                    my $new = run_steps('Net::LMTP', $f, $transfer eq 'BDAT' ? 'bdat' : 'step', $n, $tag);
                    my $api = $transfer eq 'BDAT' ? 'bdat/bdatlast' : 'dataend';
                    check_steps("$cell $api", $new, $transfer, $action, $n, $k);
                    check_call($snap, "$cell $api", $transfer, $tag, $n, $k);

                    if ($transfer eq 'DATA') {
                        $tag = 'm' . ++$serial;
                        $snap = snapshot($f);
                        my $old = run_steps('OldLMTP', $f, 'step', $n, $tag);
                        check_call($snap, "$cell dataend (old module)", $transfer, $tag, $n, $k);
                        check_as_old("$cell dataend", $new, $old);

                        $tag = 'm' . ++$serial;
                        $snap = snapshot($f);
                        my $new_data = run_steps('Net::LMTP', $f, 'data', $n, $tag);
                        check_steps("$cell data(MSG)", $new_data, $transfer, $action, $n, $k);
                        check_call($snap, "$cell data(MSG)", $transfer, $tag, $n, $k);

                        $tag = 'm' . ++$serial;
                        $snap = snapshot($f);
                        my $old_data = run_steps('OldLMTP', $f, 'data', $n, $tag);
                        check_call($snap, "$cell data(MSG) (old module)", $transfer, $tag, $n, $k);
                        check_as_old("$cell data(MSG)", $new_data, $old_data);
                    }

                    check_deliver("$cell deliver", $f, $transfer, $action, $n, $k, 'm' . ++$serial);
                    check_batch("$cell deliver_many", $transfer, $action, $n, $k, 'm' . ++$serial);
                };
            }
        }
        $_->stop for values %fake;
    }
}

done_testing;
