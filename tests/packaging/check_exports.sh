#!/usr/bin/env bash
# exported_symbols: liblmtp exports exactly the functions lmtp.h declares.
#  - every defined dynamic symbol starts with lmtp_ (the version nodes LMTP_*
#    aside): no C++ symbol of the core, no libstdc++ inline leaks;
#  - every LMTP_API function of lmtp.h is exported;
#  - every exported symbol is declared in lmtp.h (nothing exported by accident);
#  - every exported symbol is a function bound to the version node the version
#    script names it in (capi/lmtp.map), else LMTP_1 (1.0's wildcard); a
#    function of a later node is marked "Since <version>" in lmtp.h.
# Usage: check_exports.sh NM OBJDUMP LIBRARY HEADER VERSION_SCRIPT
set -euo pipefail
nm=$1 objdump=$2 lib=$3 header=$4 map=$5

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
exported=$(awk '{ print $NF }' <<<"$nm_out" | sed -E 's/@.*$//' | grep -vE '^LMTP_[0-9.]+$' | sort -u)
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

# Each export: a function (T) in the text section.
while read -r _addr type name; do
    name=${name%%@*}
    [[ $name =~ ^LMTP_[0-9.]+$ ]] && continue
    [ "$type" = T ] || problem "exported symbol $name has nm type $type, not T (a function)"
done <<<"$nm_out"

# The node each function belongs to: the one of the version script naming it, else LMTP_1.
declare -A node_of
while read -r node name; do node_of[$name]=$node; done < <(
    perl -0pe 's{/\*.*?\*/}{}gs' "$map" | tr -s ' \t\n;{}' '\n' | awk '
        /^LMTP_[0-9.]+$/ { node = $0; next }
        /^lmtp_[A-Za-z0-9_]+$/ && node != "LMTP_1" { print node, $0 }')
for name in "${!node_of[@]}"; do
    since=${node_of[$name]#LMTP_}
    grep -B4 -E "[^a-zA-Z0-9_]$name[[:space:]]*\(" "$header" | grep -q "Since $since\." ||
        problem "$name (node ${node_of[$name]}) is not marked \"Since $since.\" in lmtp.h"
done
# objdump -T: "ADDR FLAGS SECTION SIZE VERSION NAME"
while read -r line; do
    name=$(awk '{ print $NF }' <<<"$line")
    case $name in lmtp_*) ;; *) continue ;; esac
    want=${node_of[$name]:-LMTP_1}
    grep -qE "[[:space:]]${want//./\\.}[[:space:]]" <<<"$line" ||
        problem "exported symbol $name is not bound to version node $want: $line"
done < <("$objdump" -T "$lib" | grep -E '[[:space:]]lmtp_[A-Za-z0-9_]+$' | grep -v '\*UND\*' || true)

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "$(wc -l <<<"$exported") symbols exported, all lmtp_, all declared in lmtp.h, each in its version node (${#node_of[@]} after LMTP_1)"
