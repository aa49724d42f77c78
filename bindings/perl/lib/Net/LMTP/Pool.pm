package Net::LMTP::Pool;

# Many messages over up to K connections (liblmtp's delivery pool, lmtp_pool_*), with the
# results Net::LMTP's deliver_many gives. The pool's policy (retries, reuse, unknowns, mailbox
# limits, servers tried in order) is liblmtp's; this file turns options into its limits and
# its per-message outcomes into what a Net::LMTP caller reads.

use strict;
use warnings;
use Carp ();
use Net::LMTP ();

our $VERSION = '1.002';

# lmtp_pool_options.flags (lmtp.h).
use constant {
    POOL_RESEND_UNKNOWN    => 1,
    POOL_NO_RETRIES        => 2,
    POOL_NO_MESSAGE_LIMIT  => 4,
    POOL_NO_AGE_LIMIT      => 8,
    POOL_NO_MAILBOX_LIMIT  => 16,
    POOL_NO_IDLE_TIMEOUT   => 32,
};
# lmtp_options: LMTP_OPT_AUTH_ALLOW_PLAINTEXT, LMTP_STARTTLS_OPPORTUNISTIC / _REQUIRED.
use constant {
    OPT_AUTH_ALLOW_PLAINTEXT => 16,
    STARTTLS_OPPORTUNISTIC   => 1,
    STARTTLS_REQUIRED        => 2,
};
use constant DEFAULT_PORT => 24;

# The pool's options: name => [lmtp_pool_options field, kind, the flag that 0 stands for].
# kind: 'count' (a whole number), 'seconds' (a duration, given in seconds, kept in ms).
my %POOL_OPTION = (
    Connections              => ['connections', 'count'],
    Retries                  => ['retries', 'count', POOL_NO_RETRIES],
    RetryDelay               => ['retry_delay_ms', 'seconds'],
    RetryDelayMax            => ['retry_delay_max_ms', 'seconds'],
    MaxMessagesPerConnection => ['max_messages_per_connection', 'count', POOL_NO_MESSAGE_LIMIT],
    MaxConnectionAge         => ['max_connection_age_ms', 'seconds', POOL_NO_AGE_LIMIT],
    IdleTimeout              => ['idle_timeout_ms', 'seconds', POOL_NO_IDLE_TIMEOUT],
    MailboxConcurrency       => ['mailbox_concurrency', 'count', POOL_NO_MAILBOX_LIMIT],
);
# Net::LMTP->new's options (each connection's) and the pool's own others.
my %KNOWN = map { $_ => 1 } keys %POOL_OPTION, qw(
    Hello Timeout Debug LocalAddr LocalPort SSL StrictReplies ExactAddresses AuthAllowPlaintext
    SSL_ca_file SSL_ca_path SSL_cert_file SSL_key_file SSL_hostname SSL_verifycn_name SSL_verify_mode
    SSL_version STARTTLS Auth Port Hosts ResendUnknown
);

# Statuses of a message refused before anything of it was sent: no results, as in
# Net::LMTP's deliver_many. Any other failure without results (no server could be connected,
# the pool gave the message up) means nothing was sent: every recipient unknown, as
# Net::LMTP's deliver_many reports the messages a broken connection never reached.
my %REFUSED_HERE = map { $_ => 1 } qw(INVALID_ARGUMENT BAD_INPUT LINE_TOO_LONG NOT_ADVERTISED TOO_BIG ABORTED);

BEGIN {
    no warnings 'once';
    # The Net::Cmd view of the last outcome, as Net::LMTP has it.
    *code       = \&Net::LMTP::code;
    *message    = \&Net::LMTP::message;
    *ok         = \&Net::LMTP::ok;
    *status     = \&Net::LMTP::status;
    *set_status = \&Net::LMTP::set_status;
    # How a message's addresses and data become bytes for liblmtp, as in Net::LMTP.
    *_messages  = \&Net::LMTP::_messages;
    *_message   = \&Net::LMTP::_message;
    *_addr      = \&Net::LMTP::_addr;
    *_bytes     = \&Net::LMTP::_bytes;
}

