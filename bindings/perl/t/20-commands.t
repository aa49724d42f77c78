# The documented methods of Net::LMTP: banner, domain, hello, etrn, mail and
# its options, send/send_or_mail/send_and_mail, reset, recipient/to (Notify,
# SkipBad), data, expand, verify, help, quit. Each checks the return value,
# code/message and the exact bytes the server received; where it helps, the
# same calls are made with the old Net::SMTP-based module (OldLMTP) and the
# two transcripts must be identical.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();

my $LHLO = default_lhlo();

subtest 'banner and domain' => sub {
    my $f = start_fake('--hostname', 'mx.example.net');
    my $l = Net::LMTP->new($f->host, $f->port);
    is($l->banner, "mx.example.net LMTP ready\n", 'banner: the text after the code, with "\n"');
    is($l->domain, 'mx.example.net', 'domain: its first word');
    $l->quit;
};

subtest 'multi-line banner: banner is its first line, as Net::SMTP' => sub {
    my $g = '220-mx1.example.org first line\r\n220 second line\r\n';
    my ($new, $old) = run_both(['--greeting', $g], sub { ($_[0]->banner, $_[0]->domain) });
    is_deeply($new->{result}, ["mx1.example.org first line\n", 'mx1.example.org'],
              'multi-line banner: the first line');
    is_deeply($new->{result}, $old->{result}, 'as the old module');
};

subtest 'hello' => sub {
    my ($new, $old) = run_both(['--hostname', 'mx.example.net'], sub {
        my $l = shift;
        my $h1 = $l->hello('client.example');
        my $h2 = $l->hello;
        ($h1, $h2, $l->code, scalar $l->message);
    });
    is_deeply($new->{result}, ['mx.example.net', 'mx.example.net', 250,
                               "mx.example.net\nPIPELINING\nENHANCEDSTATUSCODES\n8BITMIME\n"],
              'returns the first word of the LHLO reply; code and message are the reply');
    is($new->{transcript}, "${LHLO}LHLO client.example\r\n$LHLO", 'LHLO with the domain, or the default');
    is_deeply($new->{result}, $old->{result}, 'results as the old module');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');

    my $f = start_fake('--fault-on', 'LHLO', '--fault-skip', '1', '--fault-reply', '501 5.5.4 bad domain\r\n');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @r = $l->hello('bad');
    is_deeply(\@r, [], 'refused: empty list');
    ok(!defined scalar($l->hello('bad')), 'refused: undef in scalar context');
    is($l->code, 501, 'code');
    is($l->message, "5.5.4 bad domain\n", 'message');
};

subtest 'etrn' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    ok(!$l->etrn('example.org'), 'ETRN not offered: false');
    is($l->code, 500, 'code 500');
    is($l->message, "Command unknown: 'ETRN'", "message as Net::SMTP sets it");
    is($l->command('NOOP')->response, 2, 'NOOP');
    $l->quit;
    $f->stop;
    is($f->transcript, "${LHLO}NOOP\r\nQUIT\r\n", 'nothing sent for ETRN');

    my ($new, $old) = run_both(['--cap', 'ETRN'], sub {
        my $l = shift;
        ($l->etrn('example.org') ? 1 : 0, $l->code, $l->message);
    });
    is_deeply($new->{result}, [1, 250, "2.0.0 Queuing started\n"], 'ETRN offered: true, the reply');
    is($new->{transcript}, "${LHLO}ETRN example.org\r\n", 'ETRN sent');
    is_deeply($new->{result}, $old->{result}, 'as the old module');
};

my $mail_all = sub {
    my $l = shift;
    my @r;
    push @r, $l->mail('sender@example.org', Size => 1234, Return => 'full', Bits => '8',
                      Envelope => 'id 1+2=3') ? 1 : 0;
    push @r, $l->reset ? 1 : 0;
    push @r, $l->mail('sender@example.org', Return => 'hdrs', Bits => '7') ? 1 : 0;
    push @r, $l->reset ? 1 : 0;
    push @r, $l->mail('sender@example.org', Transaction => 'trans@example.org') ? 1 : 0, $l->code;
    @r;
};
my @offered = ('--size', '100000', '--cap', 'DSN', '--cap', 'CHECKPOINT');

