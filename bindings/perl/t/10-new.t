# Net::LMTP->new(HOST, PORT, OPTIONS): what succeeds, what fails and what $@
# then says (as Net::SMTP/the old Net::LMTP did), unix sockets, Hello, the
# default Hello, Timeout, several hosts, LocalAddr/LocalPort, host.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use Time::HiRes ();
use IO::Socket::INET;
use LMTPTest qw(:all);

need_fake();
use_ok('Net::LMTP') or BAIL_OUT('cannot load Net::LMTP');

# Established TCP connections from /proc/net/tcp: [laddr, lport, raddr, rport].
sub tcp_connections {
    open my $fh, '<', '/proc/net/tcp' or return ();
    <$fh>;
    my @c;
    while (<$fh>) {
        my (undef, $l, $r, $st) = split;
        next unless $st eq '01';
        my @e = map {
            my ($a, $p) = split /:/;
            (join('.', reverse map { hex } unpack '(A2)4', $a), hex $p);
        } $l, $r;
        push @c, \@e;
    }
    @c;
}

# What OldLMTP (the Net::SMTP-based module) leaves in $@ against the same
# server, with its class name replaced by ours.
sub old_error {
    my ($host, $port, @opt) = @_;
    local $@;
    my $o = OldLMTP->new($host, $port, Timeout => 5, @opt);
    return 'OldLMTP connected' if $o;
    (my $e = $@) =~ s/^OldLMTP/Net::LMTP/;
    $e;
}

subtest 'HOST and PORT are required' => sub {
    ok(!eval { Net::LMTP->new(); 1 }, 'no arguments: croaks');
    ok(!eval { Net::LMTP->new('127.0.0.1'); 1 }, 'HOST only: croaks');
    like($@, qr/usage: Net::LMTP->new\(HOST, PORT/, 'with a usage message');
};

subtest 'connection refused' => sub {
    my $port = free_port();
    $@ = '';
    my $l = Net::LMTP->new('127.0.0.1', $port, Timeout => 5);
    ok(!defined $l, 'new returns undef');
    like($@, qr/^Net::LMTP: .*refused/i, "says why: $@");
    my @l = Net::LMTP->new('127.0.0.1', $port, Timeout => 5);
    is(scalar @l, 0, 'and an empty list in list context');
};

subtest 'banner 421: undef, $@ has the code and message as Net::SMTP gives them' => sub {
    my $f = start_fake('--fault-on', '', '--fault-reply', '421 4.3.2 go away\r\n', '--fault-action', 'close');
    $@ = '';
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 5);
    my $err = $@;
    ok(!defined $l, 'new returns undef');
    is($err, "Net::LMTP: 421 4.3.2 go away\n", '$@');
    is($err, old_error($f->host, $f->port), 'the same as the old module');
    my $s = $f->stop;
    is($f->transcript, '', 'nothing was sent');
};

subtest 'banner 554 (multi-line)' => sub {
    my $f = start_fake('--fault-on', '', '--fault-reply', '554-5.3.2 no service\r\n554 5.3.2 here\r\n',
                       '--fault-action', 'close');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 5);
    my $err = $@;
    ok(!defined $l, 'new returns undef');
    is($err, "Net::LMTP: 554 5.3.2 no service\n5.3.2 here\n", '$@');
    is($err, old_error($f->host, $f->port), 'the same as the old module');
    $f->stop;
    is($f->transcript, '', 'nothing was sent');
};

subtest 'LHLO refused' => sub {
    my $f = start_fake('--fault-on', 'LHLO', '--fault-reply', '550 5.7.1 not you\r\n');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 5);
    my $err = $@;
    ok(!defined $l, 'new returns undef');
    is($err, "Net::LMTP: 550 5.7.1 not you\n", '$@');
    is($err, old_error($f->host, $f->port), 'the same as the old module');
    my $s = $f->stop;
    is($s->{CONNECTIONS}, 2, 'two connections (ours and the old one)');
    is($f->transcript, default_lhlo() x 2,
       'only LHLO was sent, no HELO/EHLO fallback, nothing else');
};

subtest 'Hello is sent in LHLO' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port, Hello => 'my.mail.domain', Timeout => 30);
    ok($l, 'connected') or diag $@;
    is($l->quit, 1, 'quit');
    $f->stop;
    is($f->transcript, "LHLO my.mail.domain\r\nQUIT\r\n", 'transcript');
};

subtest 'default Hello: the host\'s fully qualified name, as Net::LMTP 0.02 (Net::Domain::hostfqdn)' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port);
    ok($l, 'connected') or diag $@;
    is($l->timeout, 120, 'no Timeout: 120 s, as Net::SMTP and liblmtp (LMTP_DEFAULT_TIMEOUT_MS)');
    $l->quit;
    my $o = OldLMTP->new($f->host, $f->port);
    $o->quit;
    $f->stop;
    is($f->transcript, (default_lhlo() . "QUIT\r\n") x 2, 'ours, then the old module');
};

