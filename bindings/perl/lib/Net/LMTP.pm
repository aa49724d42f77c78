package Net::LMTP;

# A drop-in Net::LMTP over liblmtp: the same methods, arguments and return
# values as the Net::SMTP-based Net::LMTP, and every recipient's own reply
# after the message. The protocol is spoken by liblmtp; this file decides
# what a Perl caller sees.

use strict;
use warnings;
use Carp ();
use Symbol ();
use XSLoader;

our $VERSION = '1.002';
XSLoader::load('Net::LMTP', $VERSION);

# Net::Cmd's reply classes, as returned by response() and status().
use constant {
    CMD_INFO    => 1,
    CMD_OK      => 2,
    CMD_MORE    => 3,
    CMD_REJECT  => 4,
    CMD_ERROR   => 5,
    CMD_PENDING => 0,
};
use constant DEF_REPLY_CODE => 421;

use Exporter ();
our @ISA       = ('Exporter');
our @EXPORT_OK = qw(CMD_INFO CMD_OK CMD_MORE CMD_REJECT CMD_ERROR CMD_PENDING);

# The statuses of liblmtp (lmtp_status), by name (OK, TIMEOUT, REJECTED...), from its one
# status table; and for a refusal made here, before anything was sent, the code a server would
# have used for it, so that code/status/ok read as scripts expect.
my (%STATUS, %LOCAL_CODE);
for (my $st = 0; defined(my $name = Net::LMTP::XS::status_name($st)); $st++) {
    $STATUS{ uc $name } = $st;
    my $code = Net::LMTP::XS::status_reply_code($st);
    $LOCAL_CODE{ uc $name } = $code if $code;
}
my %NAME = reverse %STATUS;

# lmtp_options flags (lmtp.h).
use constant {
    OPT_IMPLICIT_TLS         => 4,
    OPT_TLS_INSECURE         => 8,
    OPT_AUTH_ALLOW_PLAINTEXT => 16,
    OPT_STRICT_REPLIES       => 32,
};
# lmtp_reply_class's answer for a 2xx reply (lmtp.h's LMTP_REPLY_COMPLETION).
use constant REPLY_COMPLETION => 2;

# The LHLO name when none is given: this host's fully qualified name, as
# Net::LMTP 0.02 sent it (Net::Domain's hostfqdn).
sub _default_hello {
    my $name = eval { require Net::Domain; Net::Domain::hostfqdn() };
    return defined $name && $name =~ /\A[\x21-\x7e]+\z/ ? $name : 'localhost.localdomain';
}

my %class_debug;    # Net::LMTP->debug(N): the default for new objects
my %version_shown;  # Net::Cmd prints the module version once per class

sub CLONE_SKIP { 1 }    # a handle belongs to the thread that made it

# ---------------------------------------------------------------------------
# construction

sub new {
    my $self = shift;
    my $type = ref($self) || $self;
    @_ >= 2 or Carp::croak('usage: Net::LMTP->new(HOST, PORT [, OPTIONS])');
    my $host = shift;
    my $port = shift;
    @_ % 2 == 0 or Carp::croak('Net::LMTP->new: OPTIONS must be key => value pairs');
    my %arg = @_;

    my $port_number = _port_number($port);
    unless (defined $port_number) {
        $@ = "$type: unknown port '$port'";
        return;
    }
    my $conn = _connection_options($type, \%arg) or return;
    my $obj = _object($type, \%arg);
    ${*$obj}{net_lmtp_timeout} = $conn->{timeout};
    my $hello = $conn->{create}[1];
    my $xs = Net::LMTP::XS->create(@{ $conn->{create} });
    ${*$obj}{net_lmtp_xs} = $xs;
    if (my $st = $xs->set_tls(@{ $conn->{tls} })) {    # SSL options that cannot be used
        $@ = "$type: " . $xs->errmsg;
        return;
    }
    $obj->debug(exists $arg{Debug} ? $arg{Debug} : undef);

    my @hosts = ref($host) eq 'ARRAY' ? @$host : ($host);
    my $err = "$type: no host given";
    foreach my $h (@hosts) {
        next unless defined $h && length $h;
        my $st = $xs->connect($h, $port_number);
        if ($st == 0) {
            ${*$obj}{net_lmtp_host} = $h;
            $obj->_take_reply;
            my ($first) = split /\n/, $xs->banner;    # as Net::SMTP: the first line
            ${*$obj}{net_lmtp_banner} = (defined $first ? $first : '') . "\n";
            (${*$obj}{net_lmtp_domain}) = ${*$obj}{net_lmtp_banner} =~ /\A\s*(\S+)/;
            ${*$obj}{net_lmtp_hello_domain} = $hello;
            return $obj;
        }
        $obj->_status($st);
        my $name = $NAME{$st} || '';
        if ($name eq 'REJECTED') {    # a refused banner or LHLO, as Net::SMTP says it
            $err = "$type: " . $obj->code . " " . $obj->message;
        }
        elsif ($name =~ /^(?:TIMEOUT|CLOSED|PROTOCOL|IO)$/ && $xs->errmsg !~ /^cannot connect/) {
            # Connected, then the banner or LHLO never came right: Net::Cmd's words, then ours.
            $err = "$type: " . $obj->code . " " . $obj->message . " (" . $xs->errmsg . ")";
        }
        else {
            $err = "$type: " . $xs->errmsg;
        }
    }
    $@ = $err;
    return;
}

# The object of new (and of Net::LMTP::Pool->new, which shares the Net::Cmd view of replies):
# a glob, as Net::Cmd's objects are.
sub _object {
    my ($type, $arg) = @_;
    my $obj = Symbol::gensym();
    bless $obj, $type;
    ${*$obj}{net_lmtp_arg} = $arg;
    ${*$obj}{net_lmtp_exact_addr} = $arg->{ExactAddresses};
    $obj;
}

