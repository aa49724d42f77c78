# Net::LMTP::Pool: many messages over K connections (liblmtp's delivery pool), with what
# Net::LMTP's deliver_many returns, in the order given; retries of 4xx, a connection killed in
# the middle, refused connections, a server list, a unix socket, the time N messages take over
# K = 1..32 connections, bad arguments, leaks.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes ();
use LMTPTest qw(:all);
use Net::LMTP;
use Net::LMTP::Pool;

need_fake();
is($Net::LMTP::Pool::VERSION, $Net::LMTP::VERSION, 'Net::LMTP::Pool has the version of the distribution');
my $RULES = 'alice@x=250,250;full@x=250,552;nosuch@x=550;later@x=450';

# Results without the pool's `attempts`, to compare with Net::LMTP's.
sub plain {
    [map { [map { my %h = %$_; delete $h{attempts}; \%h } @$_] } @_];
}

sub pool_for {
    my ($f, @opt) = @_;
    Net::LMTP::Pool->new($f->host, Port => $f->port, Timeout => 10, RetryDelay => 0.01, @opt);
}

my @who = ('alice@x', 'nosuch@x', 'full@x', 'bob@x', 'later@x');
my @MSGS = map { ['me@x', [$who[$_ % 5], "u$_\@x"], "Subject: $_\n\nbody $_\n"] } 0 .. 39;

subtest 'the same results as Net::LMTP::deliver_many, in the order given' => sub {
    my $f = start_fake('--rules', $RULES, '--reply-delay', '5');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    my @want = $l->deliver_many(@MSGS);
    $l->quit;
    my $p = pool_for($f, Connections => 4, Retries => 0);
    my @got = $p->deliver_many(@MSGS);
    is(scalar(@got), 40, 'one entry per message');
    is_deeply(plain(@got), \@want, 'the structures are equal, message by message');
    is_deeply([map { $_->[1]{address} } @got], [map { "u$_\@x" } 0 .. 39], 'in the order given');
    is_deeply([map { $_->{attempts} } map { @$_ } @got], [(1) x 80], 'each recipient in one transaction');
    ok($p->ok, 'ok');
    is($p->code, 250, 'code 250');
    is_deeply([$p->errors], [('') x 40], 'no message failed');
    is($p->error, '', 'error empty');
    my $stats = $f->stop;
    is($stats->{MESSAGES}, 80, 'every message arrived, once per client');
    cmp_ok($stats->{CONNECTIONS}, '<=', 5, "one connection for Net::LMTP, at most 4 for the pool ($stats->{CONNECTIONS})");
};

subtest 'a 4xx is retried; retries spent, the last 4xx stays' => sub {
    my $f = start_fake('--rules', 'temp@x=250,451*2;rtemp@x=450*1;stuck@x=250,452*9');
    my $p = pool_for($f, Connections => 2, Retries => 3);
    my @r = $p->deliver_many(['me@x', ['alice@x', 'temp@x'], "a\n"], ['me@x', ['rtemp@x'], "b\n"]);
    is_deeply([map { [@$_{qw(address status code attempts)}] } @{ $r[0] }],
              [['alice@x', 'ok', 250, 1], ['temp@x', 'ok', 250, 3]], 'a 451 after the data twice, then 250: 3 attempts');
    is_deeply([@{ $r[1][0] }{qw(status code stage attempts)}], ['ok', 250, 'data', 2], 'a 450 at RCPT once: 2 attempts');
    my $t0 = Time::HiRes::time();
    my $q = pool_for($f, Connections => 1, Retries => 2, RetryDelay => 0.05, RetryDelayMax => 0.08);
    my @s = $q->deliver_many(['me@x', ['stuck@x'], "c\n"]);
    my $took = Time::HiRes::time() - $t0;
    is_deeply([@{ $s[0][0] }{qw(status code enhanced stage attempts)}], ['tempfail', 452, '4.2.2', 'data', 3],
              'retries spent: tempfail with the last 452, 3 attempts');
    cmp_ok($took, '>=', 0.12, sprintf('the delays were waited (0.05 + 0.08 capped: %.3f s)', $took));
    ok($q->ok, 'a tempfail is a verdict: ok');
    my $stats = $f->stop;
    is($stats->{MESSAGES}, 3 + 0 + 1 + 3, 'what went out: a message per transaction with a recipient accepted');
};

