# deliver_many: many messages over one connection, pipelined back to back
# (lmtp_deliver_batch), each with its own results; against the fake server
# and a real Dovecot.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();
my $RULES = 'alice@x=250,250;bob@x=250,250;full@x=250,552;nosuch@x=550';

subtest 'many small messages by BDAT: each its own results, a few round trips' => sub {
    my $f = start_fake('--rules', $RULES, '--cap', 'CHUNKING');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    my @who = ('alice@x', 'nosuch@x', 'full@x');
    my @msgs = map { ['me@x', [$who[$_ % 3], 'bob@x'], "Subject: $_\n\nbody $_\n"] } 0 .. 89;
    my @res = $l->deliver_many(@msgs);
    ok($l->ok, 'the batch went through');
    is(scalar(@res), 90, 'one entry per message');
    my %want = ('alice@x' => ['ok', 250, 'data'], 'nosuch@x' => ['permfail', 550, 'rcpt'],
                'full@x' => ['permfail', 552, 'data']);
    my $bad = 0;
    for my $i (0 .. 89) {
        my @r = @{ $res[$i] };
        $bad++ unless @r == 2 && $r[0]{address} eq $who[$i % 3]
            && "@{ $r[0] }{qw(status code stage)}" eq "@{ $want{$who[$i % 3]} }"
            && $r[1]{status} eq 'ok';
    }
    is($bad, 0, 'every message has the verdicts its recipients were given');
    ok($l->quit, 'quit');
    my $stats = $f->stop;
    cmp_ok($stats->{FLUSHES}, '<', 15, "a few round trips for 90 messages ($stats->{FLUSHES})");
    is($stats->{LOCKSTEP_VIOLATIONS}, 0, 'no lockstep violation');
    is($stats->{MESSAGES}, 90, 'every message arrived');
};

subtest 'a refusal stays with its message; a broken session leaves unknowns' => sub {
    my $f = start_fake('--rules', $RULES, '--size', '20', '--fault-on', 'MAIL FROM:<last@x>',
                       '--fault-reply', '421 4.3.2 going down\r\n', '--fault-action', 'close');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    my @res = $l->deliver_many(['me@x', ['alice@x'], "ok\n"], ['me@x', ['alice@x'], 'x' x 100 . "\n"],
                               ['me@x', ['bob@x'], "fine\n"]);
    is(scalar(@res), 3, 'three entries');
    is($res[0][0]{status}, 'ok', 'the first delivered');
    is_deeply([@{ $res[1][0] }{qw(status code stage)}], ['permfail', 552, 'data'], 'the one over SIZE refused');
    is($res[2][0]{status}, 'ok', 'and the batch went on');
    @res = $l->deliver_many(['me@x', ['alice@x'], "a\n"], ['last@x', ['alice@x', 'bob@x'], "b\n"],
                            ['me@x', ['bob@x'], "c\n"]);
    ok(!$l->ok, 'the session broke');
    is(scalar(@res), 3, 'every message has its entry');
    is($res[0][0]{status}, 'ok', 'the message before the 421 delivered');
    is_deeply([map { $_->{code} } @{ $res[1] }], [421, 421], 'the 421 is the verdict of the MAIL it answered');
    is($res[2][0]{status}, 'unknown', 'the message after it: unknown');
};

subtest 'addresses in every form Net::SMTP takes' => sub {
    my $f = start_fake('--rules', $RULES);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    my @res = $l->deliver_many(['<me@x>', ['alice@x', ' bob@x ', 'Bob <bob@x>', "a.b+c\@x"], "m\n"]);
    is_deeply([map { $_->{address} } @{ $res[0] }], ['alice@x', 'bob@x', 'bob@x', 'a.b+c@x'],
              'plain and bracketed addresses alike');
    my @bad = $l->deliver_many(['me@x', ["alice\@x\0"], "m\n"]);
    is($l->code, 501, 'a NUL is still refused');
    ok($l->quit, 'quit');
    like($f->stop && $f->transcript, qr/MAIL FROM:<me\@x>\r\nRCPT TO:<alice\@x>\r\nRCPT TO:<bob\@x>\r\n(?s:.)*RCPT TO:<a\.b\+c\@x>/,
         'what went on the wire');
};

subtest 'against Dovecot: every message lands, also around messages nobody accepts' => sub {
    plan skip_all => 'LMTP_DOVECOT not set' unless $ENV{LMTP_DOVECOT};
    my $dc = start_dovecot();
    my $l = Net::LMTP->new('127.0.0.1', $dc->port, Timeout => 10) or die $@;
    my $tag = "batch-$$-" . time;
    my @msgs = map {
        ['sender@example.org', [$_ % 5 == 2 ? 'nosuch@example.org' : 'alice@example.org'],
         "Subject: $tag $_\n\nmessage $_\n"]
    } 0 .. 29;
    my @res = $l->deliver_many(@msgs);
    ok($l->ok, 'the batch went through');
    my @got = map { $_->[0]{status} } @res;
    is_deeply(\@got, [map { $_ % 5 == 2 ? 'permfail' : 'ok' } 0 .. 29], 'the verdicts');
    ok($l->noop, 'the session is in step after it');
    $l->quit;
    my %stored;
    for my $m (@{ [$dc->mails('alice')] }) {
        $stored{$1}++ if $m =~ /^Subject: \Q$tag\E (\d+)$/m;
    }
    is_deeply([sort { $a <=> $b } keys %stored], [grep { $_ % 5 != 2 } 0 .. 29], 'every accepted message landed');
    is_deeply([grep { $_ != 1 } values %stored], [], 'each once');
};

done_testing;
