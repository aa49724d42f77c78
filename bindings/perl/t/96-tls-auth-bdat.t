# STARTTLS, AUTH and BDAT, as Net::SMTP offers them (starttls with
# IO::Socket::SSL's argument names, auth(USER, PASS), bdat/bdatlast), against
# the fake server with the test certificates of make-test-certs, and against a
# real Dovecot offering STARTTLS.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use MIME::Base64 qw(encode_base64);
use LMTPTest qw(:all);
use Net::LMTP qw(CMD_OK CMD_REJECT CMD_ERROR);

need_fake();
my $C = test_certs();
my $HELLO = default_lhlo();
my @TLS = ('--tls-cert', "$C/server.pem", '--tls-key', "$C/server.key");
my $USER = 'tester';
my $PW = 'Xq7-s3cret!pw';
my @AUTH = ('--auth-user', $USER, '--auth-password', $PW);

# The Debug output without the version lines, the object's address normalised.
sub debug_lines {
    my $out = shift;
    my @l = grep { !/^Net::LMTP>>> / } split /(?<=\n)/, $out;
    s/^Net::LMTP=GLOB\(0x[0-9a-f]+\)/OBJ/ for @l;
    \@l;
}

# Does a byte string occur in the text? (is/like would print the secret.)
sub hides {
    my ($text, $secret, $name) = @_;
    ok(index($text, $secret) < 0, $name);
}

# ---------------------------------------------------------------------------
# STARTTLS

subtest 'starttls with the test CA: LHLO again, STARTTLS gone, a delivery inside TLS' => sub {
    my $f = start_fake(@TLS, '--cap', 'CHUNKING', '--tls-verify-client', 'request', '--tls-client-ca', "$C/ca.pem");
    my ($l, $r, $before, $after, @res);
    my $out = capture_stderr {
        $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, Debug => 1) or die $@;
        $before = $l->supports('STARTTLS');
        $r = $l->starttls(SSL_ca_file => "$C/ca.pem", SSL_cert_file => "$C/client.pem",
                          SSL_key_file => "$C/client.key");
        $after = $l->supports('STARTTLS');
        $l->debug(0);
        @res = $l->deliver('sender@example.org', ['alice@example.org'], "Subject: inside TLS\n\nsecret body\n");
        ok($l->quit, 'quit');
    };
    is($r, 'fake.example', 'starttls returns the server name (as hello does)');
    is($l->code, 221, '(the last reply is QUIT\'s)');
    is($before, '', 'STARTTLS was offered before');
    is($after, undef, 'and is not offered after TLS');
    is(scalar(@res), 1, 'one result');
    is_deeply([@{ $res[0] }{qw(status code)}], ['ok', 250], 'delivered inside TLS');
    my $stats = $f->stop;
    is($stats->{TLS_SESSIONS}, 1, 'one TLS session');
    is($f->transcript,
       $HELLO . "STARTTLS\r\n" . $HELLO . "MAIL FROM:<sender\@example.org>\r\nRCPT TO:<alice\@example.org>\r\n"
         . "BDAT 36 LAST\r\nSubject: inside TLS\r\n\r\nsecret body\r\nQUIT\r\n",
       'the transcript: LHLO, STARTTLS, LHLO again (never EHLO), the message by BDAT inside TLS');
    my @ev = $f->events;
    like($ev[0] // '', qr/^TLS \d+ offset=\d+ version=TLSv1\.[23] .*client_cert=verified cn=client\.example$/,
         'the handshake, with the client certificate of SSL_cert_file/SSL_key_file');
    like($ev[1] // '', qr/^MESSAGE 0 tls=1 /, 'the message came over TLS');
    is_deeply([$f->messages], ["Subject: inside TLS\r\n\r\nsecret body\r\n"], 'the message');

    is_deeply(debug_lines($out), [
        "OBJ<<< 220 fake.example LMTP ready\n",
        "OBJ>>> " . default_lhlo(),
        "OBJ<<< 250-fake.example\n",
        "OBJ<<< 250-PIPELINING\n",
        "OBJ<<< 250-ENHANCEDSTATUSCODES\n",
        "OBJ<<< 250-8BITMIME\n",
        "OBJ<<< 250-CHUNKING\n",
        "OBJ<<< 250 STARTTLS\n",
        "OBJ>>> STARTTLS\r\n",
        "OBJ<<< 220 2.0.0 ready\n",
        "OBJ>>> " . default_lhlo(),
        "OBJ<<< 250-fake.example\n",
        "OBJ<<< 250-PIPELINING\n",
        "OBJ<<< 250-ENHANCEDSTATUSCODES\n",
        "OBJ<<< 250-8BITMIME\n",
        "OBJ<<< 250 CHUNKING\n",
    ], 'Debug: the dialogue as Net::Cmd prints it, LHLO twice, nothing else');
    my $key = slurp("$C/client.key");
    my ($key_b64) = $key =~ /-----\n([A-Za-z0-9+\/]{20,})/;
    ok(defined $key_b64, '(the client key has a base64 body)');
    hides($out, $key_b64, 'Debug shows nothing of the client key');
    unlike($out, qr/PRIVATE KEY|EHLO/, 'no key, no EHLO');
};