subtest 'a connection killed in the middle: only its message unknown' => sub {
    my @fault = ('--fault-on', '.', '--fault-skip', '5', '--fault-times', '1', '--fault-action', 'close');
    my $f = start_fake('--rules', $RULES, @fault);
    my $p = pool_for($f, Connections => 3, Retries => 0);
    my @msgs = map { ['me@x', ["a$_\@x", "b$_\@x"], "Subject: $_\n\nm $_\n"] } 0 .. 19;
    my @got = $p->deliver_many(@msgs);
    is(scalar(@got), 20, 'every message has its entry');
    my @unknown = grep { grep { $_->{status} eq 'unknown' } @{ $got[$_] } } 0 .. 19;
    is(scalar(@unknown), 1, 'one message has unknowns');
    my $u = $got[ $unknown[0] ];
    is_deeply([map { [@$_{qw(status attempts)}] } @$u], [['unknown', 1], ['unknown', 1]],
              'both its recipients unknown, sent once, never again');
    is(scalar(grep { $_->{status} eq 'ok' } map { @$_ } @got), 38, 'every other recipient delivered');
    is_deeply([map { $_->[0]{address} } @got], [map { "a$_\@x" } 0 .. 19], 'the order given');
    like(($p->errors)[ $unknown[0] ], qr/closed the connection/, 'unknown after the end: the error says why');
    is(scalar(grep { $_ ne '' } $p->errors), 1, 'no error for the others');
    ok(!$p->ok, 'a message with unknowns: the call is not ok, as Net::LMTP after a break');
    my $stats = $f->stop;
    is($stats->{MESSAGES}, 20, 'each message went out once (the killed one too)');
    cmp_ok($stats->{CONNECTIONS}, '>=', 2, 'the broken connection was replaced');

    # Net::LMTP over the same fault: the message killed at its end looks the same.
    my $g = start_fake('--rules', $RULES, @fault);
    my $l = Net::LMTP->new($g->host, $g->port, Timeout => 10) or die $@;
    my @one = $l->deliver_many(map { ['me@x', [@{ $_->[1] }], $_->[2]] } @msgs[0 .. 5]);
    my $shape = sub { [map { my %h = %$_; delete @h{qw(address attempts)}; s/<[^>]*>/<>/g for values %h; \%h } @_] };
    my ($pool_shape, $lmtp_shape) = ($shape->(@$u), $shape->(@{ $one[5] }));
    is_deeply($pool_shape, $lmtp_shape, "the same recipients' results as Net::LMTP gives the message killed at its end");
    $g->stop;
};

subtest 'refused connections: nothing sent, every recipient unknown; a server list' => sub {
    my $closed = free_port();
    my $p = Net::LMTP::Pool->new('127.0.0.1', Port => $closed, Retries => 1, RetryDelay => 0.01, Timeout => 5);
    my @r = $p->deliver_many(['me@x', ['alice@x', 'bob@x'], "a\n"], ['me@x', ['carol@x'], "b\n"]);
    is(scalar(@r), 2, 'both messages have their entry');
    is_deeply([map { [@$_{qw(address status stage code attempts)}] } map { @$_ } @r],
              [['alice@x', 'unknown', 'none', 0, 0], ['bob@x', 'unknown', 'none', 0, 0], ['carol@x', 'unknown', 'none', 0, 0]],
              'every recipient unknown, never attempted');
    ok(!$p->ok, 'not ok');
    is($p->code, 421, 'code 421');
    like($p->message, qr/^\[Net::LMTP::Pool\] Connection closed: \S/, 'message as Net::LMTP words a connection failure');
    my @e = $p->errors;
    is(scalar(grep { length } @e), 2, 'errors: both messages');
    like($e[0], qr/connect|refused/i, "the connect error ($e[0])");

    # The same as Net::LMTP's "not sent" entries (a message after its session broke).
    my $f = start_fake('--fault-on', 'MAIL FROM:<last@x>', '--fault-reply', '421 4.3.2 bye\r\n', '--fault-action', 'close');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    my @old = $l->deliver_many(['last@x', ['z@x'], "a\n"], ['me@x', ['alice@x', 'bob@x'], "a\n"]);
    is_deeply(plain($r[0])->[0], $old[1], "the same hashes as Net::LMTP's for a message not sent");
    $f->stop;

    my $g = start_fake('--rules', $RULES);
    my $q = Net::LMTP::Pool->new(Hosts => ["127.0.0.1:$closed", '127.0.0.1:' . $g->port], RetryDelay => 0.01, Timeout => 5);
    is_deeply([$q->hosts], ["127.0.0.1:$closed", '127.0.0.1:' . $g->port], 'hosts in order');
    my @s = $q->deliver_many(map { ['me@x', ['alice@x'], "m $_\n"] } 1 .. 5);
    is_deeply([map { $_->[0]{status} } @s], [('ok') x 5], 'the first server down, the second delivers');
    ok($q->ok, 'ok');
    is($g->stop->{MESSAGES}, 5, 'five messages');
};

