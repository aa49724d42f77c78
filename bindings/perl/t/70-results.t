# results(): every recipient of the transaction (refused at RCPT, duplicates
# included) with its own outcome; deliver(FROM, [TO...], DATA): the whole
# transaction pipelined (two round trips), returning the same list.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();

my $RULES = 'full@example.org=250,552;temp@example.org=250,452;nosuch@example.org=550';
my $LHLO = default_lhlo();

sub brief {
    map { my $r = $_; +{ map { ($_ => $r->{$_}) } qw(address status stage code enhanced text) } } @_;
}

my %ok_a    = (address => 'a@example.org', status => 'ok', stage => 'data', code => 250,
               enhanced => '2.0.0', text => '<a@example.org> Saved');
my %nosuch  = (address => 'nosuch@example.org', status => 'permfail', stage => 'rcpt', code => 550,
               enhanced => '5.1.1', text => "<nosuch\@example.org> User doesn't exist");
my %full    = (address => 'full@example.org', status => 'permfail', stage => 'data', code => 552,
               enhanced => '5.2.2', text => '<full@example.org> Quota exceeded');
my %temp    = (address => 'temp@example.org', status => 'tempfail', stage => 'data', code => 452,
               enhanced => '4.2.2', text => '<temp@example.org> Mailbox is full, try again later');

subtest 'results after dataend' => sub {
    my $f = start_fake('--rules', $RULES);
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    is_deeply([$l->results], [], 'none before a transaction');
    $l->mail('s@example.org');
    my @ok = $l->to('a@example.org', 'nosuch@example.org', 'full@example.org', 'temp@example.org',
                    'a@example.org', { SkipBad => 1 });
    is(scalar @ok, 4, 'four accepted (a twice)');
    my @pending = $l->results;
    is_deeply([map { $_->{status} } @pending], [qw(pending permfail pending pending pending)],
              'before the message: pending, but the RCPT refusal is known');
    $l->data;
    $l->datasend("Subject: results\n\nx\n");
    ok($l->dataend, 'dataend: the first is 250');
    my @r = $l->results;
    is_deeply([brief(@r)], [\%ok_a, \%nosuch, \%full, \%temp, \%ok_a],
              'every recipient in RCPT order: refusal and duplicate included');
    is_deeply([map { [$_->{rcpt_code}, $_->{rcpt_text}] } @r],
              [[250, '<a@example.org> OK'], [550, "<nosuch\@example.org> User doesn't exist"],
               [250, '<full@example.org> OK'], [250, '<temp@example.org> OK'], [250, '<a@example.org> OK']],
              'and each RCPT reply');
    is($l->response, 5, 'response: full');
    is_deeply([brief($l->results)], [brief(@r)], 'reading responses does not change them');
    ok($l->mail('s@example.org'), 'the next transaction');
    is_deeply([$l->results], [], 'results are now those of the new transaction');
    $l->quit;
};

subtest 'a multi-line per-recipient reply' => sub {
    my $f = start_fake('--rules', 'multi@example.org=250,451:first line|second line');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    $l->mail('s@example.org');
    $l->to('multi@example.org');
    ok(!$l->data("x\n"), 'data: false');
    is_deeply([brief($l->results)],
              [{ address => 'multi@example.org', status => 'tempfail', stage => 'data', code => 451,
                 enhanced => '4.3.0', text => "first line\nsecond line" }], 'the text has both lines');
    is_deeply([$l->message], ["4.3.0 first line\n", "4.3.0 second line\n"], 'message');
    $l->quit;
};

subtest 'deliver' => sub {
    my $f = start_fake('--rules', $RULES);
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @r = $l->deliver('s@example.org', ['a@example.org', 'nosuch@example.org', 'full@example.org',
                                          'temp@example.org', 'a@example.org'],
                        "Subject: deliver\n\n.dotted\nbody\n");
    is_deeply([brief(@r)], [\%ok_a, \%nosuch, \%full, \%temp, \%ok_a], 'the results');
    is_deeply([brief($l->results)], [brief(@r)], 'results() says the same');
    my @r2 = $l->deliver('s@example.org', ['a@example.org'], ["Subject: array\n", "\n", "ref\n"]);
    is_deeply([brief(@r2)], [\%ok_a], 'DATA as an array ref');
    my @r3 = $l->deliver('s@example.org', ['nosuch@example.org'], "never\n");
    is_deeply([brief(@r3)], [\%nosuch], 'no recipient accepted');
    ok(!eval { $l->deliver('s@example.org', 'a@example.org', "x\n"); 1 }, 'TO not an array ref: croaks');
    like($@, qr/usage/, 'usage');
    $l->quit;
    my $s = $f->stop;
    is($f->transcript,
       $LHLO . "MAIL FROM:<s\@example.org>\r\n"
       . join('', map { "RCPT TO:<$_\@example.org>\r\n" } qw(a nosuch full temp a))
       . "DATA\r\nSubject: deliver\r\n\r\n..dotted\r\nbody\r\n.\r\n"
       . "MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\nDATA\r\nSubject: array\r\n\r\nref\r\n.\r\n"
       . "MAIL FROM:<s\@example.org>\r\nRCPT TO:<nosuch\@example.org>\r\nDATA\r\nQUIT\r\n",
       'transcript');
    is_deeply([$f->messages], ["Subject: deliver\r\n\r\n.dotted\r\nbody\r\n", "Subject: array\r\n\r\nref\r\n"],
              'messages stored (none for the third)');
};

subtest 'deliver is pipelined: two round trips per delivery' => sub {
    my $f = start_fake('--reply-delay', '20');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    for my $i (1 .. 3) {
        my @r = $l->deliver('s@example.org', ['a@example.org', 'b@example.org', 'c@example.org'], "n $i\n");
        is_deeply([map { $_->{status} } @r], [qw(ok ok ok)], "delivery $i");
    }
    $l->quit;
    my $s = $f->stop;
    is($s->{FLUSHES}, 1 + 1 + 3 * 2 + 1, 'flushes: greeting, LHLO, 2 per delivery, QUIT');
    is($s->{LOCKSTEP_VIOLATIONS}, 0, 'no lockstep violation (it waits for 354)');
    is($s->{MESSAGES}, 3, 'three messages');

    my $f2 = start_fake('--reply-delay', '20', '--no-pipelining');
    my $l2 = Net::LMTP->new($f2->host, $f2->port) or die $@;
    my @r = $l2->deliver('s@example.org', ['a@example.org', 'b@example.org'], "x\n");
    is_deeply([map { $_->{status} } @r], [qw(ok ok)], 'without PIPELINING');
    $l2->quit;
    my $s2 = $f2->stop;
    is($s2->{LOCKSTEP_VIOLATIONS}, 0, 'one command at a time');
    is($s2->{FLUSHES}, 1 + 1 + 5 + 1, 'MAIL, RCPT, RCPT, DATA, the message: 5 round trips');
};

subtest 'deliver on a connection that breaks' => sub {
    my $f = start_fake('--fault-on', '.', '--fault-action', 'close');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @r = eval { $l->deliver('s@example.org', ['a@example.org', 'b@example.org'], "x\n") };
    is($@, '', 'does not die');
    is_deeply([map { [$_->{address}, $_->{status}] } @r],
              [['a@example.org', 'unknown'], ['b@example.org', 'unknown']], 'no verdict: unknown');
    is($l->code, 421, 'code 421');
    like(scalar $l->message, qr/^\[Net::LMTP\] Connection closed/, 'message');
};

done_testing;
