# Every public method and exported constant of Net::LMTP has its own entry in
# the POD (Test::Pod::Coverage, optional: Debian libtest-pod-coverage-perl).
# The OPT_* flags and DEF_REPLY_CODE are internal constants, not API.
use strict;
use warnings;
use Test::More;

eval { require Test::Pod::Coverage; Test::Pod::Coverage->VERSION(1.08); Test::Pod::Coverage->import; 1 }
    or plan skip_all => 'Test::Pod::Coverage 1.08 is not installed (Debian: libtest-pod-coverage-perl)';
pod_coverage_ok('Net::LMTP', { also_private => [qr/^(?:OPT_[A-Z_]+|DEF_REPLY_CODE)$/] });
done_testing;
