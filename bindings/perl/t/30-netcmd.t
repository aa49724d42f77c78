# Net::Cmd's methods as Net::LMTP inherited them: datasend (a string, a list,
# an array ref; LF -> CRLF and dot-stuffing, also across calls), dataend,
# code, message (list and scalar), status, ok, command, response, debug.
# Every data case is also run through the old Net::SMTP-based module and the
# bytes on the wire must be the same.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();

my $LHLO = default_lhlo();
my $TX   = "MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\nDATA\r\n";

subtest 'datasend: a string, a list, an array ref' => sub {
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        $l->mail('s@example.org');
        $l->to('a@example.org');
        my @r = ($l->data ? 1 : 0);
        push @r, $l->datasend("Subject: forms\n") ? 1 : 0;
        push @r, $l->datasend("list 1\n", "list 2\n") ? 1 : 0;
        push @r, $l->datasend(["array 1\n", "array 2\n"]) ? 1 : 0;
        push @r, $l->datasend('') ? 1 : 0;
        push @r, $l->datasend() ? 1 : 0;
        push @r, $l->dataend ? 1 : 0;
        @r;
    });
    is_deeply($new->{result}, [1, 1, 1, 1, 1, 1, 1], 'each call returns true');
    is($new->{transcript},
       "$LHLO${TX}Subject: forms\r\nlist 1\r\nlist 2\r\narray 1\r\narray 2\r\n.\r\n", 'transcript');
    is_deeply($new->{messages}, ["Subject: forms\r\nlist 1\r\nlist 2\r\narray 1\r\narray 2\r\n"], 'message');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
};

# [name, [datasend calls], bytes on the wire after DATA (final dot included), decoded message,
#  differs from Net::Cmd on purpose]
# A lone CR never goes on the wire (RFC 5321 4.1.1.4: CR and LF only as CRLF): it ends
# the line, as in Python's smtplib. Net::Cmd sends it as it is; those cases are marked.
my @cases = (
    ['LF becomes CRLF', ["one\ntwo\n"], "one\r\ntwo\r\n.\r\n", "one\r\ntwo\r\n"],
    ['CRLF stays CRLF', ["one\r\ntwo\r\n"], "one\r\ntwo\r\n.\r\n", "one\r\ntwo\r\n"],
    ['a dot at the very start', [".first\nsecond\n"], "..first\r\nsecond\r\n.\r\n", ".first\r\nsecond\r\n"],
    ['a dot after a LF inside a call', ["a\n.b\n"], "a\r\n..b\r\n.\r\n", "a\r\n.b\r\n"],
    ['a call ending in "\n", the next starting with "."', ["a\n", ".b\n"],
     "a\r\n..b\r\n.\r\n", "a\r\n.b\r\n"],
    ['a call ending in "\r", the next starting with "\n."', ["a\r", "\n.b\n"],
     "a\r\n..b\r\n.\r\n", "a\r\n.b\r\n"],
    ['a call ending in "\r\n", the next starting with "."', ["a\r\n", ".b\r\n"],
     "a\r\n..b\r\n.\r\n", "a\r\n.b\r\n"],
    ['an empty call in between keeps the state', ["a\n", '', ".b\n"], "a\r\n..b\r\n.\r\n", "a\r\n.b\r\n"],
    ['a lone "." line', ["x\n.\n", "y\n"], "x\r\n..\r\ny\r\n.\r\n", "x\r\n.\r\ny\r\n"],
    ['".." at a line start', ["x\n..y\n"], "x\r\n...y\r\n.\r\n", "x\r\n..y\r\n"],
    ['a call ending in "\n."', ["x\n.", "y\n"], "x\r\n..y\r\n.\r\n", "x\r\n.y\r\n"],
    ['a call ending in "\n.", the next "\n"', ["x\n.", "\n"], "x\r\n..\r\n.\r\n", "x\r\n.\r\n"],
    ['a dot not at a line start', ["a.b\n", "c.\n"], "a.b\r\nc.\r\n.\r\n", "a.b\r\nc.\r\n"],
    ['no newline at the end: dataend adds CRLF', ["no newline"], "no newline\r\n.\r\n", "no newline\r\n"],
    ['pieces of one line', ["ab", "c", "d\n"], "abcd\r\n.\r\n", "abcd\r\n"],
    ['an empty line first', ["\n", ".x\n"], "\r\n..x\r\n.\r\n", "\r\n.x\r\n"],
    ['a bare CR inside a line ends the line', ["a\rb\n"], "a\r\nb\r\n.\r\n", "a\r\nb\r\n", 1],
    ['a call ending in "\r", the next not starting with "\n"', ["a\r", "b\n"],
     "a\r\nb\r\n.\r\n", "a\r\nb\r\n", 1],
    ['a CR before a CRLF is a line end of its own', ["From: a\r\r\nTo: b\n\nbody\n"],
     "From: a\r\n\r\nTo: b\r\n\r\nbody\r\n.\r\n", "From: a\r\n\r\nTo: b\r\n\r\nbody\r\n", 1],
    ['8-bit bytes and NUL go through', ["caf\xe9\0\n"], "caf\xe9\0\r\n.\r\n", "caf\xe9\0\r\n"],
);