# Each: [name, server cert, new/starttls arguments, what the message must say]
my @REFUSED = (
    ['wrong name', 'wrong-name', [SSL_ca_file => "$C/ca.pem"], qr/mismatch/i],
    ['wrong name (SSL_hostname)', 'wrong-name', [SSL_ca_file => "$C/ca.pem", SSL_hostname => 'localhost'],
     qr/hostname mismatch/i],
    ['unknown CA', 'server', [SSL_ca_file => "$C/other-ca.pem"], qr/unable to get local issuer certificate/i],
    ['the system CAs only', 'server', [], qr/unable to get local issuer certificate/i],
    ['self-signed', 'self-signed', [SSL_ca_file => "$C/ca.pem"], qr/self[- ]signed certificate/i],
    ['expired', 'expired', [SSL_ca_file => "$C/ca.pem"], qr/certificate has expired/i],
);

foreach my $case (@REFUSED) {
    my ($name, $cert, $args, $why) = @$case;
    subtest "certificate refused: $name" => sub {
        my $f = start_fake('--tls-cert', "$C/$cert.pem", '--tls-key', "$C/$cert.key");
        my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
        my @warn;
        local $SIG{__WARN__} = sub { push @warn, @_ };
        my $r = $l->starttls(@$args);
        is($r, undef, 'starttls returns undef');
        is($l->code, 421, 'code 421');
        like($l->message, qr/^\[Net::LMTP\] /, 'message: [Net::LMTP] ...');
        like($l->message, $why, 'which names the reason: ' . $l->message);
        is_deeply([$l->starttls(@$args)], [], 'again, on the closed object: an empty list in list context');
        ok(!$l->noop, 'then noop fails');
        is($l->code, 421, '421: the connection is closed');
        is($l->close, 0, 'close: it was closed already');
        is_deeply(\@warn, [], 'no warnings (Debug is off)');
        my $stats = $f->stop;
        is($f->transcript, $HELLO . "STARTTLS\r\n", 'nothing was sent after STARTTLS');
        is($stats->{TLS_SESSIONS}, 0, 'no TLS session');
    };
}

subtest 'SSL_verify_mode => 0 accepts any certificate; SSL_hostname names the one to verify' => sub {
    my $f = start_fake('--tls-cert', "$C/self-signed.pem", '--tls-key', "$C/self-signed.key");
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    is($l->starttls(SSL_verify_mode => 0), 'fake.example', 'self-signed, SSL_verify_mode => 0 to starttls: accepted');
    ok($l->noop, 'and the session goes on');
    $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, SSL_verify_mode => 0) or die $@;
    is($l->starttls, 'fake.example', 'SSL_verify_mode => 0 given to new: accepted');
    $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, SSL_ca_file => "$C/ca.pem") or die $@;
    is($l->starttls(SSL_verify_mode => 1), undef, 'SSL_verify_mode => 1 (SSL_VERIFY_PEER) verifies');
    is($f->stop->{TLS_SESSIONS}, 2, 'two TLS sessions');

    my $g = start_fake('--tls-cert', "$C/wrong-name.pem", '--tls-key', "$C/wrong-name.key");
    $l = Net::LMTP->new($g->host, $g->port, Timeout => 10, SSL_ca_file => "$C/ca.pem") or die $@;
    is($l->starttls(SSL_verify_mode => 0), 'fake.example', 'wrong name, SSL_verify_mode => 0: accepted');
    $l = Net::LMTP->new($g->host, $g->port, Timeout => 10, SSL_ca_file => "$C/ca.pem") or die $@;
    is($l->starttls(SSL_hostname => 'other.example'), 'fake.example', 'SSL_hostname => the name in the certificate');
    $l = Net::LMTP->new($g->host, $g->port, Timeout => 10, SSL_ca_file => "$C/ca.pem") or die $@;
    is($l->starttls(SSL_verifycn_name => 'other.example'), 'fake.example', 'SSL_verifycn_name likewise');
    is($g->stop->{TLS_SESSIONS}, 3, 'three TLS sessions');
};