# The options of new that make each connection (Hello, Timeout, LocalAddr, LocalPort, SSL and the
# SSL_* options, StrictReplies), as liblmtp takes them; Net::LMTP::Pool->new takes the same.
# Returns { timeout => SECONDS, create => [Net::LMTP::XS->create's arguments], tls => [set_tls's] },
# or nothing with the reason in $@; croaks on a wide character.
sub _connection_options {
    my ($type, $arg) = @_;
    my $timeout = defined $arg->{Timeout} ? $arg->{Timeout} : Net::LMTP::XS::default_timeout_ms() / 1000;
    my ($local_addr, $local_port) = ($arg->{LocalAddr}, $arg->{LocalPort});
    if (defined $local_addr && !defined $local_port && $local_addr =~ /^(.*):(\d+)$/ && $1 !~ /:/) {
        ($local_addr, $local_port) = ($1, $2);
    }
    my $hello = $arg->{Hello} || _default_hello();
    utf8::downgrade($hello, 1) or Carp::croak("$type->new: wide character in Hello; encode it to bytes first");
    if ($hello =~ /[\0\r\n]/) {
        $@ = "$type: Hello contains a line break or a NUL byte";
        return;
    }
    my $flags = ($arg->{SSL} ? OPT_IMPLICIT_TLS : 0) | ($arg->{StrictReplies} ? OPT_STRICT_REPLIES : 0);
    return { timeout => $timeout, create => [_timeout_ms($timeout), $hello, $local_addr, $local_port || 0, $flags],
      tls => [_tls_options($arg)] };
}

# IO::Socket::SSL's arguments, as Net::SMTP users pass them, for liblmtp's TLS: set_tls's arguments.
sub _tls_options {
    my $arg = shift;
    my $flags = (defined $arg->{SSL_verify_mode} && !$arg->{SSL_verify_mode}) ? OPT_TLS_INSECURE : 0;
    $flags |= OPT_IMPLICIT_TLS if $arg->{SSL};
    # TLS 1.2 at least in any case; 1.3 when SSL_version asks for it alone or excludes 1.2.
    my $v = defined $arg->{SSL_version} ? $arg->{SSL_version} : '';
    my $min = ($v =~ /^\s*TLSv1[._]3\s*$/ || $v =~ /!TLSv1[._]2/) ? 0x0304 : 0;
    ($flags, $arg->{SSL_ca_file}, $arg->{SSL_ca_path}, $arg->{SSL_cert_file}, $arg->{SSL_key_file},
     defined $arg->{SSL_hostname} ? $arg->{SSL_hostname} : $arg->{SSL_verifycn_name}, $min);
}

sub _port_number {
    my $port = shift;
    return 0 unless defined $port;    # a unix socket path needs none
    return $port + 0 if $port =~ /^\d+$/;
    return $1 + 0 if $port =~ /\((\d+)\)\s*$/;    # IO::Socket's "lmtp(24)"
    my $n = (getservbyname($port, 'tcp'))[2];
    return $n;
}

sub _timeout_ms {
    my $t = shift;
    # Timeout => 0 means "wait as long as it takes" in IO::Socket; liblmtp keeps a
    # deadline on every wait, so that becomes the longest one it can hold.
    return 4294967295 if !$t || $t * 1000 > 4294967295;
    my $ms = int($t * 1000 + 0.5);
    return $ms > 0 ? $ms : 1;
}

# ---------------------------------------------------------------------------
# Net::Cmd's view of the last reply: code, message, status, ok

sub set_status {
    @_ == 3 or Carp::croak('usage: $obj->set_status($code, $resp)');
    my ($self, $code, $resp) = @_;
    $resp = defined $resp ? [$resp] : [] unless ref $resp;
    ${*$self}{net_cmd_code} = $code;
    ${*$self}{net_cmd_resp} = $resp;
    1;
}

sub code {
    @_ == 1 or Carp::croak('usage: $obj->code()');
    my $self = shift;
    ${*$self}{net_cmd_code} = DEF_REPLY_CODE unless exists ${*$self}{net_cmd_code};
    ${*$self}{net_cmd_code};
}

sub message {
    @_ == 1 or Carp::croak('usage: $obj->message()');
    my $self = shift;
    my $resp = ${*$self}{net_cmd_resp} || [];
    wantarray ? @$resp : join('', @$resp);
}

sub status {
    @_ == 1 or Carp::croak('usage: $obj->status()');
    my $self = shift;
    substr($self->code, 0, 1);
}

sub ok {
    @_ == 1 or Carp::croak('usage: $obj->ok()');
    my $code = $_[0]->code;
    0 < $code && $code < 400;
}

# The library's own words about the last failure ("" after a success).
sub error {
    my $self = shift;
    my $xs = ${*$self}{net_lmtp_xs} or return '';
    $xs->errmsg;
}

# Records the reply the library just read as the last reply.
sub _take_reply {
    my $self = shift;
    my $xs = ${*$self}{net_lmtp_xs};
    ${*$self}{net_cmd_code} = $xs->code;
    ${*$self}{net_cmd_resp} = [map { "$_\n" } $xs->message_lines];
}

# After a call that returned status $st: sets code/message the way Net::Cmd
# would have them, and returns true when the call succeeded.
sub _status {
    my ($self, $st) = @_;
    my $xs   = ${*$self}{net_lmtp_xs};
    my $pkg  = ref $self;
    my $name = $NAME{$st} || 'INTERNAL';
    if ($name eq 'OK' || (($name eq 'REJECTED' || $name eq 'AUTH') && $xs->code)) {
        $self->_take_reply;
        return $name eq 'OK';
    }
    $self->_set_failure($name, $xs->errmsg);
    if ($self->debug && $name ne 'REJECTED') {
        Carp::carp("$pkg: " . $xs->errmsg);
    }
    return 0;
}

