package LMTPTest;

# Helpers for the Net::LMTP tests: the project's fake LMTP server
# ($LMTP_FAKE_SERVER, else the t/bin/fake-lmtp that `make test` builds from
# the bundled sources of the CPAN tarball), a throwaway Dovecot
# ($LMTP_DOVECOT), a Net::Server::Mail::LMTP server ($LMTP_NSM_SERVER, else
# the tarball's copy of nsm-lmtp.pl when that module is installed), STDERR
# capture, and OldLMTP, the Net::SMTP-based client the old Net::LMTP was.
#
# Each test file runs in its own process, two at a time (HARNESS_OPTIONS=j2):
# every server gets a fresh port and its own temporary directory, and every
# server started here is stopped when the test ends, even if it dies.

use strict;
use warnings;
use Exporter 'import';
use File::Temp ();
use File::Spec ();
use POSIX ();
use Socket ();
use IO::Socket::INET ();
use Test::More ();

our @EXPORT_OK = qw(
    need_fake need_dovecot need_nsm start_fake start_dovecot capture_stderr run_client run_both
    slurp rss_kb open_fds free_port perl_inc_args wait_until test_certs default_lhlo
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my %live_fake;       # pid => fake object data (for END)
my %live_dovecot;    # dir => 1 (for END)
my $owner = $$;      # a forked child must not stop the parent's servers

# ---------------------------------------------------------------------------
# environment

# The distribution's top directory (this file is t/lib/LMTPTest.pm).
my $top = do {
    my ($vol, $dirs) = File::Spec->splitpath(File::Spec->rel2abs(__FILE__));
    File::Spec->catpath($vol, File::Spec->catdir($dirs, File::Spec->updir, File::Spec->updir), '');
};

# Servers the distribution brings along, used when the variable is not set:
# the test servers `make test` builds from the bundled liblmtp/tests/support
# (the CPAN tarball), and its copy of nsm-lmtp.pl (only where
# Net::Server::Mail::LMTP is installed).
sub _default {
    my ($var, $path, $usable) = @_;
    return if defined $ENV{$var} && length $ENV{$var};
    $ENV{$var} = $path if -e $path && $usable->();
}
_default('LMTP_FAKE_SERVER', File::Spec->catfile($top, 't', 'bin', 'fake-lmtp'), sub { 1 });
_default('LMTP_NSM_SERVER', File::Spec->catfile($top, 'liblmtp', 'tests', 'support', 'nsm-lmtp.pl'),
         sub { eval { require Net::Server::Mail::LMTP; 1 } });

sub _need {
    my ($var, $what) = @_;
    my $path = $ENV{$var};
    return $path if defined $path && length $path && -e $path;
    my $why = defined $path && length $path
        ? "$var=$path does not exist"
        : "$var is not set (the path of $what)";
    Test::More::BAIL_OUT("LMTP_TEST_STRICT is set but $why") if $ENV{LMTP_TEST_STRICT};
    Test::More::plan(skip_all => $why);
}

sub need_fake    { _need('LMTP_FAKE_SERVER', 'the fake-lmtp program') }
sub need_dovecot { _need('LMTP_DOVECOT', 'tests/support/dovecot.sh') }
sub need_nsm     { _need('LMTP_NSM_SERVER', 'tests/support/nsm-lmtp.pl, which needs Net::Server::Mail::LMTP') }

# test_certs(): a directory with the test certificates that make-test-certs
# (next to fake-lmtp) writes: ca.pem, server.pem/.key (localhost, 127.0.0.1,
# ::1), wrong-name, expired, self-signed, other-ca, client.pem/.key. Made
# once per test process, removed at its end.
my $certs_dir;
sub test_certs {
    return $certs_dir if defined $certs_dir;
    my $fake = need_fake();
    my ($vol, $dirs) = File::Spec->splitpath(File::Spec->rel2abs($fake));
    my $prog = File::Spec->catpath($vol, $dirs, 'make-test-certs');
    unless (-x $prog) {
        my $why = "make-test-certs not found next to LMTP_FAKE_SERVER ($prog)";
        Test::More::BAIL_OUT("LMTP_TEST_STRICT is set but $why") if $ENV{LMTP_TEST_STRICT};
        Test::More::plan(skip_all => $why);
    }
    my $dir = File::Temp::tempdir('lmtp-certs-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    system($prog, $dir) == 0 or die "make-test-certs $dir failed: $?\n";
    -f "$dir/$_" or die "make-test-certs wrote no $_\n" for qw(ca.pem server.pem server.key client.pem client.key);
    $certs_dir = $dir;
}

# ---------------------------------------------------------------------------
# small things

# What LHLO names this host when no Hello is given: Net::Domain's hostfqdn, as
# Net::LMTP 0.02 sent it.
sub fqdn {
    require Net::Domain;
    Net::Domain::hostfqdn();
}
sub default_lhlo { 'LHLO ' . fqdn() . "\r\n" }

sub slurp {
    my $file = shift;
    open my $fh, '<:raw', $file or return undef;
    local $/;
    my $s = <$fh>;
    $s = '' unless defined $s;
    $s;
}

sub rss_kb {
    open my $fh, '<', "/proc/self/status" or return undef;
    while (<$fh>) { return $1 if /^VmRSS:\s+(\d+)\s+kB/ }
    undef;
}

sub open_fds {
    opendir my $d, "/proc/self/fd" or return undef;
    my @fd = grep { /^\d+$/ } readdir $d;
    scalar @fd - 1;    # the directory handle itself
}

# A TCP port on 127.0.0.1 that nobody listens on (bound, then released).
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Proto => 'tcp', Listen => 1)
        or die "cannot bind: $!";
    my $port = $s->sockport;
    close $s;
    $port;
}