subtest 'SSL_ca_path, SSL_version' => sub {
    my $f = start_fake(@TLS, '--tls-max-version', '1.2');
    SKIP: {
        my $hash = `openssl x509 -hash -noout -in '$C/ca.pem' 2>/dev/null`;
        chomp $hash;
        skip 'no openssl program to hash the CA certificate', 1 unless $? == 0 && $hash =~ /^[0-9a-f]{8}$/;
        my $dir = File::Temp::tempdir(CLEANUP => 1);
        symlink "$C/ca.pem", "$dir/$hash.0" or die "symlink: $!";
        my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
        is($l->starttls(SSL_ca_path => $dir), 'fake.example', 'SSL_ca_path: a directory of hashed CAs');
    }
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, SSL_ca_file => "$C/ca.pem") or die $@;
    is($l->starttls(SSL_version => 'TLSv1_3'), undef, 'SSL_version => TLSv1_3 against a TLS 1.2 server: refused');
    is($l->code, 421, 'code 421');
    $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, SSL_ca_file => "$C/ca.pem") or die $@;
    is($l->starttls(SSL_version => 'SSLv23:!SSLv2:!SSLv3'), 'fake.example', 'an SSL_version that allows 1.2: accepted');
    $f->stop;
    like(join("\n", $f->events), qr/^TLS \d+ .*version=TLSv1\.2 /m, 'TLS 1.2 was used');
};

subtest 'starttls refused, not offered, handshake garbage' => sub {
    my $f = start_fake(@TLS, '--fault-on', 'STARTTLS', '--fault-reply', '454 4.7.0 TLS not available now\r\n');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    is($l->starttls(SSL_ca_file => "$C/ca.pem"), undef, '454: undef');
    is($l->code, 454, 'code 454');
    is($l->message, "4.7.0 TLS not available now\n", 'and its message');
    ok($l->noop, 'the session goes on in plain text');
    $f->stop;

    my $g = start_fake();
    $l = Net::LMTP->new($g->host, $g->port, Timeout => 10) or die $@;
    is($l->starttls(SSL_ca_file => "$C/ca.pem"), undef, 'not offered: undef');
    like($l->code, qr/^5\d\d$/, 'a 5xx code (' . $l->code . ')');
    ok($l->noop, 'the session goes on');
    $g->stop;

    my $h = start_fake(@TLS, '--tls-fail-handshake', 'garbage');
    $l = Net::LMTP->new($h->host, $h->port, Timeout => 10) or die $@;
    is($l->starttls(SSL_ca_file => "$C/ca.pem"), undef, 'garbage instead of a handshake: undef');
    is($l->code, 421, 'code 421');
    is($l->close, 0, 'closed');
    $h->stop;

    my $i = start_fake(@TLS, '--tls-plain-after-220', '250 2.0.0 injected\r\n');
    $l = Net::LMTP->new($i->host, $i->port, Timeout => 10) or die $@;
    is($l->starttls(SSL_ca_file => "$C/ca.pem"), undef, 'plaintext injected after 220: undef');
    is($l->code, 421, 'code 421');
    is($l->close, 0, 'closed');
    is($i->stop->{TLS_SESSIONS}, 0, 'no TLS session');
    is($i->transcript, $HELLO . "STARTTLS\r\n", 'nothing sent after STARTTLS');
};

# TLS settings that cannot work are the caller's mistake: refused locally
# (code 501, "[Net::LMTP] ...", which the POD says is before anything is sent),
# and the session goes on in plain text.
my @UNUSABLE = (
    ['a unix socket without SSL_hostname', 1, [SSL_ca_file => "$C/ca.pem"], qr/server name/],
    ['an SSL_ca_file that does not exist', 0, [SSL_ca_file => "$C/no-such-ca.pem"], qr/no-such-ca\.pem/],
    ['an SSL_key_file that does not match SSL_cert_file', 0,
     [SSL_ca_file => "$C/ca.pem", SSL_cert_file => "$C/client.pem", SSL_key_file => "$C/server.key"], qr/key/],
);