# Sets code and message for a failure of status NAME (no reply to take) with the library's
# words WHY, as Net::Cmd reports it: 421 and "[PKG] Timeout" or "[PKG] Connection closed: WHY",
# or for a refusal made here the code a server would have used.
sub _set_failure {
    my ($self, $name, $why) = @_;
    my $pkg = ref $self;
    if ($name eq 'TIMEOUT') {
        $self->set_status(DEF_REPLY_CODE, "[$pkg] Timeout");
    }
    elsif (my $code = $LOCAL_CODE{$name}) {
        $self->set_status($code, "[$pkg] $why");
    }
    else {
        $self->set_status(DEF_REPLY_CODE, "[$pkg] Connection closed: $why");
    }
}

# The name of liblmtp status ST (OK, TIMEOUT, REJECTED...), INTERNAL for one it does not know.
sub _status_name { $NAME{ $_[0] } || 'INTERNAL' }

# Checks a string argument: bytes only (Perl's wide characters cannot go on
# the wire), and no NUL (C strings would silently cut it).
sub _bytes {
    my ($self, $what, $value) = @_;
    return $value unless defined $value;
    my $copy = "$value";
    utf8::downgrade($copy, 1)
        or Carp::croak(ref($self) . "::$what: wide character in '$value'; encode it to bytes first");
    if (index($copy, "\0") >= 0) {
        $self->set_status($LOCAL_CODE{BAD_INPUT}, '[' . ref($self) . "] $what contains a NUL byte");
        return;
    }
    $copy;
}

# Net::SMTP's address rules: the inside of the first <...> if there is one,
# else the trimmed text (with ExactAddresses, the inside of a whole "<...>").
# liblmtp puts the brackets back; results show the address this way.
sub _addr {
    my ($self, $addr) = @_;
    $addr = '' unless defined $addr;
    if (${*$self}{net_lmtp_exact_addr}) {
        return $1 if $addr =~ /^\s*<(.*)>\s*$/s;
    }
    else {
        return $1 if $addr =~ /<([^>]*)>/;
        $addr =~ s/^\s+|\s+$//sg;
    }
    $addr;
}

# ---------------------------------------------------------------------------
# information

sub banner { my $self = shift; ${*$self}{net_lmtp_banner} || undef }
sub domain { my $self = shift; ${*$self}{net_lmtp_domain} || undef }
sub host   { my $self = shift; ${*$self}{net_lmtp_host} }

# The parameters of a service extension from the LHLO reply ("" when it has
# none), or undef when it was not offered (then the optional code and
# message become the last reply, as in Net::SMTP). liblmtp reads the reply.
sub supports {
    my $self = shift;
    my $cmd  = uc shift;
    my $params = ${*$self}{net_lmtp_xs}->capability($cmd);
    return $params if defined $params;
    $self->set_status(@_) if @_;
    return;
}

sub timeout {
    my $self = shift;
    if (@_) {
        my $t = shift;
        ${*$self}{net_lmtp_timeout} = $t;
        ${*$self}{net_lmtp_xs}->set_timeout(_timeout_ms($t));
    }
    ${*$self}{net_lmtp_timeout};
}

# Debug: 1 prints the dialogue on STDERR as Net::Cmd does. As a class method
# it sets the default for objects made afterwards.
sub debug {
    @_ == 1 or @_ == 2 or Carp::croak('usage: $obj->debug([$level])');
    my ($self, $level) = @_;
    my $pkg = ref($self) || $self;
    my $old = ref($self) ? (${*$self}{net_cmd_debug} || 0) : ($class_debug{$pkg} || 0);
    return $old unless @_ == 2;
    $level = $class_debug{$pkg} || 0 unless defined $level;
    if (!ref $self) {
        $class_debug{$pkg} = $level;
        return $old;
    }
    _show_versions($pkg) if $level;
    ${*$self}{net_cmd_debug} = $level;
    ${*$self}{net_lmtp_xs}->set_debug($level ? "$self" : undef);
    $old;
}

# The first Debug lines of a class, once: its version and liblmtp's, as Net::Cmd prints them.
sub _show_versions {
    my $pkg = shift;
    return if $version_shown{$pkg}++;
    no strict 'refs';
    print STDERR "$pkg>>> $pkg(" . (${"${pkg}::VERSION"} || '') . ")\n";
    print STDERR "$pkg>>>   liblmtp(" . Net::LMTP::XS::library_version() . ")\n";
}

# ---------------------------------------------------------------------------
# commands

# As in Net::Cmd, a command given while a message is still open ends the
# message first (its final dot is sent and the replies are read).
sub _end_data {
    my $self = shift;
    $self->dataend if ${*$self}{net_lmtp_in_data};
}

sub hello {
    my $self   = shift;
    my $domain = shift || _default_hello();
    $self->_end_data;
    defined($domain = $self->_bytes('hello', $domain)) or return;
    $self->_status(${*$self}{net_lmtp_xs}->hello($domain)) or return;
    ${*$self}{net_lmtp_hello_domain} = $domain;
    my @msg = $self->message;
    $msg[0] =~ /\A\s*(\S+)/;
    return ($1 || ' ');
}

sub etrn {
    my $self = shift;
    defined($self->supports('ETRN', 500, ["Command unknown: 'ETRN'"])) or return 0;
    $self->_simple('ETRN', join(' ', @_));
}

