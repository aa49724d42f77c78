# Strings on the wire: a wide character (not a byte) croaks with a clear
# message and sends nothing; bytes (8-bit, UTF-8 encoded, or held in an
# upgraded string) go through exactly as the old module sent them; a NUL or a
# CR/LF in an address never reaches the server (false, code 501, nothing sent).
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();

my $LHLO = default_lhlo();

subtest 'wide characters croak, nothing is sent' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my $smiley = "\x{263A}\@example.org";
    my @calls = (
        [mail      => sub { $l->mail($smiley) }],
        [recipient => sub { $l->to($smiley) }],
        [verify    => sub { $l->verify($smiley) }],
        [send      => sub { $l->send($smiley) }],
        [deliver   => sub { $l->deliver('s@example.org', [$smiley], "x\n") }],
        [command   => sub { $l->command("VRFY $smiley") }],
    );
    for my $c (@calls) {
        my ($name, $code) = @$c;
        $l->mail('s@example.org') if $name eq 'recipient';
        ok(!eval { $code->(); 1 }, "$name: croaks");
        $l->reset if $name eq 'recipient';
        like($@, qr/wide character/i, "$name: the message says why");
        like($@, qr/ at \Q$0\E line \d+/, "$name: and points at the caller");
    }
    $l->mail('s@example.org');
    $l->to('a@example.org');
    $l->data;
    ok(!eval { $l->datasend("Subject: \x{263A}\n"); 1 }, 'datasend: croaks');
    like($@, qr/wide character/i, 'datasend: the message says why');
    ok($l->datasend("Subject: bytes\n\nok\n"), 'the message goes on with bytes');
    ok($l->dataend, 'dataend');
    ok(!eval { Net::LMTP->new($f->host, $f->port, Hello => "\x{263A}.example"); 1 }, 'Hello: croaks');
    like($@, qr/wide character/i, 'Hello: the message says why');
    $l->quit;
    $f->stop;
    is($f->transcript,
       "${LHLO}MAIL FROM:<s\@example.org>\r\nRSET\r\nMAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\n"
       . "DATA\r\nSubject: bytes\r\n\r\nok\r\n.\r\nQUIT\r\n",
       'none of them sent anything');
};

subtest 'bytes go through, as the old module sent them' => sub {
    for my $cap ([], ['--cap', 'SMTPUTF8']) {
        my ($new, $old) = run_both($cap, sub {
            my $l = shift;
            my @r;
            push @r, [$l->mail("\xe9\@example.org") ? 1 : 0, $l->code];
            $l->reset;
            $l->mail('s@example.org');
            push @r, [$l->to("\xc3\xa9l\xc3\xa8ve\@example.org") ? 1 : 0, $l->code];
            my $up = "\xe8\@example.org";
            utf8::upgrade($up);
            push @r, [$l->to($up) ? 1 : 0, $l->code];
            push @r, [$l->to('a@example.org') ? 1 : 0];
            push @r, [$l->data ? 1 : 0];
            $l->datasend("Subject: caf\xc3\xa9\n\n\xe9\xff\x80\n");
            push @r, [$l->dataend ? 1 : 0];
            @r;
        });
        my $with = @$cap ? 'with SMTPUTF8 offered' : 'without SMTPUTF8';
        is($new->{transcript},
           "${LHLO}MAIL FROM:<\xe9\@example.org>\r\nRSET\r\nMAIL FROM:<s\@example.org>\r\n"
           . "RCPT TO:<\xc3\xa9l\xc3\xa8ve\@example.org>\r\nRCPT TO:<\xe8\@example.org>\r\n"
           . "RCPT TO:<a\@example.org>\r\nDATA\r\nSubject: caf\xc3\xa9\r\n\r\n\xe9\xff\x80\r\n.\r\n",
           "$with: the exact bytes (an upgraded string is sent as its bytes)");
        is($new->{transcript}, $old->{transcript}, "$with: as the old module");
        is_deeply($new->{result}, $old->{result}, "$with: the same results (the server's verdicts)");
        is_deeply($new->{messages}, ["Subject: caf\xc3\xa9\r\n\r\n\xe9\xff\x80\r\n"], "$with: the message");
    }
};

subtest 'NUL, CR or LF in an address: false, 501, nothing sent' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @bad = ("a\0b\@example.org", "evil\@example.org>\r\nRCPT TO:<x\@example.org",
               "evil\@example.org\nDATA", "evil\@example.org\rRSET");
    for my $bad (@bad) {
        (my $name = $bad) =~ s/([\0\r\n])/sprintf '\\x%02x', ord $1/ge;
        my $r = $l->mail($bad);
        ok(defined $r && !$r, "mail '$name': false");
        is($l->code, 501, "mail '$name': code 501");
        like(scalar $l->message, qr/^\[Net::LMTP\] /, "mail '$name': message says it was refused here");
        ok($l->mail('s@example.org'), 'then a good MAIL');
        $r = $l->to($bad);
        ok(defined $r && !$r, "to '$name': false");
        is($l->code, 501, "to '$name': code 501");
        is_deeply([$l->to('a@example.org', $bad, 'b@example.org', { SkipBad => 1 })],
                  ['a@example.org', 'b@example.org'], "to '$name' with SkipBad: the others");
        ok(!$l->send_or_mail($bad), "send_or_mail '$name': false");
        is($l->code, 501, "send_or_mail '$name': 501");
        is_deeply([$l->deliver('s@example.org', ['a@example.org', $bad], "x\n")], [],
                  "deliver to '$name': an empty list");
        is($l->code, 501, "deliver to '$name': 501");
        is_deeply([$l->deliver($bad, ['a@example.org'], "x\n")], [], "deliver from '$name': an empty list");
        $l->reset;
    }
    ok($l->noop, 'NOOP');
    $l->quit;
    $f->stop;
    my $t = $f->transcript;
    unlike($t, qr/evil|a\0b/, 'no bad address reached the server');
    is($t, $LHLO . ("MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\nRCPT TO:<b\@example.org>\r\nRSET\r\n")
                     x @bad . "NOOP\r\nQUIT\r\n", 'transcript');
};

subtest 'NUL or CR/LF in Hello: new returns undef, nothing sent' => sub {
    my $f = start_fake();
    for my $hello ("client.example\r\nMAIL FROM:<evil\@example.org>", "client\0.example") {
        (my $name = $hello) =~ s/([\0\r\n])/sprintf '\\x%02x', ord $1/ge;
        my ($l, $err);
        my $lived = eval { $l = Net::LMTP->new($f->host, $f->port, Hello => $hello); $err = $@; 1 };
        ok($lived, "Hello '$name': new does not die") or diag $@;
        ok(!defined $l, "Hello '$name': undef");
        like($err, qr/^Net::LMTP: \S/, "Hello '$name': \$\@ says why");
    }
    $f->stop;
    unlike($f->transcript, qr/evil|\0/, 'nothing bad was sent');
};

done_testing;
