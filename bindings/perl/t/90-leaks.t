# No leaks: Test::LeakTrace around whole sessions (Perl values), and the
# process's RSS over 10,000 objects created, used and dropped (the C side:
# handles, buffers, sockets), which must stay flat.
use strict;
use warnings;
use lib 't/lib';
use Test::More;
use LMTPTest qw(:all);
use Net::LMTP;

need_fake();
# Test::LeakTrace (optional) checks the Perl values; the RSS checks below need nothing.
my $have_leaktrace = eval { require Test::LeakTrace; Test::LeakTrace->import; 1 };

my $f = start_fake('--rules', 'full@example.org=250,552;nosuch@example.org=550', '--record-limit', '64');
my ($host, $port) = ($f->host, $f->port);

SKIP: {
    skip 'Test::LeakTrace is not installed (Debian: libtest-leaktrace-perl)', 5 unless $have_leaktrace;

    # What is made once per process is no leak: the host's name for the default
    # Hello (Net::Domain loads and caches it on first use).
    Net::LMTP->new($host, $port)->quit;

    no_leaks_ok(sub {
        my $l = Net::LMTP->new($host, $port, Hello => 'leak.example', Timeout => 10) or die $@;
        $l->mail('s@example.org');
        $l->to('a@example.org', 'full@example.org');
        $l->to('nosuch@example.org');
        $l->data;
        $l->datasend("Subject: leak\n\n");
        $l->datasend(["a\n", ".b\n"]);
        $l->dataend;
        $l->response;
        my @r = $l->results;
        my @m = $l->message;
        my $c = $l->code;
        $l->quit;
    }, 'a session with mail/to/data/datasend/dataend/response/results/quit');

    no_leaks_ok(sub {
        my $l = Net::LMTP->new($host, $port) or die $@;
        my @r = $l->deliver('s@example.org', ['a@example.org', 'full@example.org', 'nosuch@example.org'],
                            "Subject: deliver\n\nx\n");
        @r = $l->deliver('s@example.org', ["bad\r\n\@example.org"], "x\n");
        $l->quit;
    }, 'deliver');

    no_leaks_ok(sub {
        my $l = Net::LMTP->new($host, $port) or die $@;
        $l->expand('list');
        $l->help;
        $l->verify('a@example.org');
        $l->hello('again.example');
        $l->command('NOOP')->response;
        $l->mail("bad\0\@example.org");
        eval { $l->mail("\x{263A}\@example.org") };
        # dropped without quit
    }, 'other methods, local refusals, a croak, no quit');

    my $closed = free_port();
    no_leaks_ok(sub {
        my $l = Net::LMTP->new('127.0.0.1', $closed, Timeout => 5);
    }, 'a failed new');

    no_leaks_ok(sub {
        my $out = capture_stderr {
            my $l = Net::LMTP->new($host, $port, Debug => 1) or die $@;
            $l->mail('s@example.org');
            $l->quit;
        };
    }, 'with Debug');
}

sub cycle {
    my ($h, $p, $i) = @_;
    my $l = Net::LMTP->new($h, $p, Timeout => 10) or die "new: $@";
    $l->mail('s@example.org') or die 'mail: ' . $l->message;
    $l->to('a@example.org') or die 'to: ' . $l->message;
    $l->data or die 'data: ' . $l->message;
    $l->datasend("Subject: $i\n\nmessage $i\n");
    $l->dataend or die 'dataend: ' . $l->message;
    my @r = $l->results;
    $l->quit;
}

# Over a unix socket (the same objects, the cheapest transport): 10,000.
my $dir = File::Temp::tempdir(CLEANUP => 1);
my $uf = start_fake('--unix', "$dir/s", '--record-limit', '64');
cycle($uf->host, 0, $_) for 1 .. 1000;
my ($rss1, $fds1) = (rss_kb(), open_fds());
cycle($uf->host, 0, $_) for 1001 .. 10_000;
my ($rss2, $fds2) = (rss_kb(), open_fds());
my $s = $uf->stop;
is($s->{MESSAGES}, 10_000, '10,000 objects created, used and dropped');
cmp_ok($rss2 - $rss1, '<', 256, "RSS flat: $rss1 kB after 1,000, $rss2 kB after 10,000");
is($fds2, $fds1, 'no file descriptor left open');

# And over TCP.
cycle($host, $port, $_) for 1 .. 300;
my $rss3 = rss_kb();
cycle($host, $port, $_) for 301 .. 1500;
my $rss4 = rss_kb();
cmp_ok($rss4 - $rss3, '<', 128, "TCP: RSS flat: $rss3 kB after 300, $rss4 kB after 1,500");

done_testing;