foreach my $case (@UNUSABLE) {
    my ($name, $unix, $args, $why) = @$case;
    subtest "unusable TLS settings: $name" => sub {
        my $f = start_fake($unix ? ('--unix', '') : (), @TLS);
        my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
        is($l->starttls(@$args), undef, 'starttls: undef');
        is($l->code, 501, 'code 501, a local refusal');
        like($l->message, qr/^\[Net::LMTP\] /, 'message: ' . $l->message);
        like($l->message, $why, 'which says what is wrong');
        ok($l->noop, 'nothing was sent: the session goes on');
        $l->quit;
        $f->stop;
        is($f->transcript, $HELLO . "NOOP\r\nQUIT\r\n", 'no STARTTLS was sent');
    };
}

subtest 'a unix socket: STARTTLS with SSL_hostname; PLAIN allowed without TLS' => sub {
    my $f = start_fake('--unix', '', @TLS, '--auth', 'PLAIN', @AUTH);
    my $l = Net::LMTP->new($f->host, 0, Timeout => 10) or die $@;
    is($l->starttls(SSL_ca_file => "$C/ca.pem", SSL_hostname => 'localhost'), 'fake.example',
       'SSL_hostname => localhost: TLS');
    $l->quit;
    $l = Net::LMTP->new($f->host, 0, Timeout => 10) or die $@;
    ok($l->auth($USER, $PW, 'PLAIN'), 'PLAIN without TLS over a unix socket: true (not a network)');
    $l->quit;
    my $stats = $f->stop;
    is($stats->{TLS_SESSIONS}, 1, 'one TLS session');
    is($f->transcript, $HELLO . "STARTTLS\r\n" . $HELLO . "QUIT\r\n" . $HELLO
       . 'AUTH PLAIN ' . encode_base64("\0$USER\0$PW", '') . "\r\nQUIT\r\n", 'the transcript');
};

subtest 'SSL => 1: implicit TLS' => sub {
    my $f = start_fake(@TLS, '--tls-implicit');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, SSL => 1, SSL_ca_file => "$C/ca.pem")
        or die "new: $@";
    is($l->banner, "fake.example LMTP ready\n", 'the banner, read inside TLS');
    is($l->domain, 'fake.example', 'domain');
    is($l->supports('STARTTLS'), undef, 'no STARTTLS offered');
    ok($l->mail('sender@example.org'), 'mail');
    ok($l->to('alice@example.org'), 'to');
    ok($l->data("Subject: implicit\n\nbody\n"), 'data');
    ok($l->quit, 'quit');
    my $stats = $f->stop;
    is($stats->{TLS_SESSIONS}, 1, 'one TLS session');
    like(($f->events)[0] // '', qr/^TLS \d+ offset=0 /, 'TLS from the first byte');
    like(($f->events)[1] // '', qr/^MESSAGE 0 tls=1 /, 'the message came over TLS');
    is($f->transcript, $HELLO . "MAIL FROM:<sender\@example.org>\r\nRCPT TO:<alice\@example.org>\r\nDATA\r\n"
       . "Subject: implicit\r\n\r\nbody\r\n.\r\nQUIT\r\n", 'the transcript (decrypted)');

    my $g = start_fake(@TLS, '--tls-implicit');
    my $bad = Net::LMTP->new($g->host, $g->port, Timeout => 10, SSL => 1);
    is($bad, undef, 'SSL => 1 with the system CAs: new fails');
    like($@, qr/unable to get local issuer certificate/, '$@ says why: ' . $@);
    $g->stop;
};

# ---------------------------------------------------------------------------
# AUTH

subtest 'auth(USER, PASS): PLAIN over TLS' => sub {
    my $f = start_fake(@TLS, '--auth', 'PLAIN LOGIN', @AUTH);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, SSL_ca_file => "$C/ca.pem") or die $@;
    ok($l->starttls, 'starttls with SSL_ca_file from new');
    ok($l->auth($USER, $PW), 'auth: true');
    is($l->code, 235, 'code 235');
    is($l->message, "2.7.0 Authentication successful\n", 'message');
    ok($l->mail('sender@example.org'), 'mail after AUTH');
    $l->quit;
    $f->stop;
    my $plain = encode_base64("\0$USER\0$PW", '');
    is($f->transcript, $HELLO . "STARTTLS\r\n" . $HELLO . "AUTH PLAIN $plain\r\nMAIL FROM:<sender\@example.org>\r\nQUIT\r\n",
       'AUTH PLAIN with the initial response, inside TLS');
    is_deeply([grep { /^AUTH/ } $f->events], ["AUTH_OK 235 PLAIN $USER"], 'the server accepted it');
};