sub CLONE_SKIP { 1 }    # a pool belongs to the thread that made it

sub new {
    my $class = shift;
    my $type = ref($class) || $class;
    my $host = @_ % 2 ? shift : undef;
    @_ % 2 == 0 or Carp::croak("usage: $type->new(HOST, OPTIONS) or $type->new(Hosts => [...], OPTIONS)");
    my %arg = @_;
    if (my @unknown = grep { !$KNOWN{$_} } sort keys %arg) {
        Carp::carp("$type->new: unknown option(s) @unknown - ignored");
    }

    my $default_port = DEFAULT_PORT;
    if (defined $arg{Port}) {
        $default_port = Net::LMTP::_port_number($arg{Port});
        defined $default_port or Carp::croak("$type->new: unknown port '$arg{Port}'");
    }
    my @hosts = defined $host ? (ref $host eq 'ARRAY' ? @$host : $host) : ();
    if (defined $arg{Hosts}) {
        ref $arg{Hosts} eq 'ARRAY' or Carp::croak("$type->new: Hosts must be an array ref");
        push @hosts, @{ $arg{Hosts} };
    }
    my @servers = map { [_server($type, $_, $default_port)] } @hosts;
    @servers or Carp::croak("$type->new: no host given (HOST, or Hosts => [...])");

    my $popts = _pool_options($type, \%arg);
    my $conn = Net::LMTP::_connection_options($type, \%arg) or return;
    my ($create, $tls) = @$conn{qw(create tls)};
    my ($timeout_ms, $hello, $local_addr, $local_port, $flags) = @$create;
    $flags |= $tls->[0];
    $flags |= OPT_AUTH_ALLOW_PLAINTEXT if $arg{AuthAllowPlaintext};
    my $starttls = !$arg{STARTTLS} ? 0 : lc $arg{STARTTLS} eq 'opportunistic' ? STARTTLS_OPPORTUNISTIC : STARTTLS_REQUIRED;
    my @auth;
    if (defined $arg{Auth}) {
        @auth = Net::LMTP::_credentials(ref $arg{Auth} eq 'ARRAY' ? @{ $arg{Auth} } : $arg{Auth});
        defined $auth[0] or Carp::croak("$type->new: Auth is [USER, PASSWORD (, MECHANISM)] or an Authen::SASL object");
        $auth[1] = '' unless defined $auth[1];
        for my $s (@auth) {
            next unless defined $s;
            utf8::downgrade($s, 1) or Carp::croak("$type->new: wide character in Auth; encode it to bytes first");
            index($s, "\0") < 0 or Carp::croak("$type->new: Auth contains a NUL byte");
        }
    }

    my $self = Net::LMTP::_object($type, \%arg);
    my $debug = $arg{Debug};
    Net::LMTP::_show_versions($type) if $debug;
    my ($xs, $st, $why) = Net::LMTP::XS::Pool->create($timeout_ms, $hello, $local_addr, $local_port, $flags,
                                                       [@$tls[1 .. 6]], $starttls, \@auth,
                                                       $debug ? "$self" : undef, $popts);
    ${*$self}{net_lmtp_pool} = $xs;
    Carp::croak("$type->new: $why") if $st;    # options liblmtp cannot use
    foreach my $s (@servers) {
        $st = $xs->add_server(@$s);
        Carp::croak("$type->new: " . $xs->errmsg) if $st;
    }
    ${*$self}{net_lmtp_servers} = \@hosts;
    ${*$self}{net_lmtp_errors} = [];
    $self;
}