subtest 'mail options offered, one at a time: exact MAIL FROM lines' => sub {
    my @opts = ([Size => 1234], [Return => 'full'], [Return => 'hdrs'], [Bits => '8'], [Bits => '7'],
                [Envelope => 'id 1+2=3'], [Transaction => 'trans@example.org']);
    my ($new, $old) = run_both(\@offered, sub {
        my $l = shift;
        map { my $r = $l->mail('sender@example.org', @$_) ? 1 : 0; $l->reset; $r } @opts;
    });
    is($new->{transcript},
       $LHLO . join('', map { "MAIL FROM:<sender\@example.org> $_\r\nRSET\r\n" }
                        'SIZE=1234', 'RET=FULL', 'RET=HDRS', 'BODY=8BITMIME', 'BODY=7BIT',
                        'ENVID=id+201+2B2+3D3', 'TRANSID=<trans@example.org>'),
       'transcript');
    is_deeply($new->{result}, [1, 1, 1, 1, 1, 1, 0], 'results (the fake refuses TRANSID)');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    is_deeply($new->{result}, $old->{result}, 'results as the old module');
    is_deeply($new->{warnings}, [], 'no warnings');
};

subtest 'several mail options: the parameters in Net::SMTP\'s order' => sub {
    my ($new, $old) = run_both(\@offered, $mail_all);
    is($new->{transcript},
       $LHLO
       . "MAIL FROM:<sender\@example.org> SIZE=1234 RET=FULL BODY=8BITMIME ENVID=id+201+2B2+3D3\r\n"
       . "RSET\r\n"
       . "MAIL FROM:<sender\@example.org> RET=HDRS BODY=7BIT\r\n"
       . "RSET\r\n"
       . "MAIL FROM:<sender\@example.org> TRANSID=<trans\@example.org>\r\n",
       'transcript');
    is_deeply($new->{result}, [1, 1, 1, 1, 0, 555], 'results (the fake refuses TRANSID with 555)');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    is_deeply($new->{result}, $old->{result}, 'results as the old module');
};

subtest 'mail options not offered: carp and leave them out' => sub {
    my ($new, $old) = run_both(['--no-8bitmime'], $mail_all);
    is($new->{transcript},
       "${LHLO}MAIL FROM:<sender\@example.org>\r\nRSET\r\nMAIL FROM:<sender\@example.org>\r\n"
       . "RSET\r\nMAIL FROM:<sender\@example.org>\r\n", 'transcript: no options');
    is_deeply($new->{result}, [1, 1, 1, 1, 1, 250], 'results');
    my $at = qr/ at \Q$0\E line \d+\.?\n\z/;
    my @w = @{ $new->{warnings} };
    is(scalar @w, 7, 'seven warnings') or diag explain \@w;
    like($w[0], qr/^Net::LMTP::mail: SIZE option not supported by host$at/, 'Size');
    like($w[1], qr/^Net::LMTP::mail: DSN option not supported by host$at/, 'Return');
    like($w[2], qr/^Net::LMTP::mail: 8BITMIME option not supported by host$at/, 'Bits 8');
    like($w[3], qr/^Net::LMTP::mail: DSN option not supported by host$at/, 'Envelope');
    like($w[4], qr/^Net::LMTP::mail: DSN option not supported by host$at/, 'Return again');
    like($w[5], qr/^Net::LMTP::mail: 8BITMIME and BINARYMIME options not supported by host$at/, 'Bits 7');
    like($w[6], qr/^Net::LMTP::mail: CHECKPOINT option not supported by host$at/, 'Transaction');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    is_deeply($new->{warnings}, $old->{warnings}, 'warnings as the old module (same text, same line)');
};

subtest 'addresses as Net::SMTP takes them' => sub {
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        my @r;
        for my $a ('Joe Sender <joe@example.org>', '  spaced@example.org  ', '<>', '', '<br@example.org>') {
            push @r, $l->mail($a) ? 1 : 0;
            $l->reset;
        }
        push @r, $l->mail('s@example.org') ? 1 : 0;
        push @r, $l->to('Ann <ann@example.org>', ' bob@example.org ') ? 1 : 0;
        @r;
    });
    is($new->{transcript},
       $LHLO . join('', map { "MAIL FROM:<$_>\r\nRSET\r\n" }
                        'joe@example.org', 'spaced@example.org', '', '', 'br@example.org')
       . "MAIL FROM:<s\@example.org>\r\nRCPT TO:<ann\@example.org>\r\nRCPT TO:<bob\@example.org>\r\n",
       'transcript');
    is_deeply($new->{result}, [(1) x 7], 'all accepted');
    is($new->{transcript}, $old->{transcript}, 'as the old module');
};

subtest 'send, send_or_mail, send_and_mail, reset' => sub {
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        my @r;
        push @r, $l->send('a@example.org') ? 1 : 0, $l->code;
        push @r, $l->reset ? 1 : 0, $l->code;
        push @r, $l->send_or_mail('<b@example.org>') ? 1 : 0, $l->code;
        push @r, $l->reset ? 1 : 0;
        push @r, $l->send_and_mail('C <c@example.org>') ? 1 : 0, $l->code;
        push @r, $l->reset ? 1 : 0;
        @r;
    });
    is($new->{transcript},
       "${LHLO}SEND FROM:<a\@example.org>\r\nRSET\r\nSOML FROM:<b\@example.org>\r\nRSET\r\n"
       . "SAML FROM:<c\@example.org>\r\nRSET\r\n", 'transcript');
    is_deeply($new->{result}, [1, 250, 1, 250, 1, 250, 1, 1, 250, 1], 'results');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    is_deeply($new->{result}, $old->{result}, 'results as the old module');
};

