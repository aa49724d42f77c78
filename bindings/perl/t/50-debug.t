# Debug => 1: the dialogue on STDERR exactly as Net::Cmd prints it. The same
# script runs against the fake server with the old Net::SMTP-based client
# (OldLMTP) and with ours; the outputs must be the same line for line, once
# the object address, the class name and the version lines at the start
# (Net::Cmd prints its class tree, we print our version) are normalised.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();

my @FAKE = ('--size', '100000', '--rules', 'full@example.org=250,552;nosuch@example.org=550');

# Runs CODE->($client) with CLASS and Debug => 1; returns (normalised lines,
# the version lines, warnings, transcript).
sub debug_run {
    my ($class, $fake_opt, $code, @new_opt) = @_;
    my $f = start_fake(@$fake_opt);
    my @warn;
    my $out = capture_stderr {
        local $SIG{__WARN__} = sub { push @warn, @_ };
        my $l = $class->new($f->host, $f->port, Timeout => 10, Debug => 1, @new_opt);
        $code->($l) if $l;
    };
    $f->stop;
    my @lines = split /(?<=\n)/, $out;
    my @version;
    push @version, shift @lines while @lines && $lines[0] =~ /^\Q$class\E>>> /;
    s/^\Q$class\E=GLOB\(0x[0-9a-f]+\)/CLASS=GLOB(ADDR)/ for @lines;
    (\@lines, \@version, \@warn, $f->transcript);
}

# With $DATA_ONLY, only the data lines are compared (after "<<< 354", before
# the final dot's line), so that one difference shows in one subtest.
our $DATA_ONLY;

sub _data_lines {
    my @l = @{ $_[0] };
    shift @l while @l && $l[0] !~ /<<< 354 /;
    shift @l;
    my @d;
    push @d, shift @l while @l && $l[0] !~ /^CLASS=GLOB\(ADDR\)>>> \.\r?\n\z/;
    \@d;
}

