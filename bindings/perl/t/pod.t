# The POD of every module is well-formed (Test::Pod, optional: Debian
# libtest-pod-perl).
use strict;
use warnings;
use Test::More;

eval { require Test::Pod; Test::Pod->VERSION(1.22); Test::Pod->import; 1 }
    or plan skip_all => 'Test::Pod 1.22 is not installed (Debian: libtest-pod-perl)';
all_pod_files_ok(all_pod_files('blib'));