# -I switches that give a child perl the same modules as this one (blib).
sub perl_inc_args {
    map { '-I' . File::Spec->rel2abs($_) } grep { !ref } @INC;
}

sub wait_until {
    my ($cond, $seconds) = @_;
    my $end = time + ($seconds || 5);
    while (1) {
        return 1 if $cond->();
        return 0 if time > $end;
        select undef, undef, undef, 0.01;
    }
}

# capture_stderr { CODE }: runs CODE with STDERR (fd 2, so the XS's writes too)
# going to a file; returns what was written, byte for byte (and in list
# context also what CODE returned). Dies with CODE's error after restoring.
sub capture_stderr(&) {
    my $code = shift;
    my $tmp = File::Temp->new;
    open my $save, '>&', \*STDERR or die "dup STDERR: $!";
    open STDERR, '>', $tmp->filename or die "redirect STDERR: $!";
    binmode STDERR;
    STDERR->autoflush(1);
    my @r;
    my $ok = eval { @r = $code->(); 1 };
    my $err = $@;
    open STDERR, '>&', $save or die "restore STDERR: $!";
    my $out = slurp($tmp->filename);
    die $err unless $ok;
    wantarray ? ($out, @r) : $out;
}

# run_client(CLASS, [FAKE OPTIONS], CODE, NEW OPTIONS...): starts a fake with
# these options, connects CLASS to it (Net::LMTP or OldLMTP), runs
# CODE->($client, $fake) with warnings collected, stops the fake; returns
# { result => [what CODE returned], warnings => [...], transcript => bytes,
#   messages => [decoded messages], stats => {counters} }.
sub run_client {
    my ($class, $fake_opt, $code, @new_opt) = @_;
    my $f = start_fake(@$fake_opt);
    my @warn;
    my @r;
    {
        local $SIG{__WARN__} = sub { push @warn, $_[0] };
        my $c = $class->new($f->host, $f->port, Timeout => 10, @new_opt)
            or die "$class->new: $@";
        @r = $code->($c, $f);
    }
    my $stats = $f->stop;
    { result => \@r, warnings => \@warn, transcript => $f->transcript,
      messages => [$f->messages], stats => $stats };
}

# The same with Net::LMTP and with OldLMTP; the old module's warnings are
# rewritten to name Net::LMTP (Net::SMTP's carps name Net::SMTP, the old
# Net::LMTP's named Net::LMTP: it was a renamed copy).
sub run_both {
    my ($fake_opt, $code, @new_opt) = @_;
    my $new = run_client('Net::LMTP', $fake_opt, $code, @new_opt);
    my $old = run_client('OldLMTP', $fake_opt, $code, @new_opt);
    s/\b(?:Net::SMTP|OldLMTP)\b/Net::LMTP/g for @{ $old->{warnings} };
    ($new, $old);
}