my ($new, $old) = run_both([], sub {
    my $l = shift;
    foreach my $c (@cases) {
        $l->mail('s@example.org');
        $l->to('a@example.org');
        $l->data;
        $l->datasend($_) for @{ $c->[1] };
        $l->dataend;
    }
    1;
});
my (undef, @wire) = split /\Q$TX\E/, $new->{transcript}, -1;
my (undef, @old_wire) = split /\Q$TX\E/, $old->{transcript}, -1;
is(scalar @wire, scalar @cases, 'one message per case');
for my $i (0 .. $#cases) {
    my ($name, $calls, $bytes, $decoded, $differs) = @{ $cases[$i] };
    subtest "datasend: $name" => sub {
        is($wire[$i], $bytes, 'bytes on the wire');
        is($new->{messages}[$i], $decoded, 'message the server stored');
        if ($differs) {
            isnt($wire[$i], $old_wire[$i], 'differs from the old module (it sent a lone CR)');
            unlike($wire[$i], qr/\r(?!\n)/, 'no lone CR on the wire');
        }
        else {
            is($wire[$i], $old_wire[$i], 'bytes as the old module sent them');
        }
    };
}

subtest 'datasend: a call ending in "\r", then dataend' => sub {
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        $l->mail('s@example.org');
        $l->to('a@example.org');
        $l->data;
        $l->datasend("a\r");
        $l->dataend ? 1 : 0;
    });
    is_deeply($new->{result}, [1], 'dataend true');
    # The old module sent "a\r\r\n.\r\n"; the final CR is a line end here.
    like($new->{transcript}, qr/DATA\r\na\r\n\.\r\n\z/, 'the CR ends the line, the dot follows');
    is_deeply($new->{messages}, ["a\r\n"], 'message stored');
};

subtest 'datasend: a long message in many random pieces (streaming state across calls)' => sub {
    srand(20330);
    my @atoms = ("\n", "\r\n", ".", "..", "a", "line", " ", "\n.", "\r\n.", "\n..\n", "x" x 50);
    my $text = join '', map { $atoms[rand @atoms] } 1 .. 30_000;
    my @calls;
    for (my $pos = 0; $pos < length $text;) {
        my $n = 1 + int rand 40;
        push @calls, substr($text, $pos, $n);
        $pos += $n;
    }
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        $l->mail('s@example.org');
        $l->to('a@example.org');
        $l->data;
        $l->datasend($_) for @calls;
        $l->dataend ? 1 : 0;
    });
    (my $decoded = $text) =~ s/(?<!\r)\n/\r\n/g;
    $decoded .= "\r\n" unless $decoded =~ /\r\n\z/;
    is_deeply($new->{result}, [1], scalar(@calls) . ' calls, ' . length($text) . ' bytes: dataend true');
    ok($new->{transcript} eq $old->{transcript}, 'the same bytes on the wire as the old module');
    ok($new->{messages}[0] eq $decoded, 'the server stored the text, LF as CRLF');
};

subtest 'dataend' => sub {
    my ($new, $old) = run_both(['--rules', 'full@example.org=250,552;temp@example.org=250,452'], sub {
        my $l = shift;
        my @r;
        for my $to ('a@example.org', 'full@example.org', 'temp@example.org') {
            $l->mail('s@example.org');
            $l->to($to);
            $l->data;
            $l->datasend("x\n");
            push @r, $l->dataend ? 1 : 0, $l->code, scalar $l->message, $l->status, $l->ok ? 1 : 0;
        }
        push @r, $l->dataend ? 1 : 0;    # nothing open: true, nothing sent
        @r;
    });
    is_deeply($new->{result},
              [1, 250, "2.0.0 <a\@example.org> Saved\n", 2, 1,
               0, 552, "5.2.2 <full\@example.org> Quota exceeded\n", 5, 0,
               0, 452, "4.2.2 <temp\@example.org> Mailbox is full, try again later\n", 4, 0,
               1],
              'true on 2xx, false otherwise; code, message, status, ok');
    is_deeply($new->{result}, $old->{result}, 'as the old module');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
};

subtest 'code, message (list and scalar), status, ok' => sub {
    my $rules = 'multi@example.org=550:first line|second line;plain@example.org=250:Recipient OK';
    for my $enhanced (1, 0) {
        my ($new, $old) = run_both(['--rules', $rules, $enhanced ? () : '--no-enhanced'], sub {
            my $l = shift;
            my @r;
            $l->mail('s@example.org');
            push @r, $l->code, [$l->message], scalar $l->message, $l->status, $l->ok ? 1 : 0;
            $l->to('multi@example.org');
            push @r, $l->code, [$l->message], scalar $l->message, $l->status, $l->ok ? 1 : 0;
            $l->to('plain@example.org');
            push @r, $l->code, [$l->message], scalar $l->message, $l->status, $l->ok ? 1 : 0;
            @r;
        });
        my ($e1, $e5) = $enhanced ? ('2.1.0 ', '5.1.1 ') : ('', '');
        my $e2 = $enhanced ? '2.1.5 ' : '';
        is_deeply($new->{result},
                  [250, ["${e1}OK\n"], "${e1}OK\n", 2, 1,
                   550, ["${e5}first line\n", "${e5}second line\n"], "${e5}first line\n${e5}second line\n", 5, 0,
                   250, ["${e2}Recipient OK\n"], "${e2}Recipient OK\n", 2, 1],
                  ($enhanced ? 'with' : 'without') . ' enhanced codes: every line ends in "\n"');
        is_deeply($new->{result}, $old->{result}, 'as the old module');
    }
};

