#!/usr/bin/perl
# nsm-lmtp.pl - a real Net::Server::Mail::LMTP server on loopback, for the tests.
#
# Net::Server::Mail::LMTP (Debian: libnet-server-mail-perl) is the LMTP server library Perl
# projects run in their own test suites. After the message it answers all the recipients at once,
# as ONE multi-line reply with a line per recipient ("250-Ok" ... "250 Ok", a refused one
# "550-<address> Failed" among them): old Net::LMTP scripts worked with it, and so must we.
#
#   nsm-lmtp.pl [--messages-dir DIR] [--exit-on-eof]
#
# Listens on 127.0.0.1 (a free port), prints "PORT <n>" on stdout, and serves each connection in a
# child of its own until SIGTERM/SIGINT (or EOF on stdin with --exit-on-eof); then it stops its
# children and exits 0, leaving no process behind.
#
# Recipients, by local part: "nosuch..." is refused at RCPT (550); after the message "fail..." is
# refused with the library's own failure reply (550 "<address> Failed"), "temp..." with 452, and
# any other gets the library's "250 Ok". With --messages-dir, each delivery is stored as
# DIR/<address>.<pid>.<n> (written under a temporary name, then renamed).
use strict;
use warnings;
use Getopt::Long ();
use IO::Select ();
use IO::Socket::INET ();
use POSIX ();
use Net::Server::Mail::LMTP ();

my ($dir, $exit_on_eof);
Getopt::Long::GetOptions('messages-dir=s' => \$dir, 'exit-on-eof' => \$exit_on_eof)
    or die "usage: $0 [--messages-dir DIR] [--exit-on-eof]\n";

my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 16,
                                   ReuseAddr => 1)
    or die "nsm-lmtp.pl: cannot listen: $!\n";
$| = 1;
print "PORT ", $listen->sockport, "\n";

my %children;
my $stop = 0;
$SIG{TERM} = $SIG{INT} = sub { $stop = 1 };
$SIG{CHLD} = sub {
    while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) { delete $children{$pid} }
};

my $seq = 0;
sub serve {
    my $conn = shift;
    my $server = Net::Server::Mail::LMTP->new(socket => $conn, idle_timeout => 60);
    $server->set_callback(RCPT => sub {
        my ($session, $address) = @_;
        return $address =~ /^nosuch/i ? (0, 550, "5.1.1 <$address> no such user") : (1);
    });
    $server->set_callback(DATA => sub {
        my ($session, $data, $address) = @_;
        return (0) if $address =~ /^fail/i;           # 550 "<address> Failed", the library's words
        return (0, 452, "$address try again later") if $address =~ /^temp/i;
        if (defined $dir) {
            my $name = sprintf '%s/%s.%d.%d', $dir, $address, $$, ++$seq;
            open my $fh, '>:raw', "$name.tmp" or die "nsm-lmtp.pl: $name.tmp: $!\n";
            print {$fh} $$data;
            close $fh or die "nsm-lmtp.pl: $name.tmp: $!\n";
            rename "$name.tmp", $name or die "nsm-lmtp.pl: $name: $!\n";
        }
        return (1);                                   # 250 "Ok"
    });
    $server->process;
}

my $select = IO::Select->new($listen);
$select->add(\*STDIN) if $exit_on_eof;
while (!$stop) {
    my @ready = $select->can_read(0.2);
    for my $fh (@ready) {
        if ($fh != $listen) {    # stdin: EOF (or anything) means stop
            my $n = sysread(STDIN, my $buf, 512);
            $stop = 1 unless $n;
            next;
        }
        my $conn = $listen->accept or next;
        my $pid = fork;
        if (!defined $pid) {
            close $conn;
            next;
        }
        if (!$pid) {
            $SIG{TERM} = $SIG{INT} = 'DEFAULT';
            close $listen;
            serve($conn);
            POSIX::_exit(0);
        }
        $children{$pid} = 1;
        close $conn;
    }
}
kill 'TERM', keys %children;
while (%children) {
    my $pid = waitpid(-1, 0);
    last if $pid <= 0;
    delete $children{$pid};
}
exit 0;