subtest 'recipient/to with Notify (DSN offered)' => sub {
    my ($new, $old) = run_both(['--cap', 'DSN'], sub {
        my $l = shift;
        my @r;
        push @r, $l->mail('s@example.org') ? 1 : 0;
        push @r, $l->recipient('a@example.org', { Notify => ['SUCCESS', 'FAILURE', 'DELAY'] }) ? 1 : 0;
        push @r, $l->to('b@example.org', 'c@example.org', { Notify => ['NEVER'] }) ? 1 : 0;
        push @r, $l->to('d@example.org', { Notify => ['success', 'delay'] }) ? 1 : 0;
        @r;
    });
    is($new->{transcript},
       "${LHLO}MAIL FROM:<s\@example.org>\r\n"
       . "RCPT TO:<a\@example.org> NOTIFY=SUCCESS,FAILURE,DELAY\r\n"
       . "RCPT TO:<b\@example.org> NOTIFY=NEVER\r\n"
       . "RCPT TO:<c\@example.org> NOTIFY=NEVER\r\n"
       . "RCPT TO:<d\@example.org> NOTIFY=SUCCESS,DELAY\r\n",
       'transcript (upper-cased, as Net::SMTP)');
    is_deeply($new->{result}, [1, 1, 1, 1], 'results');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    is_deeply($new->{warnings}, [], 'no warnings');
};

# Net::SMTP keeps the caller's order; liblmtp sends NOTIFY's keywords in one fixed
# order (SUCCESS, FAILURE, DELAY). The same request either way (RFC 3461).
subtest 'recipient Notify keywords: one fixed order' => sub {
    my ($new, $old) = run_both(['--cap', 'DSN'], sub {
        my $l = shift;
        $l->mail('s@example.org');
        $l->to('e@example.org', { Notify => ['FAILURE', 'SUCCESS'] }) ? 1 : 0;
    });
    is($new->{transcript},
       "${LHLO}MAIL FROM:<s\@example.org>\r\nRCPT TO:<e\@example.org> NOTIFY=SUCCESS,FAILURE\r\n",
       'transcript');
    like($old->{transcript}, qr/NOTIFY=FAILURE,SUCCESS\r\n/, 'the old module kept the order given');
};

subtest 'recipient with Notify (DSN not offered): carp, left out' => sub {
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        $l->mail('s@example.org');
        $l->to('a@example.org', { Notify => ['SUCCESS'] }) ? 1 : 0;
    });
    is($new->{transcript}, "${LHLO}MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\n", 'transcript');
    is_deeply($new->{result}, [1], 'true');
    is(scalar @{ $new->{warnings} }, 1, 'one warning');
    like($new->{warnings}[0], qr/^Net::LMTP::recipient: DSN option not supported by host at \Q$0\E line/,
         'the warning');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    is_deeply($new->{warnings}, $old->{warnings}, 'warning as the old module');
};

subtest 'recipient: a refusal, SkipBad' => sub {
    my ($new, $old) = run_both(['--rules', 'nosuch@example.org=550;busy@example.org=450'], sub {
        my $l = shift;
        my @r;
        $l->mail('s@example.org');
        push @r, [$l->to('a@example.org', 'nosuch@example.org', 'b@example.org')], $l->code;
        push @r, [$l->to('c@example.org', 'nosuch@example.org', 'busy@example.org', 'd@example.org',
                         { SkipBad => 1 })];
        push @r, [$l->to('nosuch@example.org', { SkipBad => 1 })];
        push @r, scalar $l->message;
        @r;
    });
    is_deeply($new->{result},
              [[0], 550, ['c@example.org', 'd@example.org'], [],
               "5.1.1 <nosuch\@example.org> User doesn't exist\n"],
              'false at the first refusal; SkipBad returns the accepted addresses');
    is($new->{transcript},
       "${LHLO}MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\nRCPT TO:<nosuch\@example.org>\r\n"
       . "RCPT TO:<c\@example.org>\r\nRCPT TO:<nosuch\@example.org>\r\nRCPT TO:<busy\@example.org>\r\n"
       . "RCPT TO:<d\@example.org>\r\nRCPT TO:<nosuch\@example.org>\r\n",
       'transcript: without SkipBad, nothing after the refusal');
    is_deeply($new->{result}, $old->{result}, 'results as the old module');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    can_ok('Net::LMTP', qw(to cc bcc));
};

