use strict;
use warnings;
use Test::More;

use_ok('Net::LMTP');
like(Net::LMTP::XS::library_version(), qr/^\d+\.\d+\.\d+$/, 'liblmtp version');
is(Net::LMTP::CMD_OK(), 2, 'CMD_OK');
ok(!defined eval { Net::LMTP->new('127.0.0.1') }, 'HOST and PORT are both required');
like($@, qr/usage/, 'usage message');
done_testing;