subtest 'a unix socket' => sub {
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my $f = start_fake('--unix', "$dir/lmtp.sock", '--rules', $RULES);
    my $p = Net::LMTP::Pool->new("$dir/lmtp.sock", Connections => 2);
    my @r = $p->deliver_many(map { ['me@x', [$who[$_ % 5]], "u $_\n"] } 0 .. 9);
    is_deeply([map { $_->[0]{status} } @r], [map { ('ok', 'permfail', 'permfail', 'ok', 'tempfail')[$_ % 5] } 0 .. 9],
              'the verdicts over the socket')
        or diag explain \@r;
    is($f->stop->{MESSAGES}, 6, 'the messages with a recipient accepted arrived');
};

subtest 'a local refusal is as in Net::LMTP' => sub {
    my $f = start_fake('--rules', $RULES, '--size', '50');
    my $p = pool_for($f);
    my @bad = $p->deliver_many(['me@x', ["alice\@x\0"], "m\n"]);
    is(scalar(@bad), 0, 'a NUL in an address: nothing, as Net::LMTP returns');
    is($p->code, 501, 'code 501');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    my @msgs = (['me@x', ['alice@x'], 'x' x 200 . "\n"], ['me@x', ['alice@x'], "small\n"]);
    my @want = $l->deliver_many(@msgs);
    my @got = $p->deliver_many(@msgs);
    is_deeply(plain(@got), \@want, 'a message over SIZE: what Net::LMTP gives');
    $l->quit;
};