subtest 'data with DATA: a string, a list, an array ref' => sub {
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        my @r;
        for my $d (["Subject: 1\n\nstring\n"], ["Subject: 2\n", "\n", "list\n", ".dot\n"],
                   [["Subject: 3\n\n", "array ref\n", "no newline"]]) {
            $l->mail('s@example.org');
            $l->to('a@example.org');
            push @r, $l->data(@$d) ? 1 : 0, $l->code, scalar $l->message;
        }
        @r;
    });
    my $saved = "2.0.0 <a\@example.org> Saved\n";
    is_deeply($new->{result}, [1, 250, $saved, 1, 250, $saved, 1, 250, $saved], 'true, the reply');
    my $t = "MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\nDATA\r\n";
    is($new->{transcript},
       "$LHLO${t}Subject: 1\r\n\r\nstring\r\n.\r\n"
       . "${t}Subject: 2\r\n\r\nlist\r\n..dot\r\n.\r\n"
       . "${t}Subject: 3\r\n\r\narray ref\r\nno newline\r\n.\r\n", 'transcript');
    is_deeply($new->{messages},
              ["Subject: 1\r\n\r\nstring\r\n", "Subject: 2\r\n\r\nlist\r\n.dot\r\n",
               "Subject: 3\r\n\r\narray ref\r\nno newline\r\n"], 'messages stored');
    is_deeply($new->{result}, $old->{result}, 'results as the old module');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
};

subtest 'data without DATA, then datasend and dataend' => sub {
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        my @r;
        $l->mail('s@example.org');
        $l->to('a@example.org');
        push @r, $l->data ? 1 : 0, $l->code, scalar $l->message;
        push @r, $l->datasend("Subject: x\n\n") ? 1 : 0;
        push @r, $l->datasend("body\n") ? 1 : 0;
        push @r, $l->dataend ? 1 : 0, $l->code;
        # DATA with no recipient: the server's 503
        $l->mail('s@example.org');
        push @r, $l->data ? 1 : 0, $l->code;
        @r;
    });
    is_deeply($new->{result}, [1, 354, "go ahead\n", 1, 1, 1, 250, 0, 503], 'results');
    is($new->{transcript},
       "${LHLO}MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\nDATA\r\n"
       . "Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<s\@example.org>\r\nDATA\r\n", 'transcript');
    is_deeply($new->{messages}, ["Subject: x\r\n\r\nbody\r\n"], 'message stored');
    is_deeply($new->{result}, $old->{result}, 'results as the old module');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
};

subtest 'expand, verify, help' => sub {
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        my @r;
        push @r, [$l->expand('list')];
        push @r, $l->verify('a@example.org') ? 1 : 0, $l->code;
        push @r, $l->help;
        push @r, $l->help('MAIL');
        @r;
    });
    my $help = "2.0.0 fake LMTP server, commands:\n"
             . "2.0.0 LHLO MAIL RCPT DATA BDAT RSET NOOP VRFY EXPN HELP ETRN QUIT\n2.0.0 End of HELP\n";
    is_deeply($new->{result},
              [["2.1.5 alpha <alpha\@fake.example>\n", "2.1.5 beta <beta\@fake.example>\n",
                "2.1.5 gamma <gamma\@fake.example>\n"], 1, 252, $help, $help],
              'expand: the lines; verify: true on 252; help: the text');
    is($new->{transcript}, "${LHLO}EXPN list\r\nVRFY a\@example.org\r\nHELP\r\nHELP MAIL\r\n", 'transcript');
    is_deeply($new->{result}, $old->{result}, 'results as the old module');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');

    my $f = start_fake('--fault-on', 'EXPN', '--fault-reply', '502 5.5.1 no EXPN\r\n');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    is_deeply([$l->expand('list')], [], 'expand refused: empty list');
    is($l->code, 502, 'code');
};

subtest 'help refused: undef' => sub {
    my $f = start_fake('--fault-on', 'HELP', '--fault-reply', '502 5.5.1 no help\r\n');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    my @h = $l->help;
    is_deeply(\@h, [undef], 'undef');
    is($l->code, 502, 'code');
};

subtest 'quit' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    is($l->quit, 1, 'quit: true');
    is($l->code, 221, 'code 221');
    ok(!$l->mail('a@example.org'), 'then mail is false');
    is($l->code, 421, 'code 421');
    like(scalar $l->message, qr/^\[Net::LMTP\] Connection closed/, 'message: connection closed');
    ok(!$l->quit, 'quit again: false');
    my $s = $f->stop;
    is($f->transcript, "${LHLO}QUIT\r\n", 'nothing sent after QUIT');
    is($s->{CONNECTIONS}, 1, 'one connection');
};

done_testing;
