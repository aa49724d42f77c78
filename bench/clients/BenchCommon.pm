# The arguments and output every benchmark client shares (see args.h).
package BenchCommon;
use strict;
use warnings;
use Getopt::Long qw(GetOptionsFromArray);
use Time::HiRes ();
use Exporter 'import';
our @EXPORT_OK = qw(parse_args ready result unsupported slurp);

sub parse_args {
    my %a = (host => '127.0.0.1', messages => 1, from => 'bench@example.org', to => []);
    # memory, datasend: ours only (the message in memory whatever the scenario says; one datasend).
    GetOptionsFromArray(\@ARGV, \%a, 'host=s', 'port=i', 'messages=i', 'to=s@', 'from=s', 'body=s',
                        'reconnect', 'stream', 'batch', 'memory', 'datasend')
        && $a{port} && $a{body} && @{ $a{to} }
        or die "usage: $0 --host H --port P --messages N --to ADDR... --body FILE "
             . "[--from ADDR] [--reconnect] [--stream] [--batch] [--memory] [--datasend]\n";
    $a{stream} = 0 if $a{memory} || $a{datasend};
    return \%a;
}

# READY, then wait for the go line; returns the start time. The peak resident
# size counts from here ("5" in /proc/self/clear_refs resets it): loading the
# message from the file is not delivering it.
sub ready {
    if (open my $refs, '>', '/proc/self/clear_refs') {
        print {$refs} '5';
        close $refs;
    }
    $| = 1;
    print "READY\n";
    defined(my $go = <STDIN>) or exit 2;
    return Time::HiRes::time();
}

sub result {
    my ($start, $messages, $ok, $failed, $errors) = @_;
    printf "RESULT start=%.6f end=%.6f messages=%d rcpt_ok=%d rcpt_failed=%d errors=%d\n",
        $start, Time::HiRes::time(), $messages, $ok, $failed, $errors;
}

sub unsupported {
    print "UNSUPPORTED $_[0]\n";
    exit 3;
}

sub slurp {
    my ($path) = @_;
    open(my $fh, '<:raw', $path) or die "$path: $!\n";
    local $/;
    my $data = <$fh>;
    return $data;
}

1;