# Net::SMTP's options, each as its parameter on the wire (Envelope as the raw
# ENVID it is); liblmtp parses them and says whether the server offered what
# each needs. One it did not is left out with Net::SMTP's warning: its words,
# the extension liblmtp names unless Net::SMTP used words of its own.
sub mail {
    my $self = shift;
    $self->_end_data;
    my $addr = $self->_bytes('mail', $self->_addr(shift));
    defined $addr or return 0;
    my %opt = @_;
    my (@words, $envelope);
    my $pkg = ref($self) . '::mail';
    my $xs  = ${*$self}{net_lmtp_xs};
    my $st  = 0;
    # True when the option may go; false when it is left out (warned) or, $st set, unusable.
    my $take = sub {
        my ($wording, $word, $raw) = @_;
        for my $s ($word, $raw) {
            next if !defined $s || defined($s = $self->_bytes('mail', $s));
            $st = -1;    # a NUL byte: _bytes set the status
            return 0;
        }
        my ($check, $missing) = $xs->mail_check($word, $raw);
        return 1 if $check == $STATUS{OK};
        if (defined $missing) {
            Carp::carp("$pkg: " . (defined $wording ? $wording : "$missing option") . ' not supported by host');
        }
        else {
            $st = $check;
        }
        return 0;
    };
    if (%opt) {
        my $v;
        if (defined($v = delete $opt{Size})) {
            my $w = sprintf('SIZE=%d', $v + 0);
            push @words, $w if $take->(undef, $w);
        }
        if (defined($v = delete $opt{Return})) {
            my $w = 'RET=' . (uc($v) eq 'FULL' ? 'FULL' : 'HDRS');
            push @words, $w if $take->(undef, $w);
        }
        if (defined($v = delete $opt{Bits})) {
            my ($w, $wording) = $v eq '8'      ? ('BODY=8BITMIME',   '8BITMIME option')
                              : $v eq 'binary' ? ('BODY=BINARYMIME', 'BINARYMIME option')
                              :                  ('BODY=7BIT',       '8BITMIME and BINARYMIME options');
            push @words, $w if $take->($wording, $w);
        }
        if (defined($v = delete $opt{Transaction})) {
            my $w = 'TRANSID=<' . $self->_addr($v) . '>';
            push @words, $w if $take->(undef, $w);
        }
        if (defined($v = delete $opt{Envelope})) {
            $envelope = $v if $take->(undef, undef, $v);
        }
        if (defined($v = delete $opt{ENVID})) {    # already xtext, as RFC 3461 writes it
            my $w = "ENVID=$v";
            if ($take->(undef, $w)) {
                push @words, $w;
                $envelope = undef;
            }
        }
        if (exists $opt{AUTH}) {
            my $v = delete $opt{AUTH};
            my $w = 'AUTH=' . (defined $v && length $v ? $v : '<>');
            push @words, $w if $take->(undef, $w);
        }
        if (defined($v = delete $opt{XVERP})) {
            push @words, 'XVERP' if $take->(undef, 'XVERP');
        }
        Carp::carp("$pkg: unknown option(s) " . join(' ', keys %opt) . ' - ignored') if %opt;
    }
    return 0 if $st < 0;
    if ($st) {    # an option liblmtp refused: nothing is sent
        $self->_status($st);
        return 0;
    }
    $self->_status($xs->mail('MAIL', $addr, @words ? join(' ', @words) : undef, $envelope, 0));
}

sub _old_mail {
    my ($self, $verb, $addr) = @_;
    $self->_end_data;
    defined($addr = $self->_bytes(lc $verb, $self->_addr($addr))) or return 0;
    $self->_status(${*$self}{net_lmtp_xs}->mail($verb, $addr, undef, undef, 0));
}
sub send          { $_[0]->_old_mail('SEND', $_[1]) }
sub send_or_mail  { $_[0]->_old_mail('SOML', $_[1]) }
sub send_and_mail { $_[0]->_old_mail('SAML', $_[1]) }

# Notify and ORcpt as their parameters on the wire (an ORcpt without ";" as
# the raw rfc822 address it is); liblmtp knows NOTIFY's keywords and whether
# the server offers DSN.
sub recipient {
    my $self = shift;
    $self->_end_data;
    my (@words, $orcpt, $skip_bad);
    my $pkg = ref($self) . '::recipient';
    my $xs  = ${*$self}{net_lmtp_xs};
    my $st  = 0;
    if (@_ && ref $_[-1]) {
        my %opt = %{pop @_};
        $skip_bad = delete $opt{SkipBad};
        my $v;
        if (defined($v = delete $opt{Notify})) {
            my (@known, @unknown, $missing);
            foreach my $w (ref $v ? @$v : split /\s*,\s*/, $v) {
                my $b = $self->_bytes('recipient', "NOTIFY=$w");
                defined $b or return $skip_bad ? () : 0;
                my ($check, $lacking) = $xs->rcpt_check($b, undef);
                if ($check == $STATUS{OK} || defined $lacking) {
                    push @known, $w;
                    $missing = $lacking if defined $lacking;
                }
                else {
                    push @unknown, $w;
                }
            }
            if (defined $missing) {
                Carp::carp("$pkg: $missing option not supported by host");
            }
            else {
                Carp::carp("$pkg: unknown Notify value '$_' - ignored") for @unknown;
                push @words, 'NOTIFY=' . join(',', @known) if @known;
            }
        }
        if (defined($v = delete $opt{ORcpt})) {    # "type;xtext", as RFC 3461 writes it
            my ($w, $raw) = $v =~ /;/ ? ("ORCPT=$v", undef) : (undef, $v);
            for my $s ($w, $raw) {
                next unless defined $s;
                defined($s = $self->_bytes('recipient', $s)) or return $skip_bad ? () : 0;
            }
            my ($check, $missing) = $xs->rcpt_check($w, $raw);
            if ($check == $STATUS{OK}) {
                push @words, $w if defined $w;
                $orcpt = $raw;
            }
            elsif (defined $missing) {
                Carp::carp("$pkg: $missing option not supported by host");
            }
            else {
                $st = $check;
            }
        }
        Carp::carp("$pkg: unknown option(s) " . join(' ', keys %opt) . ' - ignored') if %opt;
    }
    if ($st) {    # an option liblmtp refused: no address is tried
        $self->_status($st);
        return $skip_bad ? () : 0;
    }
    my $wire = @words ? join(' ', @words) : undef;
    my @ok;
    foreach my $addr (@_) {
        my $path = $self->_bytes('recipient', $self->_addr($addr));
        if (defined $path && $self->_status($xs->rcpt($path, $wire, $orcpt, 0))) {
            push @ok, $addr if $skip_bad;
        }
        elsif (!$skip_bad) {
            return 0;
        }
    }
    return $skip_bad ? @ok : 1;
}