# ---------------------------------------------------------------------------
# the fake server

# start_fake(OPTIONS...): runs $LMTP_FAKE_SERVER with these command-line
# options plus its own --transcript, --messages-dir and --events; returns an
# object:
#   ->host ("127.0.0.1" or the unix socket path), ->port (0 for unix),
#   ->transcript (every byte received so far), ->messages (decoded messages),
#   ->events (the --events lines: TLS handshakes, AUTH outcomes, messages),
#   ->stop (SIGTERM, wait; returns {CONNECTIONS => n, MESSAGES => n, ...}).
sub start_fake {
    my @opt = @_;
    my $prog = need_fake();
    my $dir = File::Temp::tempdir('lmtp-fake-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $self = bless {
        dir => $dir, transcript_file => "$dir/transcript.bin", messages_dir => "$dir/msgs",
        events_file => "$dir/events.txt", options => [@opt], owner => $$,
    }, 'LMTPTest::Fake';
    mkdir $self->{messages_dir} or die "mkdir: $!";
    pipe(my $out_r, my $out_w) or die "pipe: $!";
    pipe(my $in_r, my $in_w) or die "pipe: $!";
    my $pid = fork;
    defined $pid or die "fork: $!";
    if (!$pid) {
        open STDIN, '<&', $in_r or POSIX::_exit(126);
        open STDOUT, '>&', $out_w or POSIX::_exit(126);
        no warnings "exec";
        exec $prog, @opt, '--transcript', $self->{transcript_file},
            '--messages-dir', $self->{messages_dir}, '--events', $self->{events_file}, '--exit-on-eof';
        POSIX::_exit(127);
    }
    close $out_w;
    close $in_r;
    $self->{pid} = $pid;
    $self->{out} = $out_r;
    $self->{in} = $in_w;    # closing it (or our exit) stops the server
    $live_fake{$pid} = $self->{out};
    my $line = eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm 10;
        my $l = <$out_r>;
        alarm 0;
        $l;
    };
    alarm 0;
    if (!defined $line) {
        $self->stop;
        die "fake-lmtp @opt did not start\n";
    }
    if ($line =~ /^PORT (\d+)/) {
        @$self{qw(host port)} = ('127.0.0.1', $1);
        $self->{host} = '::1' if grep { $_ eq '--inet6' } @opt;
    }
    elsif ($line =~ /^UNIX (.+?)\r?\n?$/) {
        @$self{qw(host port)} = ($1, 0);
    }
    else {
        $self->stop;
        die "fake-lmtp @opt: unexpected first line '$line'\n";
    }
    $self;
}

package LMTPTest::Fake;

sub host { $_[0]{host} }
sub port { $_[0]{port} }
sub pid  { $_[0]{pid} }

sub transcript { LMTPTest::slurp($_[0]{transcript_file}) }

# The --events lines so far, without their line ends.
sub events {
    my $text = LMTPTest::slurp($_[0]{events_file});
    defined $text ? split(/\n/, $text) : ();
}

sub message_files {
    my $self = shift;
    opendir my $d, $self->{messages_dir} or return ();
    my @f = sort { $a <=> $b } map { /^(\d+)\.eml$/ ? $1 : () } readdir $d;
    map { "$self->{messages_dir}/$_.eml" } @f;
}

# The decoded messages stored so far; with N, waits (up to 5 s) until there are N.
sub messages {
    my ($self, $n) = @_;
    LMTPTest::wait_until(sub { $self->message_files >= $n }, 5) if defined $n;
    map { LMTPTest::slurp($_) } $self->message_files;
}

sub stop {
    my $self = shift;
    return $self->{stats} if $self->{stats} || !$self->{pid};
    return {} unless $self->{owner} == $$;
    kill 'TERM', $self->{pid};
    my %stats;
    my $out = $self->{out};
    while (defined(my $l = <$out>)) {
        $stats{$1} = $2 if $l =~ /^(\w+) (\d+)/;
    }
    close $out;
    close $self->{in};
    waitpid $self->{pid}, 0;
    $stats{exit_status} = $?;
    delete $live_fake{$self->{pid}};
    $self->{stats} = \%stats;
}

