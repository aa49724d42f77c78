#!/usr/bin/perl
# bench-netsmtp: the peer client over Perl's core Net::SMTP, subclassed to send
# LHLO instead of EHLO (which is what the CPAN Net::LMTP module is). Net::SMTP
# sends one command at a time (no pipelining, no BDAT) and its dataend reads
# only ONE reply after the final dot: to stay correct this peer reads the
# other accepted recipients' replies itself with response(). The message goes
# through datasend in 64 KiB pieces with --stream, or in one datasend from
# memory. TCP_NODELAY is set on its socket (see below; BENCH_NETSMTP_NAGLE=1
# leaves Nagle on). Arguments and output: args.h (--batch is unsupported).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use BenchCommon qw(parse_args ready result unsupported slurp);
use Net::SMTP;
use Socket qw(IPPROTO_TCP TCP_NODELAY);

package BenchLMTP {
    use parent -norequire, 'Net::SMTP';
    # Net::SMTP::hello sends _EHLO and parses the capabilities: LHLO instead.
    sub _EHLO { shift->command('LHLO', @_)->response() == Net::Cmd::CMD_OK() }
}

my $a = parse_args();
my @to = @{ $a->{to} };
unsupported('Net::SMTP has no batch call') if $a->{batch};
my $data = $a->{stream} ? undef : slurp($a->{body});

# One transaction; returns the number of recipients that got the message, or
# undef when the session broke.
sub deliver {
    my ($smtp) = @_;
    $smtp->mail($a->{from}) or return $smtp->reset ? 0 : undef;
    my @accepted = $smtp->recipient(@to, { SkipBad => 1 });
    return $smtp->reset ? 0 : undef unless @accepted;
    $smtp->data or return undef;
    if ($a->{stream}) {
        open(my $fh, '<:raw', $a->{body}) or die "$a->{body}: $!\n";
        my $buf;
        while (read($fh, $buf, 65536)) {
            $smtp->datasend($buf) or return undef;
        }
    } else {
        $smtp->datasend($data) or return undef;
    }
    my $good = $smtp->dataend ? 1 : 0;           # the first accepted recipient's reply
    return undef if $smtp->code == 421;          # no reply (Net::Cmd's default code) or closing
    for (2 .. @accepted) {                        # help: the others, never read by Net::SMTP
        my $st = $smtp->response;
        return undef if $smtp->code == 421;
        $good++ if $st == Net::Cmd::CMD_OK();
    }
    return $good;
}

my $start = ready();
my ($ok, $failed, $errors, $sent) = (0, 0, 0, 0);
my $smtp;
while ($sent < $a->{messages}) {
    $sent++;
    if (!$smtp) {
        $smtp = BenchLMTP->new($a->{host}, Port => $a->{port}, Hello => 'bench.example.org', Timeout => 60);
        # help for speed, not correctness: datasend and dataend are two writes, and with Nagle
        # the final dot waits for the sink's delayed ACK (about 40 ms a message)
        $smtp->setsockopt(IPPROTO_TCP, TCP_NODELAY, 1) if $smtp && !$ENV{BENCH_NETSMTP_NAGLE};
    }
    my $good = $smtp ? deliver($smtp) : undef;
    if (!defined $good) {
        warn "bench-netsmtp: session broke\n";
        $errors++;
        $failed += @to;
        undef $smtp;
        next;
    }
    $ok += $good;
    $failed += @to - $good;
    if ($a->{reconnect}) {
        $smtp->quit;
        undef $smtp;
    }
}
$smtp->quit if $smtp;
result($start, $sent, $ok, $failed, $errors);