subtest 'auth: a wrong password' => sub {
    my $f = start_fake(@TLS, '--auth', 'PLAIN LOGIN', @AUTH);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, SSL_ca_file => "$C/ca.pem") or die $@;
    ok($l->starttls, 'starttls');
    my @warn;
    local $SIG{__WARN__} = sub { push @warn, @_ };
    ok(!$l->auth($USER, 'wrong'), 'auth: false');
    is($l->code, 535, 'code 535 (as Net::SMTP: the server\'s reply)');
    is($l->message, "5.7.8 Authentication credentials invalid\n", 'its message');
    ok($l->auth($USER, $PW), 'the connection stays: auth again with the right one');
    is($l->code, 235, 'code 235');
    is_deeply(\@warn, [], 'no warnings');
    $f->stop;
    is_deeply([grep { /^AUTH/ } $f->events], ["AUTH_FAILED 535 PLAIN $USER", "AUTH_OK 235 PLAIN $USER"], 'events');
};

subtest 'auth: SCRAM-SHA-256 over plain TCP' => sub {
    my $f = start_fake('--auth', 'PLAIN SCRAM-SHA-256', @AUTH);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    ok($l->auth($USER, $PW), 'auth: true (the strongest offered: SCRAM-SHA-256)');
    is($l->code, 235, 'code 235');
    $l->quit;
    $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    ok(!$l->auth($USER, 'wrong', 'SCRAM-SHA-256'), 'a wrong password: false');
    is($l->code, 535, 'code 535');
    $f->stop;
    like($f->transcript, qr/^AUTH SCRAM-SHA-256 [A-Za-z0-9+\/=]+\r\n/m, 'AUTH SCRAM-SHA-256 sent');
    hides($f->transcript, $PW, 'the password itself never went out');
    is_deeply([grep { /^AUTH/ } $f->events], ["AUTH_OK 235 SCRAM-SHA-256 $USER", "AUTH_FAILED 535 SCRAM-SHA-256 $USER"],
              'events');

    my $g = start_fake('--auth', 'SCRAM-SHA-256', @AUTH, '--scram-bad-server-signature');
    $l = Net::LMTP->new($g->host, $g->port, Timeout => 10) or die $@;
    ok(!$l->auth($USER, $PW), 'a server that cannot prove it knows the password: false');
    isnt($l->code, 235, 'and not 235 (' . $l->code . ')');
    is($g->stop->{AUTH_SUCCESSES} // 0, 0, 'the exchange was not completed');
};

subtest 'auth: PLAIN over plain TCP refused unless AuthAllowPlaintext' => sub {
    my $f = start_fake('--auth', 'PLAIN LOGIN', @AUTH);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    ok(!$l->auth($USER, $PW), 'auth: false');
    is($l->code, 538, 'code 538 (encryption required)');
    like($l->message, qr/^\[Net::LMTP\] /, 'message: [Net::LMTP] ...');
    ok(!$l->auth($USER, $PW, 'LOGIN'), 'LOGIN too: false');
    is($l->code, 538, 'code 538');
    ok($l->noop, 'the session goes on');
    $l->quit;
    is($f->transcript, $HELLO . "NOOP\r\nQUIT\r\n", 'nothing was sent for AUTH');

    $f = start_fake('--auth', 'PLAIN LOGIN', @AUTH);
    $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, AuthAllowPlaintext => 1) or die $@;
    ok($l->auth($USER, $PW), 'AuthAllowPlaintext => 1: true');
    is($l->code, 235, 'code 235');
    $l->quit;
    $f->stop;
    like($f->transcript, qr/^AUTH PLAIN \Q${\ encode_base64("\0$USER\0$PW", '')}\E\r\n/m, 'AUTH PLAIN sent');
};