sub DESTROY {
    my $self = shift;
    local ($?, $@, $!);
    $self->stop if $self->{owner} == $$ && !$self->{stats};
}

package LMTPTest;

# ---------------------------------------------------------------------------
# Dovecot

# start_dovecot([CERT, KEY]): a fresh Dovecot LMTP in a temporary directory
# (offering STARTTLS with that certificate and key, PEM files, if given);
# returns an object with ->port, ->socket_path, ->dir, ->maildir(USER) (its
# new/ directory), ->mails(USER) (the contents of the files there) and ->stop.
sub start_dovecot {
    my ($cert, $key) = @_;
    my $script = need_dovecot();
    my $base = File::Temp::tempdir('lmtp-dovecot-XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $dir = "$base/d";
    my $tls = defined $cert ? join(' ', map { "'$_'" } $cert, $key) : '';
    my $out = `bash '$script' start '$dir' $tls 2>&1`;
    $live_dovecot{$dir} = $script;    # stop it even if start half-worked
    my %v = $out =~ /^(LMTP_\w+)=(.*)$/mg;
    unless ($? == 0 && $v{LMTP_PORT}) {
        system 'bash', $script, 'stop', $dir;
        delete $live_dovecot{$dir};
        die "dovecot.sh start failed: $out\n";
    }
    bless { dir => $v{LMTP_DIR}, port => $v{LMTP_PORT}, socket => $v{LMTP_SOCKET},
            pgid => $v{LMTP_PGID}, script => $script, key => $dir, owner => $$ }, 'LMTPTest::Dovecot';
}

package LMTPTest::Dovecot;

sub port   { $_[0]{port} }
sub socket_path { $_[0]{socket} }
sub dir    { $_[0]{dir} }
sub maildir { "$_[0]{dir}/mail/$_[1]/Maildir/new" }

sub mails {
    my ($self, $user) = @_;
    my $d = $self->maildir($user);
    opendir my $dh, $d or return ();
    map { LMTPTest::slurp("$d/$_") } sort grep { !/^\./ } readdir $dh;
}

sub log_text { LMTPTest::slurp("$_[0]{dir}/dovecot.log") }

sub stop {
    my $self = shift;
    return if $self->{stopped}++ || $self->{owner} != $$;
    system 'bash', $self->{script}, 'stop', $self->{key};
    delete $live_dovecot{$self->{key}};
}

sub DESTROY {
    local ($?, $@, $!);
    $_[0]->stop;
}

package LMTPTest;

END {
    local $?;
    if ($$ == $owner) {
        foreach my $pid (keys %live_fake) {
            kill 'TERM', $pid;
            waitpid $pid, 0;
        }
        foreach my $dir (keys %live_dovecot) {
            system 'bash', $live_dovecot{$dir}, 'stop', $dir;
        }
    }
}

# ---------------------------------------------------------------------------
# OldLMTP: what the old Net::LMTP was - Net::SMTP with new(HOST, PORT, ...)
# and a hello that sends LHLO instead of EHLO (no HELO fallback: LMTP has
# none). Everything else, including datasend/dataend/response and the Debug
# output, is Net::Cmd's.

package OldLMTP;

require Net::SMTP;
our @ISA = ('Net::SMTP');
our $VERSION = '0.02';

sub new {
    my ($class, $host, $port, %arg) = @_;
    $class->SUPER::new($host, Port => $port, %arg);
}

sub hello {
    my $me     = shift;
    my $domain = shift || LMTPTest::fqdn();
    my $ok     = $me->command('LHLO', $domain)->response() == Net::Cmd::CMD_OK();
    my @msg    = $me->message;
    if ($ok) {
        my $h = ${*$me}{net_smtp_esmtp} = {};
        foreach my $ln (@msg) {
            $h->{uc $1} = $2 if $ln =~ /([-\w]+)\b[= \t]*([^\n]*)/;
        }
    }
    return unless $ok;
    ${*$me}{net_smtp_hello_domain} = $domain;
    $msg[0] =~ /\A\s*(\S+)/;
    return ($1 || ' ');
}

1;
