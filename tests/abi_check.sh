#!/usr/bin/env bash
# The ABI: the functions the public headers declare with SHMP_API, the
# symbols src/shmp.map lists (per version node), and what libshmp.so
# exports are the same three sets. A new function must be added to the
# map's node of the release that adds it; a removed one must go from all.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Declarations: from SHMP_API up to the next ';', joined on one line.
cat "$src"/include/shmp/*.h | awk '
	/SHMP_API/ && !/#define/ { decl = ""; on = 1 }
	on { decl = decl " " $0; if ($0 ~ /;/) { print decl; on = 0 } }
' | sed -E 's/\(.*//; s/.*[ *]([a-z_0-9]+)[[:space:]]*$/\1/' | sort -u > "$tmp/headers"
# The map: names ending with ';' inside global: sections.
awk '/global:/ { g = 1; next } /local:/ { g = 0 } g && /;/ { gsub(/[[:space:];]/, ""); if ($0 != "") print }' \
	"$src/src/shmp.map" | sort -u > "$tmp/map"
lib=$(find "$build" -maxdepth 1 -name 'libshmp.so.*' | head -n 1)
nm -D --defined-only "$lib" | awk '$2 ~ /^[TWi]$/ { sub(/@.*/, "", $3); print $3 }' | sort -u > "$tmp/exports"
ok=1
for pair in "headers map" "map exports"; do
	set -- $pair
	if ! diff -u "$tmp/$1" "$tmp/$2" > "$tmp/diff"; then
		echo "ABI: $1 and $2 differ (- only in $1, + only in $2):"
		grep '^[-+][a-z]' "$tmp/diff" || true
		ok=0
	fi
done
# Every version node is named SHMP_<major>.<minor> and nothing else is exported.
bad=$(nm -D --defined-only "$lib" | awk '$2 == "A" && $3 !~ /^SHMP_[0-9]+\.[0-9]+$/ { print $3 }')
[ -z "$bad" ] || { echo "ABI: unexpected version nodes: $bad"; ok=0; }
[ $ok = 1 ] && echo "ABI: $(wc -l < "$tmp/headers") functions, headers = map = exports"
[ $ok = 1 ]