subtest 'auth: an Authen::SASL object; a mechanism by name; no AUTH offered' => sub {
    {
        package My::SASL;    # what the face reads of an Authen::SASL object
        our @ISA = ('Authen::SASL');
        sub new { my ($c, %a) = @_; bless {%a}, $c }
    }
    my $f = start_fake(@TLS, '--auth', 'PLAIN LOGIN SCRAM-SHA-256', @AUTH);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, SSL_ca_file => "$C/ca.pem") or die $@;
    ok($l->starttls, 'starttls');
    my $sasl = My::SASL->new(mechanism => 'LOGIN', callback => { user => $USER, pass => sub { $PW } });
    ok($l->auth($sasl), 'auth(Authen::SASL object): true');
    is($l->code, 235, 'code 235');
    $l->quit;
    $f->stop;
    like($f->transcript, qr/^AUTH LOGIN/m, 'with the object\'s mechanism, LOGIN');
    is_deeply([grep { /^AUTH/ } $f->events], ["AUTH_OK 235 LOGIN $USER"], 'events');

    my $g = start_fake();
    $l = Net::LMTP->new($g->host, $g->port, Timeout => 10) or die $@;
    ok(!$l->auth($USER, $PW), 'no AUTH offered: false');
    is($l->code, 500, 'code 500, as Net::SMTP sets it');
    is($l->message, "Command unknown: 'AUTH'", 'message, as Net::SMTP sets it');
    $l->quit;
    is($g->transcript, $HELLO . "QUIT\r\n", 'nothing sent');
};

subtest 'Debug never shows the password or its base64' => sub {
    my $f = start_fake(@TLS, '--auth', 'PLAIN LOGIN SCRAM-SHA-256', @AUTH);
    my $out = capture_stderr {
        local $SIG{__WARN__} = sub { print STDERR @_ };
        for my $mech ('PLAIN', 'LOGIN', 'SCRAM-SHA-256', undef) {
            my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, Debug => 1, SSL_ca_file => "$C/ca.pem")
                or die $@;
            $l->starttls;
            $l->auth($USER, 'wrong' . $PW, $mech);
            $l->auth($USER, $PW, $mech);
            $l->quit;
        }
        my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10, Debug => 1, AuthAllowPlaintext => 1) or die $@;
        $l->auth($USER, $PW, 'PLAIN');
        $l->quit;
    };
    $f->stop;
    is(scalar(grep { /^AUTH_OK/ } $f->events), 5, 'five successful AUTHs happened');
    like($out, qr/>>> AUTH PLAIN\b/, 'Debug shows AUTH PLAIN');
    like($out, qr/>>> AUTH LOGIN\b/, 'Debug shows AUTH LOGIN');
    like($out, qr/>>> AUTH SCRAM-SHA-256\b/, 'Debug shows AUTH SCRAM-SHA-256');
    hides($out, $PW, 'not the password');
    for my $secret ("\0$USER\0$PW", $PW, "\0$USER\0wrong$PW", "wrong$PW") {
        my $b64 = encode_base64($secret, '');
        (my $core = $b64) =~ s/=+$//;
        hides($out, substr($core, 0, length($core) - 2), 'not the base64 of ' . ($secret =~ /\0/ ? 'the PLAIN response' : 'a password'));
    }
};

# ---------------------------------------------------------------------------
# BDAT

my @CHUNKING = ('--cap', 'CHUNKING', '--rules',
                'alice@x=250,250;bob@x=250,250;full@x=250,552;temp@x=250,452;nosuch@x=550');