# A server as given: "host", "host:port", "[v6 address]:port", a bare IPv6 address, or a unix
# socket path (starting with "/"); as (host, port).
sub _server {
    my ($type, $s, $default_port) = @_;
    defined $s && !ref $s && length $s or Carp::croak("$type->new: a host is a name, an address or a socket path");
    utf8::downgrade($s, 1) or Carp::croak("$type->new: wide character in host '$s'");
    $s =~ /[\0\r\n]/ and Carp::croak("$type->new: a host contains a line break or a NUL byte");
    return ($s, 0) if $s =~ m{^/};
    my ($h, $p);
    if ($s =~ /^\[([^\]]+)\](?::(.+))?$/) {
        ($h, $p) = ($1, $2);
    }
    elsif ($s =~ /^([^:]+):([^:]+)$/) {
        ($h, $p) = ($1, $2);
    }
    else {
        $h = $s;    # a name, an IPv4 address, or an IPv6 address without a port
    }
    return ($h, $default_port) unless defined $p;
    my $n = Net::LMTP::_port_number($p);
    defined $n && $n > 0 && $n < 65536 or Carp::croak("$type->new: unknown port '$p' in host '$s'");
    ($h, $n);
}

# The pool's limits as lmtp_pool_options' fields: a value given as 0 stands for "none" where
# liblmtp has a flag for it, and 0 nowhere else.
sub _pool_options {
    my ($type, $arg) = @_;
    my %po;
    my $flags = $arg->{ResendUnknown} ? POOL_RESEND_UNKNOWN : 0;
    foreach my $name (sort keys %POOL_OPTION) {
        my $v = $arg->{$name};
        next unless defined $v;
        my ($field, $kind, $none) = @{ $POOL_OPTION{$name} };
        my $n;
        if ($kind eq 'count') {
            $v =~ /^\s*(\d+)\s*$/ && $1 <= 4294967295
                or Carp::croak("$type->new: $name must be a whole number, not '$v'");
            $n = $1 + 0;
        }
        else {
            $v =~ /^\s*(\d+(?:\.\d*)?|\.\d+)\s*$/ && $1 * 1000 <= 4294967295
                or Carp::croak("$type->new: $name must be a number of seconds, not '$v'");
            $n = int($1 * 1000 + 0.5);
            $n = 1 if !$n && $1 > 0;    # a delay rounds up to 1 ms, never to "the default"
        }
        if ($n == 0) {
            if ($name eq 'RetryDelay') {
                $n = 1;    # no delay to speak of (0 would mean liblmtp's default)
            }
            else {
                defined $none or Carp::croak("$type->new: $name must be at least 1");
                $flags |= $none;
                next;
            }
        }
        $po{$field} = $n;
    }
    my ($min, $max) = ($po{retry_delay_ms} || 1000, $po{retry_delay_max_ms} || 60000);
    $max >= $min or Carp::croak("$type->new: RetryDelayMax (" . $max / 1000 . " s) is less than RetryDelay ("
                                . $min / 1000 . " s)");
    $po{flags} = $flags;
    \%po;
}

# The servers, in the order they are tried, as given (without their ports).
sub hosts {
    my $self = shift;
    @{ ${*$self}{net_lmtp_servers} };
}

# Delivers the messages over the pool's connections and returns what Net::LMTP's deliver_many
# returns for them: per message, in the order given, an array ref of its results; each
# recipient's hash also has `attempts`.
sub deliver_many {
    my ($self, @messages) = @_;
    ref $self or Carp::croak('usage: $pool->deliver_many([FROM, [TO, ...], DATA], ...)');
    my $batch = $self->_messages('$pool', @messages) or return;
    my @batch = @$batch;
    my $xs = ${*$self}{net_lmtp_pool};
    my ($st, @done) = $xs->deliver($batch);
    Carp::croak(ref($self) . '::deliver_many: ' . $xs->errmsg) if $st;    # cannot happen with servers given
    my (@results, @errors, $failed);
    for my $i (0 .. $#batch) {
        my ($mst, $why, $res) = $done[$i] ? @{ $done[$i] } : (-1, 'liblmtp gave no outcome for this message', []);
        my $name = Net::LMTP::_status_name($mst);
        if ($name ne 'OK' && !@$res && !$REFUSED_HERE{$name}) {
            $res = [map { _unknown($_) } @{ $batch[$i][1] }];
        }
        for my $r (@$res) {
            $r->{status} = 'unknown' if $r->{status} eq 'pending';    # given up: never sent
        }
        push @results, $res;
        push @errors, $name eq 'OK' ? '' : $why;
        $failed = [$name, $why] if $name ne 'OK' && !$failed;
    }
    ${*$self}{net_lmtp_errors} = \@errors;
    if ($failed) {
        Net::LMTP::_set_failure($self, @$failed);
    }
    else {
        $self->set_status(250, '[' . ref($self) . '] every message has its verdicts');
    }
    @results;
}

