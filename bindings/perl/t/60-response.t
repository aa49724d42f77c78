# The per-recipient replies after the message, as scripts written for the old
# Net::LMTP read them: dataend returns true iff the FIRST recipient's reply is
# 2xx; each later response() gives the next recipient's reply class with
# code/message set, in RCPT order; after the last one, response() returns
# CMD_ERROR at once. A script that does not read them still gets the right
# reply for its next command (the old module fell one reply behind per
# unread recipient: shown here with OldLMTP).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes ();
use LMTPTest qw(:all);
use Net::LMTP qw(CMD_OK CMD_REJECT CMD_ERROR);

need_fake();

my $RULES = 'a@example.org=250,250;b@example.org=250,552;c@example.org=250,452;'
          . 'd@example.org=250,250;nosuch@example.org=550';
my @RCPT = map { "$_\@example.org" } qw(a b c d);

my %reply = (
    a => "2.0.0 <a\@example.org> Saved\n",
    b => "5.2.2 <b\@example.org> Quota exceeded\n",
    c => "4.2.2 <c\@example.org> Mailbox is full, try again later\n",
    d => "2.0.0 <d\@example.org> Saved\n",
);

my $read_all = sub {
    my ($l, $extra) = @_;
    my @r;
    $l->mail('s@example.org');
    $l->to(@RCPT);
    $l->data;
    $l->datasend("Subject: four\n\nfour recipients\n");
    push @r, [$l->dataend ? 1 : 0, $l->code, scalar $l->message];
    for (1 .. 3) {
        my $class = $l->response;
        push @r, [$class, $l->code, scalar $l->message];
    }
    @r;
};

subtest 'dataend, then response for each further recipient' => sub {
    my ($new, $old) = run_both(['--rules', $RULES], $read_all);
    is_deeply($new->{result},
              [[1, 250, $reply{a}], [CMD_ERROR, 552, $reply{b}], [CMD_REJECT, 452, $reply{c}],
               [CMD_OK, 250, $reply{d}]],
              'dataend: the first reply; then b (552), c (452), d (250) in RCPT order');
    is_deeply($new->{result}, $old->{result}, 'as the old module read them');
};

subtest 'after the last one, response returns CMD_ERROR without hanging' => sub {
    my $f = start_fake('--rules', $RULES);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 30) or die $@;
    $read_all->($l);
    my $t0 = Time::HiRes::time();
    my $class = $l->response;
    my $dt = Time::HiRes::time() - $t0;
    is($class, CMD_ERROR, 'CMD_ERROR');
    cmp_ok($dt, '<', 1, "at once (Timeout is 30 s; took ${dt}s)");
    is($l->response, CMD_ERROR, 'again');
    ok($l->mail('s@example.org'), 'the next command works');
    is($l->code, 250, 'with its own reply');
    is($l->message, "2.1.0 OK\n", 'message');
    $l->quit;
};

subtest 'the first recipient refused: dataend is false' => sub {
    my ($new, $old) = run_both(['--rules', $RULES], sub {
        my $l = shift;
        my @r;
        $l->mail('s@example.org');
        $l->to('c@example.org', 'a@example.org', 'b@example.org');
        $l->data;
        $l->datasend("x\n");
        push @r, [$l->dataend ? 1 : 0, $l->code];
        push @r, [$l->response, $l->code] for 1 .. 2;
        @r;
    });
    is_deeply($new->{result}, [[0, 452], [CMD_OK, 250], [CMD_ERROR, 552]], 'false, then a and b');
    is_deeply($new->{result}, $old->{result}, 'as the old module');
};

subtest 'a recipient refused at RCPT has no reply after the message' => sub {
    my ($new, $old) = run_both(['--rules', $RULES], sub {
        my $l = shift;
        my @r;
        $l->mail('s@example.org');
        push @r, [$l->to('a@example.org', 'nosuch@example.org', 'b@example.org', { SkipBad => 1 })];
        $l->data;
        $l->datasend("x\n");
        push @r, [$l->dataend ? 1 : 0, $l->code], [$l->response, $l->code];
        @r;
    });
    is_deeply($new->{result}, [['a@example.org', 'b@example.org'], [1, 250], [CMD_ERROR, 552]],
              'replies for a and b only');
    is_deeply($new->{result}, $old->{result}, 'as the old module');
};

subtest 'data(DATA) with several recipients, then response' => sub {
    my ($new, $old) = run_both(['--rules', $RULES], sub {
        my $l = shift;
        $l->mail('s@example.org');
        $l->to('a@example.org', 'b@example.org');
        ([$l->data("Subject: x\n\nx\n") ? 1 : 0, $l->code], [$l->response, $l->code]);
    });
    is_deeply($new->{result}, [[1, 250], [CMD_ERROR, 552]], 'data: the first; response: the second');
    is_deeply($new->{result}, $old->{result}, 'as the old module');
};

subtest 'a script that does not read them: the next command gets its own reply' => sub {
    my ($new, $old) = run_both(['--rules', $RULES], sub {
        my $l = shift;
        my @r;
        $l->mail('s@example.org');
        $l->to('a@example.org', 'b@example.org', 'c@example.org');
        $l->data;
        $l->datasend("Subject: one\n\nfirst message\n");
        push @r, [$l->dataend ? 1 : 0, $l->code];
        # no response() calls: straight on with the next message
        push @r, [$l->mail('s2@example.org') ? 1 : 0, $l->code, scalar $l->message];
        push @r, [$l->to('d@example.org') ? 1 : 0, $l->code, scalar $l->message];
        push @r, [$l->data("Subject: two\n\nsecond message\n") ? 1 : 0, $l->code, scalar $l->message];
        push @r, [$l->reset ? 1 : 0, $l->code];
        @r;
    });
    is_deeply($new->{result},
              [[1, 250], [1, 250, "2.1.0 OK\n"], [1, 250, "2.1.5 <d\@example.org> OK\n"],
               [1, 250, $reply{d}], [1, 250]],
              'ours: every command gets its own reply');
    is_deeply($new->{messages}, ["Subject: one\r\n\r\nfirst message\r\n", "Subject: two\r\n\r\nsecond message\r\n"],
              'both messages delivered');

    # The old module read b's and c's replies as the replies to MAIL and RCPT.
    is_deeply($old->{result}[1], [0, 552, $reply{b}], 'old: MAIL gets b\'s stale 552 and fails');
    is_deeply($old->{result}[2], [0, 452, $reply{c}], 'old: RCPT gets c\'s stale 452 and fails');
    is_deeply($old->{result}[3], [0, 250, "2.1.0 OK\n"],
              'old: DATA reads the reply to MAIL (250, not 354) and fails');
    is(scalar @{ $old->{messages} }, 1, 'old: so the second message was never sent');
};

subtest 'reading only some of them' => sub {
    my $f = start_fake('--rules', $RULES);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    $l->mail('s@example.org');
    $l->to(@RCPT);
    $l->data;
    $l->datasend("x\n");
    ok($l->dataend, 'dataend');
    is($l->response, CMD_ERROR, 'b');
    is($l->code, 552, 'b: 552');
    ok($l->reset, 'RSET with two replies unread');
    is($l->code, 250, 'its own reply');
    is($l->message, "2.0.0 OK\n", 'message');
    is($l->response, CMD_ERROR, 'nothing more to read');
    ok($l->noop, 'NOOP');
    $l->quit;
};

done_testing;