BEGIN {
    no warnings 'once';
    *to  = \&recipient;
    *cc  = \&recipient;
    *bcc = \&recipient;
}

sub _simple {
    my ($self, $verb, $arg) = @_;
    $self->_end_data unless $verb eq 'DATA';
    if (defined $arg) {
        defined($arg = $self->_bytes(lc $verb, $arg)) or return 0;
    }
    $self->_status(${*$self}{net_lmtp_xs}->simple($verb, $arg));
}

sub reset { $_[0]->_simple('RSET') }

sub noop { $_[0]->_simple('NOOP') }

sub verify { my $self = shift; $self->_simple('VRFY', join(' ', @_)) }

sub expand {
    my $self = shift;
    $self->_simple('EXPN', join(' ', @_)) ? ($self->message) : ();
}

sub help {
    my $self = shift;
    $self->_simple('HELP', @_ ? join(' ', @_) : undef) ? scalar $self->message : undef;
}

sub data {
    my $self = shift;
    my $ok = $self->_simple('DATA') && $self->datasend(@_);
    $ok && @_ ? $self->dataend : $ok;
}

sub datasend {
    my $self = shift;
    my $arr  = @_ == 1 && ref $_[0] ? $_[0] : \@_;
    # One scalar (a whole message, as old scripts give it) is taken as it is: no copy, no per-line
    # work here; the library makes its line ends CRLF, doubles leading dots and sends it in pieces.
    my $data = @$arr == 1 && defined $arr->[0] ? $arr->[0] : join('', @$arr);
    utf8::downgrade($data, 1)
        or Carp::croak(ref($self) . '::datasend: wide character in data; encode it to bytes first');
    my $xs = ${*$self}{net_lmtp_xs};
    return 0 unless $xs->is_connected;
    ${*$self}{net_lmtp_in_data} = 1;
    return 1 unless length $data;
    my $st = $xs->data_write($data);
    return 1 if $st == 0;
    $self->_status($st);
    return;
}

# Ends the message. Reads every recipient's reply (the session never falls
# behind); returns what Net::LMTP returned: whether the first one is 2xx.
# The others come from response(), one per call, and all from results().
sub dataend {
    my $self = shift;
    my $xs   = ${*$self}{net_lmtp_xs};
    return 0 unless $xs->is_connected;
    return 1 unless delete ${*$self}{net_lmtp_in_data};
    $self->_end_status($xs->simple('END', undef));
}

# The status of a call that ended a message: the first recipient's own
# verdict, even when the connection broke after it came (a verdict is never
# turned into a failure); 421 and "[Net::LMTP] Connection closed..." when it
# never came. response() then yields each further recipient.
my %BROKEN = map { $STATUS{$_} => 1 } qw(CLOSED IO TIMEOUT PROTOCOL TLS);

sub _end_status {
    my ($self, $st) = @_;
    my $xs = ${*$self}{net_lmtp_xs};
    if ($BROKEN{$st} && $xs->code) {
        $self->_take_reply;
        Carp::carp(ref($self) . ': ' . $xs->errmsg) if $self->debug;
    }
    else {
        $self->_status($st) or return 0;
    }
    $xs->reply_class == REPLY_COMPLETION;
}

# Each recipient's outcome in the current (or last) transaction, in RCPT
# order: hashes with address, status (ok, tempfail, permfail, pending,
# unknown), stage (rcpt, data, mail, none), code, enhanced, text,
# rcpt_code, rcpt_text.
sub results {
    my $self = shift;
    ${*$self}{net_lmtp_xs}->results;
}

# MAIL, RCPT for each recipient and the message in one pipelined exchange;
# returns the results as results() does (or an empty list if it broke).
sub deliver {
    my ($self, $from, $to, $data) = @_;
    ref $to eq 'ARRAY' or Carp::croak('usage: $lmtp->deliver(FROM, [TO, ...], DATA)');
    $self->_end_data;
    my $m = $self->_message('deliver', $from, $to, $data) or return;
    $self->_status(${*$self}{net_lmtp_xs}->deliver(@$m));
    $self->results;
}

# [FROM, [TO...], DATA] as bytes for the library, or undef (the status set)
# when an address cannot be sent.
sub _message {
    my ($self, $what, $from, $to, $data) = @_;
    $data = join('', @$data) if ref $data eq 'ARRAY';
    utf8::downgrade($data, 1)
        or Carp::croak(ref($self) . "::$what: wide character in data; encode it to bytes first");
    my @rcpts;
    foreach my $r (@$to) {
        # Printable ASCII without brackets or blanks: what _addr and _bytes give back unchanged.
        if (defined $r && !ref $r && $r =~ /\A[\x21-\x3b\x3d\x3f-\x7e]+\z/) {
            push @rcpts, "$r";
            next;
        }
        my $b = $self->_bytes($what, $self->_addr($r));
        return unless defined $b;
        push @rcpts, $b;
    }
    defined(my $f = $self->_bytes($what, $self->_addr($from))) or return;
    [$f, \@rcpts, $data];
}

# deliver_many's messages as _message makes them (an array ref), or undef (the status set) when
# an address cannot be sent; croaks when one is no [FROM, [TO...], DATA]. Net::LMTP::Pool's
# deliver_many takes them the same way ($who names the object in the usage message).
sub _messages {
    my ($self, $who, @messages) = @_;
    my @batch;
    foreach my $m (@messages) {
        ref $m eq 'ARRAY' && ref $m->[1] eq 'ARRAY'
            or Carp::croak("usage: $who->deliver_many([FROM, [TO, ...], DATA], ...)");
        my $one = $self->_message('deliver_many', @$m) or return;
        push @batch, $one;
    }
    \@batch;
}