# A recipient of a message nothing of which was sent, as Net::LMTP reports one.
sub _unknown {
    { address => $_[0], status => 'unknown', stage => 'none', code => 0, enhanced => '', text => '',
      rcpt_code => 0, rcpt_text => '', attempts => 0 };
}

# Per message of the last deliver_many, in order: "" when every recipient got a verdict, else
# liblmtp's words about what kept it from being sent.
sub errors {
    my $self = shift;
    @{ ${*$self}{net_lmtp_errors} || [] };
}

# The words of the first message's failure in the last deliver_many ("" when none failed).
sub error {
    my ($first) = grep { length } $_[0]->errors;
    defined $first ? $first : '';
}

1;

__END__

=head1 NAME

Net::LMTP::Pool - many messages over a pool of LMTP connections, retried and in order

=head1 SYNOPSIS

    use Net::LMTP::Pool;

    my $pool = Net::LMTP::Pool->new('/run/dovecot/lmtp', Connections => 8, Retries => 3);
    my @results = $pool->deliver_many(
        ['sender@example.org', ['alice@example.org', 'bob@example.org'], $message1],
        ['sender@example.org', ['carol@example.org'], $message2],
    );
    for my $i (0 .. $#results) {
        for my $r (@{ $results[$i] }) {
            printf "message %d, %s: %s %d %s (%d attempts)\n",
                $i, $r->{address}, $r->{status}, $r->{code}, $r->{text}, $r->{attempts};
        }
    }

=head1 DESCRIPTION

A pool delivers messages over up to C<Connections> connections at once, each
message in a transaction of its own, and gives for each message what
L<Net::LMTP>'s C<deliver_many> gives: the results of every recipient, in the
order of the messages given, whatever the order they finished in. The pool is
liblmtp's (C<lmtp_pool_*>): its rules are those of liblmtp's C<lmtp.h>, the
main ones being these.

=over

=item *

Connections open as messages wait for one, up to C<Connections>; each
carries one message at a time, so a connection that breaks leaves at most one
message uncertain. A connection ends with QUIT after
C<MaxMessagesPerConnection> messages, once it is C<MaxConnectionAge> old, or
after C<IdleTimeout> without work.

=item *

A recipient refused with 4xx (at RCPT or after the message; or the whole
message at MAIL or DATA) is sent again, up to C<Retries> times, after
C<RetryDelay> doubled at each re-send (at most C<RetryDelayMax>), in a new
transaction with only the recipients that got the 4xx. When the retries are
spent it keeps its last 4xx (C<tempfail>). 2xx and 5xx are final.

=item *

A recipient whose message's end went out before its connection broke, and
whose verdict never came, is C<unknown> (the server may have delivered it) and
is never sent again, unless C<ResendUnknown> (which may deliver twice). A
message whose connection broke before its end is sent again at once (the
server cannot have it); one that breaks C<Retries> + 1 connections in a row
before its end is given up: its recipients are C<unknown>.

=item *

Servers are tried in the order given; one that cannot be connected (or set
up) is skipped for a while and the next tried. When none can be connected
C<Retries> + 1 rounds in a row, the messages waiting are given up: nothing of
them was sent, every recipient is C<unknown> (as Net::LMTP reports the
messages a broken connection never reached) and C<errors> says why.

=item *