subtest 'Auth and Debug reach every connection' => sub {
    my $f = start_fake('--auth', 'PLAIN', '--auth-user', 'u', '--auth-password', 'pw', '--auth-require');
    my $p = pool_for($f, Connections => 2, Auth => ['u', 'pw'], AuthAllowPlaintext => 1, MailboxConcurrency => 0);
    my $err = capture_stderr {
        my $d = pool_for($f, Connections => 1, Auth => ['u', 'pw'], AuthAllowPlaintext => 1, Debug => 1);
        $d->deliver_many(['me@x', ['alice@x'], "dbg\n"]);
    };
    like($err, qr/^Net::LMTP::Pool>>> Net::LMTP::Pool\(/m, 'Debug: the versions');
    like($err, qr/^Net::LMTP::Pool=GLOB\(0x[0-9a-f]+\)>>> MAIL FROM:<me\@x>/m, 'Debug: the dialogue');
    my @r = $p->deliver_many(map { ['me@x', ['alice@x'], "a $_\n"] } 1 .. 6);
    is_deeply([map { $_->[0]{status} } @r], [('ok') x 6], 'delivered with AUTH');
    my $s = $f->stop;
    # The server refuses MAIL before AUTH (--auth-require): every message went over an
    # authenticated connection. A connection still in its set-up when the last message was done
    # is left as it is (nothing drives a blocking pool between calls): at most that one more.
    is($s->{AUTH_FAILURES}, 0, 'no AUTH failed');
    cmp_ok($s->{AUTH_SUCCESSES}, '>=', $s->{CONNECTIONS} - 1, "connections authenticated ($s->{AUTH_SUCCESSES} of $s->{CONNECTIONS})");
};

subtest 'bad arguments croak' => sub {
    my $port = free_port();
    my %bad = (
        'no host'                  => [],
        'Connections 0'            => ['h', Connections => 0],
        'Retries not a number'     => ['h', Retries => 'many'],
        'negative delay'           => ['h', RetryDelay => -1],
        'RetryDelayMax below'      => ['h', RetryDelay => 2, RetryDelayMax => 1],
        'Hosts not a list'         => [Hosts => 'h'],
        'bad port in a host'       => ['h:nosuchservice'],
        'bad Auth'                 => ['h', Auth => []],
        'wide character in Hello'  => ['h', Hello => "\x{263A}"],
    );
    for my $case (sort keys %bad) {
        my $ok = eval { Net::LMTP::Pool->new(@{ $bad{$case} }); 1 };
        like($@, qr/^Net::LMTP::Pool->new: \S/, "$case: croaks") && ok(!$ok) or diag $@;
    }
    like($@, qr/wide character in Hello/, 'says what');
    ok(!defined Net::LMTP::Pool->new('h', Hello => "a\r\nb"), 'a Hello with a line break: undef');
    like($@, qr/^Net::LMTP::Pool: Hello contains a line break/, 'and why, in $@');
    my @w;
    { local $SIG{__WARN__} = sub { push @w, @_ }; Net::LMTP::Pool->new('h', Bogus => 1) }
    like("@w", qr/unknown option\(s\) Bogus - ignored/, 'an unknown option is warned about');
    my $p = Net::LMTP::Pool->new('127.0.0.1', Port => $port);
    eval { $p->deliver_many(['me@x', 'alice@x', "m\n"]) };
    like($@, qr/^usage: \$pool->deliver_many/, 'deliver_many with no recipient list croaks');
    eval { $p->deliver_many(['me@x', ['alice@x'], "\x{263A}\n"]) };
    like($@, qr/^Net::LMTP::Pool::deliver_many: wide character in data/, 'wide characters croak');
};

subtest 'N messages over K connections take about N*D/K' => sub {
    my ($n, $d) = (32, 40);
    my $f = start_fake('--reply-delay', $d);
    my %took;
    for my $k (1, 2, 4, 8, 32) {
        my $p = Net::LMTP::Pool->new($f->host, Port => $f->port, Connections => $k, Timeout => 10);
        my $t0 = Time::HiRes::time();
        my @r = $p->deliver_many(map { ['me@x', ["r$_\@x"], "m $_\n"] } 1 .. $n);
        $took{$k} = Time::HiRes::time() - $t0;
        is(scalar(grep { $_->[0]{status} eq 'ok' } @r), $n, "K=$k: every message delivered");
    }
    my $table = sprintf("%4s %9s %9s %6s\n", 'K', 'took s', 'N*D/K s', 'ratio');
    $table .= sprintf("%4d %9.3f %9.3f %6.2f\n", $_, $took{$_}, $n * $d / 1000 / $_, $took{$_} / ($n * $d / 1000 / $_))
        for sort { $a <=> $b } keys %took;
    diag "N=$n messages, reply delay D=$d ms (a message waits for two replies: its commands', its end's)\n$table";
    cmp_ok($took{1} / $took{8}, '>=', 3, sprintf('K=8 at least 3x faster than K=1 (%.1fx)', $took{1} / $took{8}));
    cmp_ok($took{2}, '<', $took{1}, 'K=2 faster than K=1');
    cmp_ok($took{1}, '>=', $n * $d / 1000, 'K=1 takes at least N*D');
    $f->stop;
};

subtest 'no leaks' => sub {
    my $f = start_fake('--rules', $RULES, '--record-limit', '64');
    my $closed = free_port();
    my $cycle = sub {
        my $p = Net::LMTP::Pool->new($f->host, Port => $f->port, Connections => 2, RetryDelay => 0.001);
        my @r = $p->deliver_many(map { ['me@x', [$who[$_ % 5]], "m $_\n"] } 0 .. 4);
        my @e = $p->errors;
        my $q = Net::LMTP::Pool->new('127.0.0.1', Port => $closed, Retries => 0, RetryDelay => 0.001);
        @r = $q->deliver_many(['me@x', ['a@x'], "x\n"]);
        eval { Net::LMTP::Pool->new('h', Connections => 0) };
    };
    SKIP: {
        skip 'Test::LeakTrace is not installed (Debian: libtest-leaktrace-perl)', 1
            unless eval { require Test::LeakTrace; 1 };
        $cycle->();    # what is made once per process (the host name for Hello)
        Test::LeakTrace::no_leaks_ok(sub { $cycle->() }, 'Perl values: new, deliver_many, refused, a croak');
    }
    $cycle->() for 1 .. 50;
    my ($rss1, $fds1) = (rss_kb(), open_fds());
    $cycle->() for 1 .. 300;
    my ($rss2, $fds2) = (rss_kb(), open_fds());
    cmp_ok($rss2 - $rss1, '<', 256, "RSS flat over 300 pools: $rss1 kB, then $rss2 kB");
    is($fds2, $fds1, 'no file descriptor left open');
    $f->stop;
};

done_testing;