subtest 'command and response' => sub {
    my ($new, $old) = run_both([], sub {
        my $l = shift;
        my @r;
        my $c = $l->command('NOOP');
        push @r, ref $c, ($c == $l ? 1 : 0);
        push @r, $c->response, $l->code, scalar $l->message;
        push @r, $l->command('HELP', 'MAIL')->response, $l->code;
        push @r, $l->command('VRFY', "a\@example.org\nRCPT TO:<x\@example.org>")->response, $l->code;
        push @r, $l->command('MAIL', 'FROM:<s@example.org>')->response;
        push @r, $l->command('RCPT', 'TO:<a@example.org>')->response;
        push @r, $l->command('DATA')->response, $l->code;
        push @r, $l->datasend("raw\n") ? 1 : 0;
        push @r, $l->dataend ? 1 : 0, $l->code;
        push @r, $l->command('BOGUS')->response, $l->code;
        @r;
    });
    is_deeply($new->{result},
              ['Net::LMTP', 1, 2, 250, "2.0.0 OK\n", 2, 214, 2, 252, 2, 2, 3, 354, 1, 1, 250, 5, 500],
              'command returns the object; response the reply class');
    is($new->{transcript},
       "${LHLO}NOOP\r\nHELP MAIL\r\nVRFY a\@example.org RCPT TO:<x\@example.org>\r\n"
       . "MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\nDATA\r\nraw\r\n.\r\nBOGUS\r\n",
       'transcript: arguments joined by spaces, a newline inside one becomes a space');
    shift @{ $old->{result} };    # ref: OldLMTP
    is_deeply([@{ $new->{result} }[1 .. $#{ $new->{result} }]], $old->{result}, 'as the old module');
    is($new->{transcript}, $old->{transcript}, 'transcript as the old module');
    is_deeply($new->{messages}, ["raw\r\n"], 'message stored');
};

subtest 'command on a closed connection' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    $l->quit;
    my $c = $l->command('NOOP');
    is($c, $l, 'returns the object');
    is($l->code, 421, 'code 421');
    is($l->response, 5, 'response: CMD_ERROR');
};

subtest 'debug: get and set' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    is($l->debug, 0, 'off by default');
    my $out = capture_stderr {
        is($l->debug(1), 0, 'debug(1) returns the old level');
        is($l->debug, 1, 'now 1');
        $l->command('NOOP')->response;
        is($l->debug(0), 1, 'debug(0) returns the old level');
        $l->command('RSET')->response;
    };
    like($out, qr/^Net::LMTP=GLOB\(0x[0-9a-f]+\)>>> NOOP\r\n/m, 'NOOP traced');
    like($out, qr/^Net::LMTP=GLOB\(0x[0-9a-f]+\)<<< 250 2\.0\.0 OK\n/m, 'its reply traced');
    unlike($out, qr/RSET/, 'nothing traced after debug(0)');
    ok(!eval { $l->debug(1, 2); 1 }, 'debug with two arguments croaks');
    like($@, qr/usage/, 'usage');
    $l->quit;
};

subtest 'debug: the class default' => sub {
    my $f = start_fake();
    is(Net::LMTP->debug, 0, 'class default 0');
    is(Net::LMTP->debug(1), 0, 'set to 1: returns the old value');
    is(Net::LMTP->debug, 1, 'now 1');
    my ($l, $l0);
    my $out = capture_stderr {
        $l = Net::LMTP->new($f->host, $f->port) or die $@;
        $l0 = Net::LMTP->new($f->host, $f->port, Debug => 0) or die $@;
        $l0->command('NOOP')->response;
    };
    is($l->debug, 1, 'a new object takes the class default');
    is($l0->debug, 0, 'unless Debug is given');
    my $self = qr/Net::LMTP=GLOB\(0x[0-9a-f]+\)/;
    my $lhlo = default_lhlo();
    like($out, qr/^\Q$l\E>>> \Q$lhlo\E/m, 'the first object is traced');
    unlike($out, qr/^\Q$l0\E/m, 'the second is not');
    is(Net::LMTP->debug(0), 1, 'back to 0');
    my $l2 = Net::LMTP->new($f->host, $f->port) or die $@;
    is($l2->debug, 0, 'new objects: 0 again');
    $l->debug(0);
    $_->quit for $l, $l0, $l2;
};

done_testing;