subtest 'bdat/bdatlast: the bytes exactly as given; every recipient\'s verdict' => sub {
    my $f = start_fake(@CHUNKING);
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    is($l->supports('CHUNKING'), '', 'CHUNKING offered');
    ok($l->mail('s@x'), 'mail');
    is_deeply([$l->to('alice@x', 'nosuch@x', 'full@x', 'temp@x', 'bob@x', { SkipBad => 1 })],
              ['alice@x', 'full@x', 'temp@x', 'bob@x'], 'to (nosuch refused)');
    my @chunks = ("Subject: raw\nbare LF\rlone CR\r\n.\r\n", "..dots\r\n.\r\n\0\x01\xff binary",
                  "\r\nlast line without an end");
    ok($l->bdat($chunks[0]), 'bdat: true');
    is($l->code, 250, 'code 250');
    is($l->message, '2.0.0 ' . length($chunks[0]) . " octets received\n", 'message');
    ok($l->bdat($chunks[1]), 'bdat: true');
    ok($l->bdatlast($chunks[2]), 'bdatlast: true (the first recipient\'s verdict, alice: 250)');
    is($l->code, 250, 'code 250');
    is($l->message, "2.0.0 <alice\@x> Saved\n", 'alice\'s message');
    is($l->response, CMD_ERROR, 'response: full, CMD_ERROR');
    is_deeply([$l->code, $l->message], [552, "5.2.2 <full\@x> Quota exceeded\n"], 'code and message');
    is($l->response, CMD_REJECT, 'response: temp, CMD_REJECT');
    is_deeply([$l->code, $l->message], [452, "4.2.2 <temp\@x> Mailbox is full, try again later\n"], 'code and message');
    is($l->response, CMD_OK, 'response: bob, CMD_OK');
    is_deeply([$l->code, $l->message], [250, "2.0.0 <bob\@x> Saved\n"], 'code and message');
    is_deeply([map { [@$_{qw(address status stage code)}] } $l->results],
              [['alice@x', 'ok', 'data', 250], ['nosuch@x', 'permfail', 'rcpt', 550],
               ['full@x', 'permfail', 'data', 552], ['temp@x', 'tempfail', 'data', 452],
               ['bob@x', 'ok', 'data', 250]], 'results');

    ok($l->mail('s@x'), 'the next transaction: mail, its own reply');
    is($l->message, "2.1.0 OK\n", '2.1.0 OK');
    ok($l->to('full@x', 'alice@x'), 'to full, alice');
    ok(!$l->bdatlast("x\r\n"), 'bdatlast: false (the first recipient, full, refused it)');
    is($l->code, 552, 'code 552');
    is($l->response, CMD_OK, 'response: alice, CMD_OK');
    ok($l->quit, 'quit');
    $f->stop;
    my $expect = $HELLO . "MAIL FROM:<s\@x>\r\n" . join('', map { "RCPT TO:<$_\@x>\r\n" } qw(alice nosuch full temp bob))
        . join('', map { 'BDAT ' . length($chunks[$_]) . ($_ == 2 ? ' LAST' : '') . "\r\n$chunks[$_]" } 0 .. 2)
        . "MAIL FROM:<s\@x>\r\nRCPT TO:<full\@x>\r\nRCPT TO:<alice\@x>\r\nBDAT 3 LAST\r\nx\r\nQUIT\r\n";
    is($f->transcript, $expect, 'the wire: BDAT n, then the bytes as given (no CRLF fixing, no dot-stuffing)');
    is_deeply([$f->messages], [join('', @chunks), "x\r\n"], 'the messages the server put together');
};

subtest 'bdat: a refused chunk, nobody accepted, no CHUNKING' => sub {
    my $f = start_fake(@CHUNKING, '--bdat-fail-chunk', '1');
    my $l = Net::LMTP->new($f->host, $f->port, Timeout => 10) or die $@;
    $l->mail('s@x');
    $l->to('alice@x', 'bob@x');
    ok(!$l->bdat("first\r\n"), 'a refused chunk: bdat false');
    is($l->code, 552, 'code 552');
    ok(!$l->bdatlast("last\r\n"), 'bdatlast after it: false');
    is_deeply([map { [@$_{qw(address status code)}] } $l->results],
              [['alice@x', 'permfail', 552], ['bob@x', 'permfail', 552]], 'every recipient: 552');
    ok($l->noop, 'noop: in step');
    is($l->message, "2.0.0 OK\n", 'its own reply');
    ok($l->mail('s@x') && $l->to('alice@x', 'bob@x'), 'a new transaction');
    ok(!$l->bdatlast("only\r\n"), 'a refused LAST chunk: false');
    is($l->code, 552, 'code 552');
    is($l->response, CMD_ERROR, 'response: bob, CMD_ERROR');
    is($l->code, 552, 'code 552');
    ok($l->noop, 'in step');
    $l->quit;
    $f->stop;

    my $g = start_fake(@CHUNKING);
    $l = Net::LMTP->new($g->host, $g->port, Timeout => 10) or die $@;
    $l->mail('s@x');
    ok(!$l->to('nosuch@x'), 'nobody accepted');
    ok(!$l->bdatlast("nobody\r\n"), 'bdatlast: false');
    ok($l->noop, 'noop: in step (no reply was waited for)');
    is($l->message, "2.0.0 OK\n", 'its own reply');
    ok($l->mail('s@x') && $l->to('alice@x'), 'next transaction');
    ok($l->bdatlast("ok\r\n"), 'delivered');
    is($l->message, "2.0.0 <alice\@x> Saved\n", 'alice\'s reply');
    $l->quit;
    $g->stop;
    is_deeply([$g->messages], ["ok\r\n"], 'one message stored');

    my $h = start_fake();
    $l = Net::LMTP->new($h->host, $h->port, Timeout => 10) or die $@;
    $l->mail('s@x');
    $l->to('alice@x');
    my @warn;
    {
        local $SIG{__WARN__} = sub { push @warn, @_ };
        ok(!$l->bdat("x\r\n"), 'no CHUNKING: bdat false');
        ok(!$l->bdatlast("x\r\n"), 'bdatlast false');
    }
    is(scalar @warn, 2, 'two warnings');
    like($warn[0] // '', qr/^Net::LMTP::bdat: CHUNKING extension is not in use, call data instead at \Q$0\E line \d+\.$/,
         'carped as Net::SMTP does, at the caller');
    ok($l->data("Subject: data\n\nx\n"), 'data still works');
    $l->quit;
    $h->stop;
    is($h->transcript, $HELLO . "MAIL FROM:<s\@x>\r\nRCPT TO:<alice\@x>\r\nDATA\r\nSubject: data\r\n\r\nx\r\n.\r\nQUIT\r\n",
       'no BDAT was sent');
};

