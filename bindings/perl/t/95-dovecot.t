# Against a real server: a throwaway Dovecot LMTP ($LMTP_DOVECOT). The two
# examples of the old Net::LMTP documentation, verbatim but for host and
# port; the complete form of the second; and a script of the shape users
# write: several recipients with different fates, read back with response()
# as old scripts do and with results(), checked against the Maildirs.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use IO::Socket::INET;
use Time::HiRes ();
use LMTPTest qw(:all);
use Net::LMTP qw(CMD_OK CMD_REJECT CMD_ERROR);

need_dovecot();
need_fake();

my $dc = start_dovecot();
my $port = $dc->port;
my @users = qw(alice bob full tempfull broken);

sub new_mail { my $u = shift; [$dc->mails($u)] }

# Dovecot puts Return-Path:, Delivered-To: and Received: (folded) on top.
sub message_part {
    my $m = shift;
    1 while $m =~ s/\A(?:Return-Path|Delivered-To|Received):[^\n]*\n(?:[ \t][^\n]*\n)*//;
    $m;
}

# Runs a script (text) in a child perl with the same modules as this test;
# returns (exit status, stdout, stderr).
sub run_script {
    my ($text) = @_;
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    open my $fh, '>', "$dir/example.pl" or die $!;
    print $fh $text;
    close $fh;
    my $cmd = join ' ', map { quotemeta } $^X, perl_inc_args(), "$dir/example.pl";
    my $out = `$cmd 2>'$dir/stderr'`;
    my $st = $?;
    ($st, $out, slurp("$dir/stderr"));
}

sub for_host {
    my ($example, $host, $port) = @_;
    $example =~ s/'mailboxhost', 2003/'$host', $port/ or die 'no host in the example';
    $example;
}

# The examples exactly as Net-LMTP.txt prints them.
my $EXAMPLE1 = <<'EOF';
#!/usr/local/bin/perl -w
use Net::LMTP;
my $lmtp = Net::LMTP->new('mailboxhost', 2003);
print $lmtp->domain,"\n";
EOF

my $EXAMPLE2_AS_PRINTED = <<'EOF';
#!/usr/local/bin/perl -w
use Net::LMTP;
my $lmtp = Net::LMTP->new('mailboxhost', 2003);
$lmtp->datasend("To: postmaster\n");
$lmtp->datasend("A simple test message\n");
EOF

# The second example as the original documentation had it (Net::SMTP's
# example, with LMTP's constructor), delivering to alice.
my $EXAMPLE2_COMPLETE = <<'EOF';
#!/usr/local/bin/perl -w
use Net::LMTP;
my $lmtp = Net::LMTP->new('mailboxhost', 2003);
$lmtp->mail($ENV{USER});
$lmtp->to('alice');
$lmtp->data();
$lmtp->datasend("To: postmaster\n");
$lmtp->datasend("\n");
$lmtp->datasend("A simple test message\n");
$lmtp->dataend();
$lmtp->quit;
EOF

subtest 'example 1: prints the domain' => sub {
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Timeout => 5) or die $!;
    my $banner = <$s>;
    $banner =~ s/\r?\n\z//;
    close $s;
    my ($domain) = $banner =~ /^220 (\S+)/;
    ok(defined $domain, "Dovecot's banner: $banner");
    my ($st, $out, $err) = run_script(for_host($EXAMPLE1, '127.0.0.1', $port));
    is($st, 0, 'exit status 0');
    is($out, "$domain\n", 'printed the domain');
    is($err, '', 'nothing on STDERR (with -w)');
};

subtest 'example 2 as printed: no mail/to/data, runs without dying or sending garbage' => sub {
    my ($st, $out, $err) = run_script(for_host($EXAMPLE2_AS_PRINTED, '127.0.0.1', $port));
    is($st, 0, 'Dovecot: exit status 0');
    is($err, '', 'nothing on STDERR (with -w)');
    is_deeply([map { @{ new_mail($_) } } @users], [], 'nothing delivered');

    my $f = start_fake();
    ($st, $out, $err) = run_script(for_host($EXAMPLE2_AS_PRINTED, $f->host, $f->port));
    is($st, 0, 'fake: exit status 0');
    $f->stop;
    is($f->transcript, default_lhlo(), 'the fake received LHLO and nothing else');

    my $g = start_fake();
    my $o = OldLMTP->new($g->host, $g->port) or die $@;
    $o->datasend("To: postmaster\n");
    $o->datasend("A simple test message\n");
    undef $o;
    # The fake writes what it reads as it reads it: wait for it before stopping it.
    LMTPTest::wait_until(sub { $g->transcript =~ /simple test message/ }, 5);
    $g->stop;
    like($g->transcript, qr/^To: postmaster\r\n/m, '(the old module sent the lines as commands)');
};

