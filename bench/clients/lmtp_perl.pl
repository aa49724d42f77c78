#!/usr/bin/perl
# bench-perl: the benchmark client over Net::LMTP (our Perl face, run with
# -Mblib=BUILD/bindings/perl). Per message: $lmtp->deliver with the body as a
# string, or (--stream) mail/to/data, datasend of 64 KiB pieces read from the
# file, dataend, so the body never sits whole in memory; --datasend: the step
# API as old scripts use it, the whole message (in memory) in one datasend;
# --memory: deliver from memory even where the scenario streams. --batch: one
# deliver_many call per connection, when the module has it. Every recipient's
# verdict (results) is counted. Arguments and output: args.h.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use BenchCommon qw(parse_args ready result unsupported slurp);
use Net::LMTP;

my $a = parse_args();
my @to = @{ $a->{to} };
unsupported('this Net::LMTP has no deliver_many') if $a->{batch} && !Net::LMTP->can('deliver_many');
my $data = $a->{stream} ? undef : slurp($a->{body});

my ($ok, $failed, $errors, $sent) = (0, 0, 0, 0);
sub tally {
    my $good = grep { $_->{status} eq 'ok' } @_;
    $ok += $good;
    $failed += @to - $good;
}

# One message read from the file as it goes out.
sub deliver_stream {
    my ($lmtp) = @_;
    open(my $fh, '<:raw', $a->{body}) or die "$a->{body}: $!\n";
    $lmtp->mail($a->{from}) or return;
    $lmtp->to(@to, { SkipBad => 1 });
    $lmtp->data or return $lmtp->results;
    my $buf;
    while (read($fh, $buf, 65536)) {
        $lmtp->datasend($buf) or return;
    }
    $lmtp->dataend;
    return $lmtp->results;
}

# One message by the step API, the whole of it in one datasend.
sub deliver_datasend {
    my ($lmtp) = @_;
    $lmtp->mail($a->{from}) or return;
    $lmtp->to(@to, { SkipBad => 1 });
    $lmtp->data or return $lmtp->results;
    $lmtp->datasend($data) or return;
    $lmtp->dataend;
    return $lmtp->results;
}

my $start = ready();
my $lmtp;
while ($sent < $a->{messages}) {
    my $count = $a->{reconnect} ? 1 : $a->{messages} - $sent;
    my $done = 0;
    $lmtp ||= Net::LMTP->new($a->{host}, $a->{port}, Hello => 'bench.example.org', Timeout => 60);
    if (!$lmtp) {
        warn "bench-perl: connect: $@\n";
        $count = 1;
    } elsif ($a->{batch}) {
        my @per_message = $lmtp->deliver_many(map { [$a->{from}, \@to, $data] } 1 .. $count);
        for my $results (@per_message) {
            tally(@$results);
            $done++;
        }
    } else {
        for (1 .. $count) {
            my @r = $a->{stream} ? deliver_stream($lmtp)
                  : $a->{datasend} ? deliver_datasend($lmtp)
                  : $lmtp->deliver($a->{from}, \@to, $data);
            if (!@r) {   # the session broke
                warn 'bench-perl: deliver: ', $lmtp->error, "\n";
                $count = $done + 1;
                undef $lmtp;
                last;
            }
            tally(@r);
            $done++;
        }
    }
    my $missing = $count - $done;
    $errors += $missing;
    $failed += $missing * @to;
    $sent += $count;
    if ($lmtp && $a->{reconnect}) {
        $lmtp->quit;
        undef $lmtp;
    }
}
$lmtp->quit if $lmtp;
result($start, $sent, $ok, $failed, $errors);