sub compare {
    my ($name, $fake_opt, $code, @new_opt) = @_;
    my ($new, $new_ver, $new_warn, $new_tx) = debug_run('Net::LMTP', $fake_opt, $code, @new_opt);
    my ($old, $old_ver, $old_warn, $old_tx) = debug_run('OldLMTP', $fake_opt, $code, @new_opt);
    ($new, $old) = (_data_lines($new), _data_lines($old)) if $DATA_ONLY;
    subtest $name => sub {
        ok(@$new >= 1, 'ours printed something (' . scalar(@$new) . ' lines)');
        my $n = @$new > @$old ? @$new : @$old;
        my @diff = grep { !defined $new->[$_] || !defined $old->[$_] || $new->[$_] ne $old->[$_] } 0 .. $n - 1;
        is_deeply($new, $old, 'the same lines as Net::Cmd prints, byte for byte')
            or diag map { sprintf "line %d\n  ours: %s\n  old:  %s\n", $_ + 1,
                              _q($new->[$_]), _q($old->[$_]) } @diff[0 .. ($#diff < 5 ? $#diff : 5)];
        is($new_tx, $old_tx, 'and the same bytes were sent');
        is(scalar @$new_warn, scalar @$old_warn, 'as many warnings') or diag @$new_warn, @$old_warn;
    };
    ($new, $new_ver);
}

sub _q {
    my $s = shift;
    return '(none)' unless defined $s;
    $s =~ s/([\r\n\t\\])/{"\r" => '\r', "\n" => '\n', "\t" => '\t', '\\' => '\\\\'}->{$1}/ge;
    "'$s'";
}

my ($lines, $version) = compare('a whole session', \@FAKE, sub {
    my $l = shift;
    $l->mail('sender@example.org', Size => 100);
    $l->to('a@example.org', 'full@example.org');
    $l->to('nosuch@example.org');
    $l->data;
    $l->datasend("From: me\nSubject: debug\n\nfirst line\n");
    $l->datasend(".leading dot\n");
    $l->datasend(["line a\n", "line b\n"]);
    $l->datasend("no newline");
    $l->dataend;
    $l->response;    # full's reply, read as old scripts do
    $l->reset;
    $l->verify('a@example.org');
    $l->expand('list');
    $l->help;
    $l->command('NOOP')->response;
    $l->hello('again.example');
    $l->mail('sender@example.org');
    $l->to('a@example.org');
    $l->data("Subject: two\n\nbody\n");
    $l->quit;
}, Hello => 'client.example');

subtest 'the exact lines' => sub {
    my $P = 'CLASS=GLOB(ADDR)';
    is($lines->[0], "$P<<< 220 fake.example LMTP ready\n", 'the banner: <<< and "\n"');
    is($lines->[1], "$P>>> LHLO client.example\r\n", 'a command: >>> and the CRLF sent');
    ok((grep { $_ eq "$P>>> MAIL FROM:<sender\@example.org> SIZE=100\r\n" } @$lines), 'MAIL with its option');
    ok((grep { $_ eq "$P<<< 250 2.1.0 OK\n" } @$lines), 'a reply');
    ok((grep { $_ eq "$P>>> .leading dot\n" } @$lines), 'a data line as given (before dot-stuffing), "\n"');
    ok((grep { $_ eq "$P>>> \n" } @$lines), 'an empty line inside a datasend call');
    ok((grep { $_ eq "$P>>> .\n" } @$lines), 'the final dot: ">>> .\n"');
    ok((grep { $_ eq "$P<<< 552 5.2.2 <full\@example.org> Quota exceeded\n" } @$lines),
       'the second recipient\'s reply');
    is($lines->[-1], "$P<<< 221 2.0.0 fake.example closing connection\n", 'the last line');
    like($version->[0], qr/^Net::LMTP>>> Net::LMTP\(\Q$Net::LMTP::VERSION\E\)\n\z/,
         'the version line, in Net::Cmd\'s "CLASS>>> CLASS(VERSION)" form');
};

# Net::Cmd prints each datasend call split on "\n" (Perl's split, which drops
# trailing empty fields), before any CRLF conversion.
my $data_case = sub {
    my @calls = @_;
    sub {
        my $l = shift;
        $l->mail('s@example.org');
        $l->to('a@example.org');
        $l->data;
        $l->datasend(ref $_ ? @$_ : $_) for @calls;
        $l->dataend;
        $l->quit;
    };
};

{
local $DATA_ONLY = 1;

compare('datasend("\n") between header and body, as in the Net::SMTP documentation', [],
        $data_case->("To: postmaster\n", "\n", "A simple test message\n"));

compare('a datasend call ending in an empty line', [],
        $data_case->("Subject: x\n\n", "body\n\n\n", "end\n"));

compare('data lines with CR', [], $data_case->("line a\r\nline b\r\n", "tail\r", "\nnext\n"));

# A whole message in one datasend, as old scripts give it: the library sends it in pieces (256 KiB),
# but the trace still shows one datasend call, and the bytes sent are the same.
# (No lone CR: the old module sent it as it is, ours as CRLF. No "." line: it ends the comparison.)
my $big = "Subject: big\n\n" . ("plain line\n.dot line\r\n..two\n\nx\r\n" x 20000) . "end\n\n\n";
compare('one datasend of a message bigger than the pieces it is sent in (' . length($big) . ' octets)', [],
        $data_case->($big));

}

compare('the final dot after data without a final newline', [], $data_case->("no newline"));

compare('a refused banner', ['--fault-on', '', '--fault-reply', '554 5.3.2 no service\r\n',
                             '--fault-action', 'close'], sub { });

compare('a refused LHLO', ['--fault-on', 'LHLO', '--fault-reply', '550 5.7.1 not you\r\n'], sub { });

compare('a multi-line reply and SkipBad', ['--rules', 'nosuch@example.org=550:no such|user here'], sub {
    my $l = shift;
    $l->mail('s@example.org');
    $l->to('a@example.org', 'nosuch@example.org', 'b@example.org', { SkipBad => 1 });
    $l->reset;
    $l->quit;
});

done_testing;
