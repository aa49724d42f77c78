#!/usr/bin/env bash
# exported_symbols: liblmtp exports exactly the functions lmtp.h declares.
#  - every defined dynamic symbol starts with lmtp_ (the version node LMTP_1
#    aside): no C++ symbol of the core, no libstdc++ inline leaks;
#  - every LMTP_API function of lmtp.h is exported;
#  - every exported symbol is declared in lmtp.h (nothing exported by accident);
#  - every exported symbol is a function bound to the version node LMTP_1.
# Usage: check_exports.sh NM OBJDUMP LIBRARY HEADER
set -euo pipefail
nm=$1 objdump=$2 lib=$3 header=$4

fail=0
problem() {
    echo "FAIL: $*" >&2
    fail=1
}

# Functions declared by the header: the name before the first "(" on each
# line holding an LMTP_API declaration (the #define of LMTP_API excluded).
declared=$(grep -E '^[[:space:]]*LMTP_API[[:space:]]' "$header" |
    sed -E 's/^[^(]*[^a-zA-Z0-9_](lmtp_[a-zA-Z0-9_]+)[[:space:]]*\(.*$/\1/' | sort -u)
if [ -z "$declared" ]; then
    echo "FAIL: no LMTP_API declaration found in $header" >&2
    exit 1
fi
while read -r name; do
    case $name in
        lmtp_*) ;;
        *) problem "cannot read the function name in header line: $name" ;;
    esac
done <<<"$declared"

# "ADDRESS TYPE NAME[@@VERSION]" (binutils >= 2.37 append the version).
nm_out=$("$nm" -D --defined-only "$lib")
exported=$(awk '{ print $NF }' <<<"$nm_out" | sed -E 's/@.*$//' | grep -vx 'LMTP_1' | sort -u)
if [ -z "$exported" ]; then
    echo "FAIL: $lib exports nothing" >&2
    exit 1
fi

while read -r name; do
    case $name in
        lmtp_*) ;;
        *) problem "exported symbol without the lmtp_ prefix: $name" ;;
    esac
done <<<"$exported"

missing=$(comm -23 <(echo "$declared") <(echo "$exported"))
for name in $missing; do problem "declared in lmtp.h but not exported: $name"; done
extra=$(comm -13 <(echo "$declared") <(echo "$exported"))
for name in $extra; do problem "exported but not declared in lmtp.h: $name"; done

# Each export: a function (T) in the text section, versioned LMTP_1.
while read -r _addr type name; do
    name=${name%%@*}
    [ "$name" = LMTP_1 ] && continue
    [ "$type" = T ] || problem "exported symbol $name has nm type $type, not T (a function)"
done <<<"$nm_out"
# objdump -T: "ADDR FLAGS SECTION SIZE VERSION NAME"
while read -r line; do
    name=$(awk '{ print $NF }' <<<"$line")
    case $name in lmtp_*) ;; *) continue ;; esac
    grep -qE '[[:space:]]LMTP_1[[:space:]]' <<<"$line" ||
        problem "exported symbol $name is not bound to version node LMTP_1: $line"
done < <("$objdump" -T "$lib" | grep -E '[[:space:]]lmtp_[A-Za-z0-9_]+$' | grep -v '\*UND\*' || true)

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "$(wc -l <<<"$exported") symbols exported, all lmtp_, all declared in lmtp.h, all LMTP_1"
