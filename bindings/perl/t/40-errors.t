# Return values on failure: false (or undef / an empty list for methods that
# return a value), never an exception on a server's error or a broken
# connection; code and message describe the last reply (or Net::Cmd's 421
# "[Net::LMTP] Timeout" / "Connection closed"); nothing on STDERR without Debug.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes ();
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();

my $LHLO = default_lhlo();

# Runs CODE with STDERR captured and warnings collected; checks that it did
# not die and printed nothing; returns what CODE returned.
sub quietly(&$) {
    my ($code, $name) = @_;
    my (@warn, @r, $ok, $err);
    my $out = capture_stderr {
        local $SIG{__WARN__} = sub { push @warn, @_ };
        $ok = eval { @r = $code->(); 1 };
        $err = $@;
    };
    ok($ok, "$name: nothing died") or diag $err;
    is_deeply(\@warn, [], "$name: no warnings");
    is($out, '', "$name: nothing on STDERR");
    @r;
}

subtest '550 at RCPT' => sub {
    my $f = start_fake('--rules', 'nosuch@example.org=550');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @r = quietly {
        $l->mail('s@example.org');
        my $to = $l->to('nosuch@example.org');
        my @skip = $l->to('nosuch@example.org', { SkipBad => 1 });
        ($to, $l->code, scalar $l->message, scalar @skip, $l->ok ? 1 : 0, $l->status);
    } 'RCPT refused';
    is_deeply(\@r, [0, 550, "5.1.1 <nosuch\@example.org> User doesn't exist\n", 0, 0, 5],
              'false (defined); SkipBad: empty list; code/message/ok/status');
    ok(!$l->data, 'data with no accepted recipient: false');
    is($l->code, 503, 'code 503 from the server');
    ok($l->reset, 'the session goes on');
    $l->quit;
};

subtest '452 and 552 at DATA' => sub {
    my $f = start_fake('--rules', 'temp@example.org=250,452;full@example.org=250,552');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @r = quietly {
        my @r;
        $l->mail('s@example.org');
        $l->to('temp@example.org');
        push @r, $l->data("Subject: x\n\nx\n") ? 1 : 0, $l->code, scalar $l->message;
        $l->mail('s@example.org');
        $l->to('full@example.org');
        $l->data;
        $l->datasend("x\n");
        push @r, $l->dataend ? 1 : 0, $l->code, scalar $l->message;
        @r;
    } 'DATA refused per recipient';
    is_deeply(\@r, [0, 452, "4.2.2 <temp\@example.org> Mailbox is full, try again later\n",
                    0, 552, "5.2.2 <full\@example.org> Quota exceeded\n"], 'false, code, message');
    ok($l->command('NOOP')->response == 2, 'the session goes on');
    $l->quit;
};

subtest 'DATA itself refused: no body sent' => sub {
    my $f = start_fake('--fault-on', 'DATA', '--fault-reply', '451 4.3.0 try later\r\n');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @r = quietly {
        $l->mail('s@example.org');
        $l->to('a@example.org');
        ($l->data("Subject: x\n\nbody\n") ? 1 : 0, $l->code, scalar $l->message);
    } 'DATA refused';
    is_deeply(\@r, [0, 451, "4.3.0 try later\n"], 'data: false, code, message');
    $l->quit;
    $f->stop;
    is($f->transcript,
       "${LHLO}MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\nDATA\r\nQUIT\r\n",
       'the body was not sent');
};

subtest '421 then close' => sub {
    my $f = start_fake('--fault-on', 'MAIL', '--fault-reply', '421 4.3.2 shutting down\r\n',
                       '--fault-action', 'close');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @r = quietly {
        my @r;
        push @r, $l->mail('s@example.org') ? 1 : 0, $l->code, scalar $l->message;
        push @r, $l->to('a@example.org') ? 1 : 0, $l->code;
        push @r, scalar(() = $l->to('a@example.org', { SkipBad => 1 }));
        push @r, $l->data ? 1 : 0, $l->code;
        push @r, $l->datasend("x\n") ? 1 : 0;
        push @r, $l->dataend ? 1 : 0, $l->code;
        push @r, scalar(() = $l->expand('x')), defined(scalar $l->help) ? 1 : 0;
        push @r, $l->command('NOOP')->response;
        push @r, $l->reset ? 1 : 0, $l->code;
        $l->quit;
        @r;
    } 'connection closed by the server';
    is_deeply([@r[0 .. 2]], [0, 421, "4.3.2 shutting down\n"], 'mail: false, the 421 reply');
    is_deeply([@r[3, 4]], [0, 421], 'to: false, 421');
    is($r[5], 0, 'to with SkipBad: empty list');
    is_deeply([@r[6, 7]], [0, 421], 'data: false, 421');
    ok(!$r[8], 'datasend: false');
    is_deeply([@r[9, 10]], [0, 421], 'dataend: false, 421');
    is_deeply([@r[11, 12]], [0, 0], 'expand: empty list, help: undef');
    is($r[13], 5, 'response: CMD_ERROR');
    is_deeply([@r[14, 15]], [0, 421], 'reset: false, 421');
    like(scalar $l->message, qr/^\[Net::LMTP\] Connection closed/, 'message: Connection closed');
};

