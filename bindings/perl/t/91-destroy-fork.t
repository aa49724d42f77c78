# DESTROY frees the handle (the socket is closed, nothing is sent: Net::SMTP's
# DESTROY sends no QUIT either); and fork safety: a child that exits, and so
# destroys its copy of the object, does not disturb the parent's session.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();

my $LHLO = default_lhlo();

subtest 'DESTROY closes the connection and sends nothing' => sub {
    my $f = start_fake();
    my $fds = open_fds();
    for (1 .. 50) {
        my $l = Net::LMTP->new($f->host, $f->port) or die $@;
        $l->mail('s@example.org');
    }
    is(open_fds(), $fds, 'every socket was closed');
    {
        my $l = Net::LMTP->new($f->host, $f->port) or die $@;
        is(open_fds(), $fds + 1, 'a live object holds one socket');
        undef $l;
        is(open_fds(), $fds, 'undef: closed');
    }
    my $s = $f->stop;
    is($s->{CONNECTIONS}, 51, 'connections');
    is($f->transcript, ("${LHLO}MAIL FROM:<s\@example.org>\r\n" x 50) . $LHLO, 'no QUIT, nothing else sent');
};

sub fork_child (&) {
    my $child = shift;
    my $pid = fork;
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        $child->();
        exit 0;
    }
    waitpid $pid, 0;
    $?;
}

subtest 'fork: the child drops its copy, the parent goes on' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    ok($l->mail('s@example.org'), 'mail before the fork');
    my $st = fork_child { undef $l };
    is($st, 0, 'the child exited normally');
    ok($l->to('a@example.org'), 'to after the fork');
    ok($l->data("Subject: fork\n\nafter the fork\n"), 'data');
    ok($l->quit, 'quit');
    $f->stop;
    is($f->transcript, "${LHLO}MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\nDATA\r\n"
                       . "Subject: fork\r\n\r\nafter the fork\r\n.\r\nQUIT\r\n", 'the server saw nothing from the child');
    is_deeply([$f->messages], ["Subject: fork\r\n\r\nafter the fork\r\n"], 'delivered');
};

subtest 'fork: the child just exits (global destruction), several times' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    for my $i (1 .. 3) {
        my $st = fork_child { };
        is($st, 0, "child $i exited normally");
        ok($l->mail('s@example.org'), "mail $i");
        ok($l->to('a@example.org'), "to $i");
        $l->data;
        $l->datasend("n $i\n");
        ok($l->dataend, "dataend $i");
    }
    $l->quit;
    $f->stop;
    is($f->transcript, $LHLO . join('', map { "MAIL FROM:<s\@example.org>\r\nRCPT TO:<a\@example.org>\r\n"
                                              . "DATA\r\nn $_\r\n.\r\n" } 1 .. 3) . "QUIT\r\n",
       'the server saw nothing from the children');
};

subtest 'fork in the middle of a message' => sub {
    my $f = start_fake();
    my $l = Net::LMTP->new($f->host, $f->port) or die $@;
    $l->mail('s@example.org');
    $l->to('a@example.org');
    $l->data;
    $l->datasend("first half\n");
    my $st = fork_child { undef $l };
    is($st, 0, 'the child exited');
    $l->datasend("second half\n");
    ok($l->dataend, 'dataend');
    $l->quit;
    $f->stop;
    is_deeply([$f->messages], ["first half\r\nsecond half\r\n"], 'the message is whole');
};

done_testing;
