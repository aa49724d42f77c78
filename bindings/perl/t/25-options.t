# The options of mail and recipient as liblmtp reads them: each goes to the
# library as its parameter on the wire, the library parses it (xtext, NOTIFY's
# keywords) and says what the server does not offer; Net::LMTP words that as
# Net::SMTP does. Where the old Net::SMTP-based module behaves the same, the
# transcripts and warnings are compared with it.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();

my $LHLO = default_lhlo();
my $at = qr/ at \Q$0\E line \d+\.?\n\z/;

subtest 'ENVID and ORcpt in xtext, ORcpt as a plain address' => sub {
    my ($new, $old) = run_both(['--cap', 'DSN'], sub {
        my $l = shift;
        my @r;
        push @r, $l->mail('s@example.org', ENVID => 'id+2B1+20x') ? 1 : 0;
        push @r, $l->to('a@example.org', { ORcpt => 'rfc822;orig+2Btag@example.org', Notify => ['success', 'DELAY'] })
            ? 1 : 0;
        @r;
    });
    is($new->{transcript},
       "${LHLO}MAIL FROM:<s\@example.org> ENVID=id+2B1+20x\r\n"
       . "RCPT TO:<a\@example.org> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;orig+2Btag\@example.org\r\n",
       'the xtext decoded and encoded again: the same bytes');
    is_deeply($new->{result}, [1, 1], 'both accepted');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    is_deeply($new->{warnings}, [], 'no warnings');

    my $plain = run_client('Net::LMTP', ['--cap', 'DSN'], sub {
        my $l = shift;
        $l->mail('s@example.org');
        $l->to('a@example.org', { ORcpt => 'orig+tag@example.org' }) ? 1 : 0;
    });
    like($plain->{transcript}, qr/^RCPT TO:<a\@example\.org> ORCPT=rfc822;orig\+2Btag\@example\.org\r$/m,
         'a plain address: rfc822, xtext-encoded by the library');
};

subtest 'malformed options: false, 501, nothing sent' => sub {
    my $r = run_client('Net::LMTP', ['--cap', 'DSN'], sub {
        my $l = shift;
        my @r;
        push @r, $l->mail('s@example.org', ENVID => 'bad+ZZ') ? 1 : 0, $l->code, scalar $l->message;
        push @r, $l->mail('s@example.org') ? 1 : 0;
        push @r, $l->to('a@example.org', { ORcpt => 'rfc822;a+4' }) ? 1 : 0, $l->code;
        push @r, [$l->to('a@example.org', { ORcpt => 'rfc822;a+4', SkipBad => 1 })];
        push @r, $l->to('a@example.org', { Notify => ['NEVER', 'SUCCESS'] }) ? 1 : 0, $l->code, scalar $l->message;
        @r;
    });
    my @r = @{ $r->{result} };
    is_deeply([@r[0, 1]], [0, 501], 'a malformed ENVID: false, 501');
    like($r[2], qr/^\[Net::LMTP\] MAIL FROM parameter 'ENVID=bad\+ZZ': .*'\+XX'/, 'the library says why');
    is_deeply([@r[3 .. 6]], [1, 0, 501, []], 'a malformed ORcpt: false, 501; with SkipBad no address');
    is_deeply([@r[7, 8]], [0, 501], 'NEVER with SUCCESS: false, 501');
    like($r[9], qr/NEVER cannot be combined/, 'the library says why');
    is($r->{transcript}, "${LHLO}MAIL FROM:<s\@example.org>\r\n", 'nothing of them was sent');
    is_deeply($r->{warnings}, [], 'no warnings');
};

subtest 'Notify: unknown values are left out with a warning, the others sent' => sub {
    my $r = run_client('Net::LMTP', ['--cap', 'DSN'], sub {
        my $l = shift;
        $l->mail('s@example.org');
        $l->to('a@example.org', { Notify => ['Failure', 'SOMETIMES', 'delay'] }) ? 1 : 0;
    });
    is_deeply($r->{result}, [1], 'true');
    like($r->{transcript}, qr/^RCPT TO:<a\@example\.org> NOTIFY=FAILURE,DELAY\r$/m, 'the known keywords');
    is(scalar @{ $r->{warnings} }, 1, 'one warning');
    like($r->{warnings}[0], qr/^Net::LMTP::recipient: unknown Notify value 'SOMETIMES' - ignored$at/, 'the warning');
};

subtest 'Bits binary: BINARYMIME and CHUNKING, as Net::SMTP asks' => sub {
    for my $caps (['--cap', 'BINARYMIME'], ['--cap', 'CHUNKING']) {
        my ($new, $old) = run_both($caps, sub {
            my $l = shift;
            $l->mail('s@example.org', Bits => 'binary') ? 1 : 0;
        });
        is($new->{transcript}, "${LHLO}MAIL FROM:<s\@example.org>\r\n", "@$caps alone: left out");
        is(scalar @{ $new->{warnings} }, 1, 'one warning');
        like($new->{warnings}[0], qr/^Net::LMTP::mail: BINARYMIME option not supported by host$at/, 'the warning');
        is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
        is_deeply($new->{warnings}, $old->{warnings}, 'warning as the old module');
    }
    my ($new, $old) = run_both(['--cap', 'BINARYMIME', '--cap', 'CHUNKING'], sub {
        my $l = shift;
        $l->mail('s@example.org', Bits => 'binary') ? 1 : 0;
    });
    is($new->{transcript}, "${LHLO}MAIL FROM:<s\@example.org> BODY=BINARYMIME\r\n", 'both offered: sent');
    is_deeply($new->{warnings}, [], 'no warning');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
};

subtest 'AUTH and XVERP: their own extensions' => sub {
    my ($new, $old) = run_both(['--cap', 'XVERP', '--auth', 'PLAIN'], sub {
        my $l = shift;
        my @r;
        push @r, $l->mail('s@example.org', AUTH => '', XVERP => 1) ? 1 : 0;
        $l->reset;
        push @r, $l->mail('s@example.org', AUTH => '<a@example.org>') ? 1 : 0;
        @r;
    });
    is($new->{transcript},
       "${LHLO}MAIL FROM:<s\@example.org> AUTH=<> XVERP\r\nRSET\r\nMAIL FROM:<s\@example.org> AUTH=<a\@example.org>\r\n",
       'transcript');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    my $r = run_client('Net::LMTP', [], sub {
        my $l = shift;
        $l->mail('s@example.org', XVERP => 1, AUTH => 'x') ? 1 : 0;
    });
    is($r->{transcript}, "${LHLO}MAIL FROM:<s\@example.org>\r\n", 'not offered: left out');
    is(scalar @{ $r->{warnings} }, 2, 'two warnings');
    like($r->{warnings}[0], qr/^Net::LMTP::mail: AUTH option not supported by host$at/, 'AUTH');
    like($r->{warnings}[1], qr/^Net::LMTP::mail: XVERP option not supported by host$at/, 'XVERP');
};

subtest 'supports: liblmtp\'s reading of the LHLO reply' => sub {
    my $f = start_fake('--size', '12345', '--cap', 'DSN', '--cap', 'X-THING some params');
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    is($l->supports('size'), '12345', 'SIZE and its limit');
    is($l->supports('DSN'), '', 'DSN without parameters');
    is($l->supports('x-thing'), 'some params', 'a made-up extension and its parameters');
    is($l->supports('CHUNKING'), undef, 'not offered: undef');
    ok(!defined $l->supports('ETRN', 500, ['nope']), 'with a code and message...');
    is($l->code, 500, '...they become the last reply');
    $l->quit;
};

done_testing();