# ---------------------------------------------------------------------------
# a real server

subtest 'Dovecot with STARTTLS: starttls, bdat, every recipient, the Maildirs' => sub {
    need_dovecot();
    my $dc = start_dovecot("$C/server.pem", "$C/server.key");
    my $l = Net::LMTP->new('127.0.0.1', $dc->port, Timeout => 30) or die $@;
    is($l->supports('STARTTLS'), '', 'Dovecot offers STARTTLS');
    my $name = $l->starttls(SSL_ca_file => "$C/ca.pem");
    ok(defined $name && length $name, 'starttls: ' . ($name // 'undef'));
    is($l->supports('STARTTLS'), undef, 'no STARTTLS any more');
    is($l->supports('CHUNKING'), '', 'CHUNKING offered');
    my @rcpt = map { "$_\@example.org" } qw(alice nosuch full tempfull bob);
    ok($l->mail('sender@example.org'), 'mail');
    is_deeply([$l->to(@rcpt, { SkipBad => 1 })], [@rcpt[0, 2, 3, 4]], 'nosuch refused at RCPT');
    my @chunks = ("From: sender\@example.org\r\nSubject: over TLS by BDAT\r\n", "\r\n.a line with a dot\r\n",
                  "last line\r\n");
    ok($l->bdat($chunks[0]), 'bdat');
    ok($l->bdat($chunks[1]), 'bdat');
    ok($l->bdatlast($chunks[2]), 'bdatlast: true (alice)');
    is($l->response, CMD_ERROR, 'full: CMD_ERROR');
    is($l->code, 552, 'full: 552');
    is($l->response, CMD_REJECT, 'tempfull: CMD_REJECT');
    is($l->code, 452, 'tempfull: 452');
    is($l->response, CMD_OK, 'bob: CMD_OK');
    is_deeply([map { [@$_{qw(address status stage code)}] } $l->results],
              [['alice@example.org', 'ok', 'data', 250], ['nosuch@example.org', 'permfail', 'rcpt', 550],
               ['full@example.org', 'permfail', 'data', 552], ['tempfull@example.org', 'tempfail', 'data', 452],
               ['bob@example.org', 'ok', 'data', 250]], 'results');
    ok($l->quit, 'quit');
    (my $body = join('', @chunks)) =~ s/\r\n/\n/g;
    for my $u (qw(alice bob)) {
        my @m = $dc->mails($u);
        is(scalar @m, 1, "$u: one message");
        my $m = $m[0] // '';
        like($m, qr/^Received: .*\n\s+\(using TLSv1\.[23] /m, "$u: Dovecot says it came over TLS");
        1 while $m =~ s/\A(?:Return-Path|Delivered-To|Received):[^\n]*\n(?:[ \t][^\n]*\n)*//;
        is($m, $body, "$u: the message, byte for byte");
    }
    is(scalar(() = $dc->mails($_)), 0, "$_: nothing") for qw(full tempfull nosuch);
    $dc->stop;
};

done_testing;
