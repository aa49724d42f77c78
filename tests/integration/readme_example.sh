#!/usr/bin/env bash
# The C example in README.md compiles as strict C99 against lmtp.h and links with liblmtp.
set -euo pipefail
readme=${1:?README.md} include=${2:?include dir} libdir=${3:?library dir} cc=${4:-cc}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
awk '/^```c$/{f=1; next} /^```$/{f=0} f' "$readme" > "$dir/example.c"
grep -q 'lmtp_deliver' "$dir/example.c" || { echo "no C example found in $readme" >&2; exit 1; }
"$cc" -std=c99 -Wall -Wextra -pedantic -Werror -I"$include" "$dir/example.c" -L"$libdir" -llmtp -o "$dir/example"
echo "README example compiles and links"