At most C<MailboxConcurrency> messages are in flight at once to one
address (Dovecot's C<lmtp_user_concurrency_limit>); later messages may pass
one that waits.

=back

=head1 METHODS

=over

=item new(HOST, OPTIONS)

=item new(Hosts => [HOST, ...], OPTIONS)

Makes a pool; nothing is connected until C<deliver_many>. HOST is a name, an
address, C<host:port>, C<[IPv6 address]:port> or a unix socket path (starting
with C</>), or an array ref of them; C<Hosts> adds more. They are tried in
order. Bad arguments croak; like C<Net::LMTP-E<gt>new>, an unusable C<Hello>
returns undef with the reason in C<$@>.

The options of each connection are C<Net::LMTP-E<gt>new>'s: C<Hello>,
C<Timeout> (seconds, per reply), C<Debug> (the dialogue of every connection on
STDERR, lines from different connections interleaved), C<LocalAddr>,
C<LocalPort>, C<SSL> and the C<SSL_*> options, C<StrictReplies>,
C<ExactAddresses>, C<AuthAllowPlaintext>; and, since a pool's connections are
not driven command by command:

=over

=item Port

The port of the hosts given without one (a number, a service name or
C<lmtp(24)>); 24 by default.

=item STARTTLS

True: every connection starts TLS with STARTTLS after LHLO, and fails if the
server does not offer it; C<'opportunistic'>: when the server offers it. The
C<SSL_*> options apply.

=item Auth

C<[USER, PASSWORD (, MECHANISM)]> or an Authen::SASL object, as C<auth>
takes them: every connection authenticates after LHLO (and STARTTLS).

=back

The pool's own options (a limit given as 0 means none, where it can):

=over

=item Connections

Connections at most (4 by default; at least 1).

=item Retries

Re-sends after a 4xx (3 by default; 0: none).

=item RetryDelay

Seconds before the first re-send, doubling at each (1 by default).

=item RetryDelayMax

The longest delay between re-sends, in seconds (60 by default).

=item MaxMessagesPerConnection

Messages per connection before it ends (100 by default; 0: no limit).

=item MaxConnectionAge

Seconds a connection lives before it ends after its message (300 by default;
0: no limit).

=item IdleTimeout

Seconds an idle connection stays open (10 by default; 0: until the server
closes it).

=item MailboxConcurrency

Messages in flight at once to one address (2 by default; 0: no limit).

=item ResendUnknown

True: send again the recipients C<unknown> after a break (this may deliver a
message twice); off by default.

=back

=item deliver_many([FROM, [TO...], DATA], ...)

Delivers the messages and returns what C<Net::LMTP>'s C<deliver_many> returns
for them: per message, in the order given, an array ref of its recipients'
results (hashes with C<address>, C<status> (C<ok>, C<tempfail>, C<permfail>,
C<unknown>), C<stage>, C<code>, C<enhanced>, C<text>, C<rcpt_code>,
C<rcpt_text>), and also C<attempts>: how many transactions included that
recipient (0 for one never sent). A message refused before anything was sent
(a NUL byte in it, over the server's SIZE) has no results, as in Net::LMTP; a
message that could not be sent at all has every recipient C<unknown>. Each
recipient's final verdict is the last reply it got. Afterwards C<ok> is true
when every message had a verdict for each recipient; otherwise C<code> and
C<message> describe the first message that did not, as Net::LMTP reports a
failure (421 and C<[Net::LMTP::Pool] Connection closed: ...>), and C<errors>
tells each message's story.

=item errors

Per message of the last C<deliver_many>, in order: C<""> when every recipient
got a verdict, else liblmtp's words about what kept the message from being
sent (no server could be connected, the connection broke).

=item error

The first of C<errors> that is not empty (C<""> when none).

=item hosts

The hosts, in the order they are tried, as given.

=item code

=item message

=item status

=item ok

=item set_status(CODE, MESSAGE)

The outcome of the last C<deliver_many>, as Net::LMTP's methods of those
names give the last reply: C<ok> true when every message got its verdicts
(250).

=back

=head1 SEE ALSO

L<Net::LMTP>; liblmtp's C<lmtp.h> (the delivery pool, rules P1-P9).

=head1 COPYRIGHT AND LICENSE

Copyright (c) 2026 The liblmtp authors.

Net::LMTP::Pool is free software under the MIT license: see the LICENSE file
that comes with it.

=cut