subtest 'a unix socket path as HOST' => sub {
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my $f = start_fake('--unix', "$dir/lmtp.sock");
    is($f->host, "$dir/lmtp.sock", 'the fake listens there');
    my $l = Net::LMTP->new("$dir/lmtp.sock", 0, Hello => 'unix.example');
    ok($l, 'connected with PORT 0') or diag $@;
    is($l->host, "$dir/lmtp.sock", 'host');
    is($l->domain, 'fake.example', 'domain');
    ok($l->mail('a@example.org'), 'mail');
    ok($l->to('b@example.org'), 'to');
    ok($l->data("Subject: unix\n\nvia a unix socket\n"), 'data');
    is($l->quit, 1, 'quit');
    my $l2 = Net::LMTP->new("$dir/lmtp.sock", 2003);
    ok($l2, 'PORT is ignored for a socket path') or diag $@;
    $l2->quit if $l2;
    $f->stop;
    is($f->transcript,
       "LHLO unix.example\r\nMAIL FROM:<a\@example.org>\r\nRCPT TO:<b\@example.org>\r\nDATA\r\n"
       . "Subject: unix\r\n\r\nvia a unix socket\r\n.\r\nQUIT\r\n"
       . default_lhlo() . "QUIT\r\n", 'transcript');
    is_deeply([$f->messages], ["Subject: unix\r\n\r\nvia a unix socket\r\n"], 'message stored');

    ok(!defined Net::LMTP->new("$dir/nothing-here.sock", 0), 'a socket path where nobody listens: undef');
    like($@, qr/^Net::LMTP: \S/, "with a reason: $@");
};

subtest 'Timeout: a server that never sends its banner' => sub {
    my $f = start_fake('--fault-on', '', '--fault-action', 'hang');
    my $t0 = Time::HiRes::time();
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 1);
    my $dt = Time::HiRes::time() - $t0;
    my $err = $@;
    ok(!defined $l, 'new returns undef');
    cmp_ok($dt, '>=', 0.9, 'after about Timeout seconds (not before)');
    cmp_ok($dt, '<', 3, '(and not much later)');
    like($err, qr/^Net::LMTP: .*time(?:d )?out/i, "says timeout: $err");
};

subtest 'an array ref of hosts: the first unreachable, the second works' => sub {
    my $f = start_fake();    # listens on 127.0.0.1 only: 127.0.0.2 refuses
    my $l = Net::LMTP->new(['127.0.0.2', '127.0.0.1'], $f->port, Timeout => 5);
    ok($l, 'connected') or diag $@;
    is($l->host, '127.0.0.1', 'host is the one that answered');
    is($l->domain, 'fake.example', 'domain');
    $l->quit;
    ok(!defined Net::LMTP->new(['127.0.0.2', '127.0.0.3'], $f->port, Timeout => 5), 'none works: undef');
    like($@, qr/^Net::LMTP: .*refused/i, "reason: $@");
    $f->stop;
    is($f->transcript, default_lhlo() . "QUIT\r\n", 'one session');
};

subtest 'LocalAddr and LocalPort' => sub {
    my $f = start_fake();
    my $lp = free_port();
    my $l = Net::LMTP->new('127.0.0.1', $f->port, LocalAddr => '127.0.0.1', LocalPort => $lp);
    ok($l, 'connected') or diag $@;
    ok((grep { $_->[1] == $lp && $_->[3] == $f->port && $_->[0] eq '127.0.0.1' } tcp_connections()),
       "the connection goes from 127.0.0.1:$lp");
    $l->quit if $l;

    my $l2 = Net::LMTP->new('127.0.0.1', $f->port, LocalAddr => '127.0.0.2');
    ok($l2, 'connected from 127.0.0.2') or diag $@;
    ok((grep { $_->[0] eq '127.0.0.2' && $_->[3] == $f->port } tcp_connections()),
       'the connection goes from 127.0.0.2');
    $l2->quit if $l2;

    my $lp3 = free_port();
    my $l3 = Net::LMTP->new('127.0.0.1', $f->port, LocalAddr => "127.0.0.2:$lp3");
    ok($l3, 'LocalAddr "host:port", as IO::Socket::INET takes it') or diag $@;
    ok((grep { $_->[0] eq '127.0.0.2' && $_->[1] == $lp3 && $_->[3] == $f->port } tcp_connections()),
       "the connection goes from 127.0.0.2:$lp3");
    $l3->quit if $l3;

    my $busy = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1) or die $!;
    my $l4 = Net::LMTP->new('127.0.0.1', $f->port, LocalAddr => '127.0.0.1', LocalPort => $busy->sockport);
    ok(!defined $l4, 'a LocalPort in use: undef');
    like($@, qr/^Net::LMTP: .*in use/i, "reason: $@");
    $f->stop;
};

subtest 'banner, domain and host of a good connection' => sub {
    my $f = start_fake('--hostname', 'mx.example.net');
    my $l = Net::LMTP->new($f->host, $f->port);
    isa_ok($l, 'Net::LMTP');
    is($l->host, '127.0.0.1', 'host');
    is($l->banner, "mx.example.net LMTP ready\n", 'banner');
    is($l->domain, 'mx.example.net', 'domain');
    $l->quit;
};

done_testing;