# Many messages, each [FROM, [TO...], DATA], pipelined back to back over this
# connection; returns, per message, an array ref of its results (as deliver
# returns them). See the POD.
sub deliver_many {
    my ($self, @messages) = @_;
    $self->_end_data;
    my $batch = $self->_messages('$lmtp', @messages) or return;
    my ($st, @done) = ${*$self}{net_lmtp_xs}->deliver_batch($batch);
    $self->_status($st);
    map { $_->[2] } @done;
}

# STARTTLS, the handshake, and LHLO again (never EHLO). Takes IO::Socket::SSL's
# argument names (SSL_ca_file, SSL_ca_path, SSL_cert_file, SSL_key_file,
# SSL_hostname, SSL_verify_mode, SSL_version), added to those given to new.
# Returns what hello returns (the server's name), or undef.
sub starttls {
    my $self = shift;
    my %args = (%{ ${*$self}{net_lmtp_arg} || {} }, @_);
    $self->_end_data;
    my $xs = ${*$self}{net_lmtp_xs};
    if (my $st = $xs->set_tls(_tls_options(\%args))) {
        $self->_status($st);
        return;
    }
    $self->_status($xs->starttls) or return;
    my @msg = $self->message;
    $msg[0] =~ /\A\s*(\S+)/;
    return ($1 || ' ');
}

# Net::SMTP's auth(USER, PASS), or auth(Authen::SASL object). The mechanism is
# the strongest the server offers (SCRAM-SHA-256, then PLAIN or LOGIN), or the
# third argument. PLAIN and LOGIN are refused over unencrypted TCP (code 538)
# unless new() was given AuthAllowPlaintext => 1.
sub auth {
    my $self = shift;
    my ($username, $password, $mechanism) = _credentials(@_);
    $self->_end_data;
    # As Net::SMTP: no AUTH offered, nothing is sent.
    defined($self->supports('AUTH', 500, ["Command unknown: 'AUTH'"])) or return 0;
    defined($username = $self->_bytes('auth', $username)) or return 0;
    defined($password = $self->_bytes('auth', defined $password ? $password : '')) or return 0;
    my $flags = ${*$self}{net_lmtp_arg}{AuthAllowPlaintext} ? OPT_AUTH_ALLOW_PLAINTEXT : 0;
    $self->_status(${*$self}{net_lmtp_xs}->auth($username, $password, $mechanism, $flags));
}

# auth's arguments, (USER, PASSWORD [, MECHANISM]) or (Authen::SASL object [, MECHANISM]), as
# (USER, PASSWORD, MECHANISM); Net::LMTP::Pool's Auth option takes the same.
sub _credentials {
    my ($username, $password, $mechanism) = @_;
    if (ref $username && eval { $username->isa('Authen::SASL') }) {
        my $sasl = $username;
        my $cb = $sasl->{callback} || {};
        ($username, $password) = map { ref $_ eq 'CODE' ? $_->() : $_ } @{$cb}{qw(user pass)};
        $mechanism = $sasl->{mechanism} if !defined $mechanism && ($sasl->{mechanism} || '') =~ /^[-\w]+$/;
    }
    ($username, $password, $mechanism);
}

# BDAT (CHUNKING): the data is sent exactly as given, as Net::SMTP sends it.
# bdatlast returns whether the first recipient's reply is 2xx; response()
# then gives the others, as after dataend.
sub bdat     { $_[0]->_bdat($_[1], 0) }
sub bdatlast { $_[0]->_bdat($_[1], 1) }

sub _bdat {
    my ($self, $data, $last) = @_;
    unless (defined $self->supports('CHUNKING')) {
        Carp::carp(ref($self) . '::bdat: CHUNKING extension is not in use, call data instead');
        return 0;
    }
    $data = '' unless defined $data;
    utf8::downgrade($data, 1)
        or Carp::croak(ref($self) . '::bdat: wide character in data; encode it to bytes first');
    $self->_end_data;
    my $st = ${*$self}{net_lmtp_xs}->bdat($data, $last ? 1 : 0);
    return $self->_end_status($st) if $last;
    $self->_status($st) ? 1 : 0;
}

sub quit {
    my $self = shift;
    my $was = ${*$self}{net_lmtp_xs}->is_connected;
    $self->_simple('QUIT');
    $self->close;
    $was ? 1 : 0;    # as Net::SMTP's close after QUIT
}

sub close {
    my $self = shift;
    my $xs = ${*$self}{net_lmtp_xs} or return 0;
    delete ${*$self}{net_lmtp_in_data};
    my $was = $xs->is_connected;
    $xs->close;
    $was ? 1 : 0;
}

# Net::Cmd's raw interface: command() sends a line (arguments joined by
# spaces, newlines in them turned into spaces) and returns the object;
# response() reads the next reply owed and returns its class (CMD_OK...).
sub command {
    my $self = shift;
    my $xs = ${*$self}{net_lmtp_xs};
    unless ($xs->is_connected) {
        $self->set_status(DEF_REPLY_CODE, '[' . ref($self) . '] Connection closed');
        return $self;
    }
    $self->_end_data;
    if (@_) {
        my $line = join(' ', @_);
        $line =~ s/\r?\n\z//;    # the line end is ours to add
        $line =~ tr/\n/ /;        # as Net::Cmd: a newline inside becomes a space
        my $b = $self->_bytes('command', $line);
        $self->_status($xs->command($b)) if defined $b;
    }
    $self;
}

sub response {
    my $self = shift;
    my $st = ${*$self}{net_lmtp_xs}->simple('RESPONSE', undef);
    my $name = $NAME{$st} || '';
    $self->_status($st);
    return CMD_ERROR unless $name eq 'OK' || $name eq 'REJECTED';
    $self->status;
}