subtest 'the server closes instead of answering the message' => sub {
    my $f = start_fake('--fault-on', '.', '--fault-action', 'close');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @r = quietly {
        $l->mail('s@example.org');
        $l->to('a@example.org');
        $l->data;
        $l->datasend("x\n");
        ($l->dataend ? 1 : 0, $l->code, scalar $l->message, $l->response);
    } 'closed after the final dot';
    is_deeply([@r[0, 1]], [0, 421], 'dataend: false, 421');
    like($r[2], qr/^\[Net::LMTP\] Connection closed/, 'message');
    is($r[3], 5, 'response: CMD_ERROR');
};

subtest 'a connection reset at RCPT' => sub {
    my $f = start_fake('--fault-on', 'RCPT', '--fault-action', 'reset');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @r = quietly {
        $l->mail('s@example.org');
        ($l->to('a@example.org') ? 1 : 0, $l->code, $l->mail('s@example.org') ? 1 : 0, $l->code);
    } 'reset';
    is_deeply(\@r, [0, 421, 0, 421], 'false, 421');
};

subtest 'a reply that never comes: Timeout' => sub {
    my $f = start_fake('--fault-on', 'RCPT', '--fault-action', 'hang');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 1) or die $@;
    $l->mail('s@example.org');
    my $t0 = Time::HiRes::time();
    my @r = quietly { ($l->to('a@example.org') ? 1 : 0, $l->code, scalar $l->message) } 'timeout';
    my $dt = Time::HiRes::time() - $t0;
    is_deeply(\@r, [0, 421, '[Net::LMTP] Timeout'], 'false, 421 "[Net::LMTP] Timeout" as Net::Cmd');
    cmp_ok($dt, '>=', 0.9, 'after about Timeout seconds');
    cmp_ok($dt, '<', 3, '(not much later)');
    quietly { $l->mail('s@example.org'); $l->quit } 'after a timeout';
};

subtest 'a server that stops reading the message: Timeout' => sub {
    my $f = start_fake('--fault-on', 'DATA', '--fault-keep', '--fault-action', 'stop-reading',
                       '--rcvbuf', '4096');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 1) or die $@;
    $l->mail('s@example.org');
    $l->to('a@example.org');
    ok($l->data, 'DATA: 354');
    my $t0 = Time::HiRes::time();
    my @r = quietly {
        my $r = $l->datasend(("y" x 1000 . "\n") x 20_000);
        ($r ? 1 : 0, $l->code, scalar $l->message, $l->dataend ? 1 : 0, $l->code);
    } 'stopped reading';
    my $dt = Time::HiRes::time() - $t0;
    is_deeply(\@r, [0, 421, '[Net::LMTP] Timeout', 0, 421], 'datasend false, 421 Timeout; dataend false');
    cmp_ok($dt, '<', 4, "it did not hang (${dt}s with Timeout => 1)");
};

subtest 'a reply that is not a reply' => sub {
    my $f = start_fake('--fault-on', 'NOOP', '--fault-reply', 'hello there\r\n');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 5) or die $@;
    my @r = quietly { ($l->command('NOOP')->response, $l->code) } 'garbage';
    is_deeply(\@r, [5, 421], 'response: CMD_ERROR, code 421');
};

subtest 'a Debug failure is reported on STDERR' => sub {
    my $f = start_fake('--fault-on', 'MAIL', '--fault-action', 'close');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @warn;
    my $out = capture_stderr {
        local $SIG{__WARN__} = sub { push @warn, @_ };
        $l->debug(1);
        ok(!$l->mail('s@example.org'), 'mail: false');
    };
    like($out, qr/>>> MAIL FROM:<s\@example\.org>\r\n/, 'the command is traced');
    ok(scalar @warn, 'and carped, as Net::Cmd does under Debug') or diag $out;
};

done_testing;