subtest 'example 2 complete: delivered to alice byte for byte' => sub {
    local $ENV{USER} = 'sender@example.org';
    my ($st, $out, $err) = run_script(for_host($EXAMPLE2_COMPLETE, '127.0.0.1', $port));
    is($st, 0, 'exit status 0');
    is($err, '', 'nothing on STDERR (with -w)');
    my $m = new_mail('alice');
    is(scalar @$m, 1, 'one message for alice');
    is(message_part($m->[0] // ''), "To: postmaster\n\nA simple test message\n", 'the message, byte for byte');
    like($m->[0] // '', qr/\AReturn-Path: <sender\@example\.org>\n/, 'Return-Path from MAIL FROM');
};

my @RCPT = map { "$_\@example.org" } qw(alice bob full tempfull nosuch);
my @PIECES = ("From: Sender <sender\@example.org>\n", "To: alice, bob, full, tempfull, nosuch\n",
              "Subject: a real server\n", "\n", ".leading dot\n..two dots\n", ".\n", "a line in ",
              "three ", "pieces\n", "caf\xc3\xa9 \xe9t\xe9\n", "last line\n");
my $BODY = join '', @PIECES;

subtest 'several recipients: response as old scripts read it, results, Maildirs' => sub {
    my %before = map { ($_ => scalar @{ new_mail($_) }) } @users;
    my $l = Net::LMTP->new('127.0.0.1', $port, Timeout => 30) or die $@;
    ok($l->mail('sender@example.org'), 'mail');
    my @ok = $l->to(@RCPT, { SkipBad => 1 });
    is_deeply(\@ok, [@RCPT[0 .. 3]], 'SkipBad: nosuch refused at RCPT');
    is($l->code, 550, 'the last RCPT reply: 550');
    ok($l->data, 'data');
    ok($l->datasend($_), 'datasend') for @PIECES;
    my %got;
    $got{ $ok[0] } = [$l->dataend ? 'true' : 'false', $l->code, scalar $l->message];
    for my $rcpt (@ok[1 .. $#ok]) {
        my $class = $l->response;
        $got{$rcpt} = [$class, $l->code, scalar $l->message];
    }
    is_deeply([@{ $got{'alice@example.org'} }[0, 1]], ['true', 250], 'alice: dataend true, 250');
    like($got{'alice@example.org'}[2], qr/^2\.0\.0 <alice\@example\.org> .*Saved\n\z/, 'alice: message');
    is_deeply([@{ $got{'bob@example.org'} }[0, 1]], [CMD_OK, 250], 'bob: CMD_OK, 250');
    like($got{'bob@example.org'}[2], qr/^2\.0\.0 <bob\@example\.org> .*Saved\n\z/, 'bob: message');
    is_deeply([@{ $got{'full@example.org'} }[0, 1]], [CMD_ERROR, 552], 'full: CMD_ERROR, 552');
    like($got{'full@example.org'}[2], qr/^5\.2\.2 <full\@example\.org> Quota exceeded/, 'full: message');
    is_deeply([@{ $got{'tempfull@example.org'} }[0, 1]], [CMD_REJECT, 452], 'tempfull: CMD_REJECT, 452');
    like($got{'tempfull@example.org'}[2], qr/^4\.2\.2 <tempfull\@example\.org> /, 'tempfull: message');
    my $t0 = Time::HiRes::time();
    is($l->response, CMD_ERROR, 'then response: CMD_ERROR');
    cmp_ok(Time::HiRes::time() - $t0, '<', 1, 'at once');

    my @r = map { [@$_{qw(address status stage code enhanced)}] } $l->results;
    is_deeply(\@r, [['alice@example.org', 'ok', 'data', 250, '2.0.0'],
                    ['bob@example.org', 'ok', 'data', 250, '2.0.0'],
                    ['full@example.org', 'permfail', 'data', 552, '5.2.2'],
                    ['tempfull@example.org', 'tempfail', 'data', 452, '4.2.2'],
                    ['nosuch@example.org', 'permfail', 'rcpt', 550, '5.1.1']],
              'results: every recipient in RCPT order');
    ok($l->quit, 'quit');

    for my $u (qw(alice bob)) {
        my $m = new_mail($u);
        is(scalar @$m, $before{$u} + 1, "$u got it");
        my ($new) = grep { index($_, 'Subject: a real server') >= 0 } @$m;
        is(message_part($new // ''), $BODY, "$u: the message, byte for byte");
    }
    for my $u (qw(full tempfull)) {
        is(scalar @{ new_mail($u) }, $before{$u}, "$u did not");
    }
};

subtest 'a script that does not read the replies, then a second message' => sub {
    my %before = map { ($_ => scalar @{ new_mail($_) }) } @users;
    my $l = Net::LMTP->new('127.0.0.1', $port, Timeout => 30) or die $@;
    $l->mail('sender@example.org');
    $l->to('alice@example.org', 'full@example.org', 'bob@example.org');
    $l->data;
    $l->datasend("Subject: first\n\nfirst\n");
    ok($l->dataend, 'dataend (alice)');
    ok($l->mail('sender@example.org'), 'the next MAIL, with two replies unread');
    is($l->message, "2.1.0 OK\n", 'gets its own reply');
    ok($l->to('bob@example.org'), 'to bob');
    ok($l->data("Subject: second\n\nsecond\n"), 'data');
    ok($l->quit, 'quit');
    is(scalar @{ new_mail('alice') }, $before{alice} + 1, 'alice: one more');
    is(scalar @{ new_mail('bob') }, $before{bob} + 2, 'bob: two more');
    is(scalar @{ new_mail('full') }, $before{full}, 'full: none');
};

subtest 'deliver, and the unix socket' => sub {
    my %before = map { ($_ => scalar @{ new_mail($_) }) } @users;
    my $l = Net::LMTP->new($dc->socket_path, 0) or die $@;
    is($l->host, $dc->socket_path, 'connected over the unix socket');
    my @r = $l->deliver('sender@example.org', ['alice@example.org', 'broken@example.org', 'nosuch@example.org'],
                        "Subject: deliver\n\n.dot\n");
    is_deeply([map { [$_->{status}, $_->{code}] } @r], [['ok', 250], ['tempfail', 451], ['permfail', 550]],
              'alice ok, broken 451, nosuch 550');
    ok($l->quit, 'quit');
    my ($m) = grep { index($_, 'Subject: deliver') >= 0 } @{ new_mail('alice') };
    is(message_part($m // ''), "Subject: deliver\n\n.dot\n", 'alice: the message');
    is(scalar @{ new_mail('broken') }, 0, 'broken: none');
};

$dc->stop;
done_testing;
