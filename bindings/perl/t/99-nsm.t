# Against a real Net::Server::Mail::LMTP (tests/support/nsm-lmtp.pl,
# $LMTP_NSM_SERVER): the Perl LMTP server library answers every recipient
# after the message in ONE multi-line reply, a line each ("250-Ok",
# "550-<address> Failed", "250 Ok"). Old Net::LMTP scripts worked with it;
# with ours each line is its recipient's own verdict, at once: dataend gives
# the first, response() each further one, results() and deliver/deliver_many
# all of them, for two and three recipients, all accepted and mixed.
# StrictReplies => 1 reads every reply as RFC 2033 says.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use File::Temp ();
use IPC::Open2 ();
use Time::HiRes ();
use LMTPTest qw(:all);
use Net::LMTP qw(CMD_OK CMD_REJECT CMD_ERROR);

my $script = need_nsm();

# The server, its port, and what it stored per recipient; stopped at the end.
my $dir = File::Temp::tempdir('lmtp-nsm-XXXXXX', TMPDIR => 1, CLEANUP => 1);
my $pid = IPC::Open2::open2(my $out, my $in, $^X, $script, '--messages-dir', $dir, '--exit-on-eof');
my ($port) = (<$out> // '') =~ /^PORT (\d+)/ or BAIL_OUT('nsm-lmtp.pl did not start');
END {
    if ($pid) {
        close $in;
        waitpid $pid, 0;
    }
}

sub stored {
    my $addr = shift;
    opendir my $d, $dir or die "$dir: $!";
    scalar grep { /^\Q$addr\E\.\d+\.\d+$/ } readdir $d;
}

my $MSG = "Subject: nsm\n\nOne reply, a line per recipient.\n";
my %want = (
    'a@x'    => [250, "Ok\n", 'ok'],
    'b@x'    => [250, "Ok\n", 'ok'],
    'c@x'    => [250, "Ok\n", 'ok'],
    'fail@x' => [550, "fail\@x Failed\n", 'permfail'],
    'temp@x' => [452, "temp\@x try again later\n", 'tempfail'],
);
my @cases = (['a@x', 'b@x'], ['a@x', 'b@x', 'c@x'], ['fail@x', 'b@x'], ['a@x', 'fail@x', 'temp@x']);

for my $rcpts (@cases) {
    subtest "dataend and response, @$rcpts" => sub {
        my $l = Net::LMTP->new('127.0.0.1', $port, Timeout => 10) or die $@;
        ok($l->mail('s@x'), 'MAIL');
        ok($l->to(@$rcpts), 'RCPT');
        ok($l->data, 'DATA');
        ok($l->datasend($MSG), 'datasend');
        my $t0 = Time::HiRes::time();
        my $first = $want{ $rcpts->[0] };
        is($l->dataend ? 1 : 0, $first->[0] == 250 ? 1 : 0, 'dataend: the first recipient\'s verdict');
        is($l->code, $first->[0], 'its code');
        is($l->message, $first->[1], 'its message');
        for my $r (@$rcpts[1 .. $#$rcpts]) {
            my $w = $want{$r};
            is($l->response, substr($w->[0], 0, 1), "response: $r");
            is($l->code, $w->[0], "$r: code");
            is($l->message, $w->[1], "$r: message");
        }
        cmp_ok(Time::HiRes::time() - $t0, '<', 3, 'no waiting for replies that never come');
        is($l->response, CMD_ERROR, 'no more replies');
        is_deeply([map { [$_->{address}, $_->{status}, $_->{code}] } $l->results],
                  [map { [$_, $want{$_}[2], $want{$_}[0]] } @$rcpts], 'results: each recipient\'s own');
        ok($l->noop, 'the session is in step: NOOP');
        is($l->code, 250, 'with its own reply');
        ok($l->quit, 'quit');
    };

    subtest "deliver, @$rcpts" => sub {
        my %before = map { $_ => stored($_) } @$rcpts;
        my $l = Net::LMTP->new('127.0.0.1', $port, Timeout => 10) or die $@;
        my @r = $l->deliver('s@x', $rcpts, $MSG);
        is_deeply([map { [$_->{address}, $_->{status}, $_->{code}, "$_->{text}\n"] } @r],
                  [map { [$_, $want{$_}[2], $want{$_}[0], $want{$_}[1]] } @$rcpts], 'every verdict');
        ok($l->quit, 'quit: in step');
        for my $r (@$rcpts) {
            is(stored($r) - $before{$r}, $want{$r}[2] eq 'ok' ? 1 : 0, "$r: stored as the verdict says");
        }
    };
}

subtest 'deliver_many' => sub {
    my $l = Net::LMTP->new('127.0.0.1', $port, Timeout => 10) or die $@;
    my @done = $l->deliver_many(map { ['s@x', $_, $MSG] } @cases);
    is_deeply([map { [map { [$_->{address}, $_->{code}] } @$_] } @done],
              [map { [map { [$_, $want{$_}[0]] } @$_] } @cases], 'every message, every recipient');
    ok($l->quit, 'quit');
};

subtest 'StrictReplies => 1: read as RFC 2033 says' => sub {
    my $l = Net::LMTP->new('127.0.0.1', $port, Timeout => 10, StrictReplies => 1) or die $@;
    $l->deliver('s@x', ['fail@x', 'b@x'], $MSG);
    ok(!$l->ok, 'mixed codes on the lines of one reply: no valid reply');
    like($l->error, qr/changed within a multi-line reply/, 'the reason');
    my $s = Net::LMTP->new('127.0.0.1', $port, Timeout => 0.7, StrictReplies => 1) or die $@;
    my $t0 = Time::HiRes::time();
    my @r = $s->deliver('s@x', ['a@x', 'b@x'], $MSG);
    cmp_ok(Time::HiRes::time() - $t0, '>=', 0.6, 'the second recipient\'s reply is waited for');
    is($s->message, '[Net::LMTP] Timeout', 'until the timeout');
    is_deeply([map { $_->{status} } @r], ['ok', 'unknown'], 'the one reply read as the first recipient\'s');
};

done_testing;