sub DESTROY {
    # The handle's own DESTROY frees it without sending anything, so an
    # object can be dropped in a forked child without touching the session.
}

1;

__END__

=head1 NAME

Net::LMTP - Local Mail Transfer Protocol client, with every recipient's reply

=head1 SYNOPSIS

    use Net::LMTP;

    my $lmtp = Net::LMTP->new('mailboxhost', 2003, Timeout => 60)
        or die "cannot connect: $@";
    $lmtp->mail('sender@example.org');
    $lmtp->to('alice@example.org', 'bob@example.org');
    $lmtp->data();
    $lmtp->datasend("To: alice\n\nA simple test message\n");
    $lmtp->dataend();                     # the first recipient's reply
    for my $r ($lmtp->results) {          # and everybody's
        printf "%s: %d %s %s\n", $r->{address}, $r->{code}, $r->{enhanced}, $r->{text};
    }
    $lmtp->quit;

=head1 DESCRIPTION

A drop-in replacement for the Net::SMTP-based Net::LMTP: the same methods,
options and return values, built on liblmtp. Unlike it, it reads the one reply
per recipient that an LMTP server sends after the message (RFC 2033), so the
session never falls a reply behind, and it tells each recipient's outcome.

HOST may also be a unix socket path (starting with C</>); PORT is then ignored
(pass 0). C<$@> holds the reason when C<new> fails. Without C<Hello>, LHLO
names this host by its fully qualified name (Net::Domain's C<hostfqdn>), as
Net::LMTP did; C<hello()> without a domain does the same.

Besides the options of Net::LMTP (C<Hello>, C<Timeout>, C<Debug>) and those of
Net::SMTP that make sense here (C<LocalAddr>, C<LocalPort>, C<SSL> and the
C<SSL_*> options, C<ExactAddresses>), C<new> takes C<AuthAllowPlaintext> (see
C<auth>) and C<StrictReplies> (see L</Servers that answer on one line per
recipient>).

=head1 METHODS

The methods of Net::LMTP and Net::Cmd, with their arguments and return values.
Unless said otherwise a method returns true on success and false on failure,
never dies because of what a server answered (only misuse croaks), and leaves
the reply in C<code> and C<message>. A command given while a message is still
open ends the message first, as in Net::Cmd.

Refusals made locally, before anything is sent (a parameter the server did not
offer, an address with a line break), set C<code> to what a server would have
answered (501, 555, 552...) and C<message> to "[Net::LMTP] reason".
Connection failures set 421 and "[Net::LMTP] Timeout" or "[Net::LMTP]
Connection closed", as Net::Cmd does.

=head2 Connecting

=over

=item new(HOST, PORT [, OPTIONS])

Connects, reads the greeting and sends LHLO. HOST is a name, an address, a
unix socket path (starting with C</>, PORT then 0) or an array ref of hosts
tried in order; PORT a number, a service name or IO::Socket's C<lmtp(24)>.
Returns the object, or undef with the reason in C<$@>. The options are those
listed in L</DESCRIPTION>; C<Timeout> is in seconds (120 by default; 0 waits
as long as it can).

=item hello([DOMAIN])

LHLO again, naming DOMAIN (this host's fully qualified name by default).
Returns the first word of the reply (the server's name), or false; C<supports>
then reports what this reply offers.

=item starttls([SSL OPTIONS])

STARTTLS, the TLS handshake and LHLO again (never EHLO). Takes IO::Socket::SSL's
argument names (C<SSL_ca_file>, C<SSL_ca_path>, C<SSL_cert_file>,
C<SSL_key_file>, C<SSL_hostname>, C<SSL_verify_mode>, C<SSL_version>), added to
those given to C<new>. The server's certificate is verified unless
C<SSL_verify_mode> is 0. Returns what C<hello> returns, or undef.

=item auth(USER, PASSWORD [, MECHANISM])

=item auth(SASL)

AUTH, as Net::SMTP's C<auth>; SASL is an Authen::SASL object whose callbacks
give the user and password. The mechanism is the strongest the server offers
(SCRAM-SHA-256, then PLAIN or LOGIN) unless one is named. PLAIN and LOGIN are
refused over an unencrypted TCP connection (code 538) unless C<new> was given
C<AuthAllowPlaintext =E<gt> 1>. Without AUTH in the LHLO reply nothing is sent
and it returns false with code 500.

=item quit

QUIT, then closes the connection. True if it was connected.

=item close

Closes the connection without QUIT. True if it was connected.

=back

=head2 What the server said about itself

=over

=item banner

The first line of the server's greeting, with its line end.

=item domain

The first word of the greeting: the server's name.

=item host

The host this object connected to (one of HOST, when it was a list).

=item supports(EXTENSION [, CODE, MESSAGE])

The parameters the LHLO reply gave EXTENSION (C<""> when it has none), or undef
when it was not offered; then CODE and MESSAGE, if given, become the last
reply, as in Net::SMTP.

=back

=head2 Settings

=over

=item timeout([SECONDS])

The timeout of every later wait, in seconds; sets it when given. Returns it.

=item debug([LEVEL])

With a true LEVEL, prints the dialogue on STDERR as Net::Cmd does (the
module's and liblmtp's versions first, then C<E<gt>E<gt>E<gt>> and
C<E<lt>E<lt>E<lt>> lines). As a class method it sets the default for objects
made afterwards. Returns the previous level.

=back

=head2 A transaction, command by command

=over

=item mail(ADDRESS [, OPTIONS])

MAIL FROM. The options are Net::SMTP's: C<Size>, C<Return>, C<Bits>,
C<Transaction>, C<Envelope>, C<ENVID>, C<AUTH>, C<XVERP>; one the server did not
offer is left out with a warning, as Net::SMTP does.

=item send(ADDRESS)

=item send_or_mail(ADDRESS)

=item send_and_mail(ADDRESS)

SEND FROM, SOML FROM and SAML FROM, as in Net::SMTP.

=item recipient(ADDRESS... [, { OPTIONS }])

RCPT TO for each address, in order; true when every one was accepted (it stops
at the first refused). The options are C<Notify> and C<ORcpt> (DSN), and
C<SkipBad>: then every address is tried and the accepted ones are returned.

=item to

=item cc

=item bcc

The same as C<recipient>.

=item data([DATA...])

DATA. With DATA, also sends it and ends the message: then it returns what
C<dataend> returns.

=item datasend(DATA...)

Sends part of the message: strings, or one array ref of strings. Line ends
become CRLF and leading dots are doubled, across calls. False when the
connection is gone.

=item dataend

Ends the message and reads every recipient's reply. Returns whether the first
recipient's reply is 2xx, as Net::LMTP did; each further call of C<response>
gives the next recipient's reply, and C<results> all of them.

=item bdat(DATA)

=item bdatlast(DATA)

BDAT and BDAT LAST (CHUNKING): DATA is sent exactly as given. C<bdatlast>
returns what C<dataend> returns. Without CHUNKING in the LHLO reply, nothing is
sent and they return false with a warning.

=item reset

RSET.

=item noop

NOOP.

=item etrn(ARGUMENTS)

ETRN, when the server offers it (else false, with code 500).

=item verify(ADDRESS)

VRFY.

=item expand(ADDRESS)

EXPN: the lines of the reply, or an empty list.

=item help([SUBJECT])

HELP: the text of the reply, or undef.

=back

=head2 Replies

=over

=item code

The three-digit code of the last reply (421 before any).

=item message

The text of the last reply: its lines in list context, joined in scalar
context, each with its line end.

=item status

The first digit of C<code>: the reply's class (C<CMD_OK>...).

=item ok

True when C<code> is below 400.

=item set_status(CODE, MESSAGE)

Sets the last reply, as Net::Cmd's C<set_status>; MESSAGE is a string or an
array ref of lines.

=item error

liblmtp's description of the last failure (C<""> after a success).

=item command(WORDS...)

Net::Cmd's raw interface: sends the words joined by spaces as one command line
(a newline inside becomes a space) and returns the object, so that
C<$lmtp-E<gt>command('NOOP')-E<gt>response> reads as in Net::Cmd.

=item response

Reads the next reply owed and returns its class (C<CMD_OK>...). After
C<dataend> each call gives the next recipient's reply, in RCPT order, as
scripts written for Net::LMTP read them.

=back

=head2 Every recipient's outcome

=over

=item results

Every recipient of the current or last transaction, in RCPT order, as hashes:
C<address>, C<status> (C<ok>, C<tempfail>, C<permfail>, C<pending>,
C<unknown>), C<stage> (C<rcpt>, C<data>, C<mail>, C<none>), C<code>,
C<enhanced>, C<text>, C<rcpt_code>, C<rcpt_text>.

=item deliver(FROM, [TO...], DATA)

The whole transaction in one pipelined exchange; returns C<results>.

=item deliver_many([FROM, [TO...], DATA], ...)

Many messages over this connection, each its own transaction, pipelined back
to back when the server offers PIPELINING: with CHUNKING many small messages
share each round trip; by DATA each costs one. Returns a list with, per
message in order, an array ref of its results (what C<deliver> returns). A
message the library refuses to send (a bad option, over the server's SIZE) has
no results and the others go on; when the connection breaks, the recipients
without a verdict are C<unknown>, the messages not sent have every recipient
C<unknown>, and C<code>/C<message> say why (C<ok> is then false).

=back

=head2 When the connection breaks

A verdict the server gave is never lost or turned into a failure. If the
connection breaks (closed, reset, timed out) after the message went out,
C<dataend> (and C<bdatlast>, and C<data(DATA)>) still returns the first
recipient's own verdict: true when the server answered it with 2xx, even though
the others never got theirs. Each later C<response> yields the next recipient:
its reply if it came (the class, as ever), else C<CMD_ERROR> with C<code> 421
and C<message> "[Net::LMTP] Connection closed: ..." (or "[Net::LMTP] Timeout"),
as Net::Cmd reports a connection that went away; such a recipient may or may
not have the message, so treat it as a temporary failure. When the first
recipient's reply never came, C<dataend> is false with that same 421.
C<results> says the same per recipient: C<ok>, C<tempfail>, C<permfail> for
those answered, C<unknown> for the others.

=head2 Servers that answer on one line per recipient

Net::Server::Mail::LMTP (the Perl server library) answers all the recipients
after the message at once, as one multi-line reply with a line per recipient
(C<250-Ok>, C<550-E<lt>addrE<gt> Failed>, C<250 Ok>). Such a reply is read as
each recipient's own verdict, in order, when there are two or more recipients,
it has exactly one line for each, and either its lines carry different codes
(which no conforming reply does) or the server's banner names
Net::Server::Mail. Any other multi-line reply is the first recipient's, as RFC
2033 says, so a conforming server is never misread. C<StrictReplies =E<gt> 1>
turns the recognition off.

=head1 EXPORTS

Nothing by default. On request, Net::Cmd's reply classes, as C<response> and
C<status> return them:

=over

=item CMD_INFO

1 (1xx)

=item CMD_OK

2 (2xx)

=item CMD_MORE

3 (3xx)

=item CMD_REJECT

4 (4xx)

=item CMD_ERROR

5 (5xx)

=item CMD_PENDING

0 (no reply yet)

=back

=head1 SEE ALSO

L<Net::SMTP>, L<Net::Cmd>; RFC 2033 (LMTP); liblmtp, L<https://github.com/liblmtp/liblmtp>.

=head1 COPYRIGHT AND LICENSE

Copyright (c) 2026 The liblmtp authors.

Net::LMTP is free software under the MIT license: see the LICENSE file that
comes with it.

=cut
