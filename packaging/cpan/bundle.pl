#!/usr/bin/perl
# Puts into a Net-LMTP distribution directory what it needs of the source tree to build alone:
# the core and the C API (compiled into the module in the bundled mode), the test servers'
# sources (`make test` builds t/bin/fake-lmtp and t/bin/make-test-certs from them), all under
# liblmtp/, and the LICENSE; each file is added to the directory's MANIFEST.
#
#   perl packaging/cpan/bundle.pl SOURCE_ROOT DISTDIR
#
# Used by `make distdir` (so `make dist` and `make disttest`) when Makefile.PL runs in a source
# tree, and by packaging/build-cpan.sh. The one list of what the tarball bundles.
use strict;
use warnings;
use ExtUtils::Manifest ();
use File::Copy ();
use File::Path ();
use File::Spec ();

@ARGV == 2 or die "usage: bundle.pl SOURCE_ROOT DISTDIR\n";
my ($root, $dist) = map { File::Spec->rel2abs($_) } @ARGV;
-f "$root/capi/include/lmtp.h" or die "bundle.pl: $root is not a liblmtp source tree\n";
-f "$dist/MANIFEST" or die "bundle.pl: $dist has no MANIFEST\n";

my @groups = (
    ['bundled liblmtp: the core', sort(glob("$root/core/src/*.{cpp,hpp}")), sort(glob("$root/core/include/lmtp/*.{hpp,h}"))],
    ['bundled liblmtp: the C API', "$root/capi/lmtp.cpp", "$root/capi/include/lmtp.h"],
    ['bundled test servers (make test builds t/bin/)',
     map { "$root/tests/support/$_" }
         qw(fake_lmtp.h fake_server.hpp fake_server.cpp fake_script.cpp fake_certs.cpp fake_main.cpp make_test_certs.cpp nsm-lmtp.pl)],
);

my %add;
foreach my $group (@groups) {
    my ($what, @files) = @$group;
    @files or die "bundle.pl: nothing found for $what\n";
    foreach my $file (@files) {
        (my $rel = $file) =~ s{^\Q$root\E/}{} or die "bundle.pl: $file is outside $root\n";
        copy_file($file, "$dist/liblmtp/$rel");
        $add{"liblmtp/$rel"} = $what;
    }
}
copy_file("$root/LICENSE", "$dist/LICENSE");
$add{LICENSE} = 'the MIT license';

chdir $dist or die "bundle.pl: cannot enter $dist: $!\n";
my $listed = ExtUtils::Manifest::maniread();
ExtUtils::Manifest::maniadd({ map { $_ => $add{$_} } grep { !exists $listed->{$_} } sort keys %add });
printf "bundle.pl: %d files of liblmtp and the LICENSE in %s\n", scalar(keys %add) - 1, $dist;

sub copy_file {
    my ($from, $to) = @_;
    -f $from or die "bundle.pl: $from is missing\n";
    (my $dir = $to) =~ s{/[^/]+$}{};
    File::Path::make_path($dir);
    File::Copy::copy($from, $to) or die "bundle.pl: cannot copy $from to $to: $!\n";
    chmod 0644, $to;
}
