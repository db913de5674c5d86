#!/usr/bin/env bash
# libshmp_mpi's ABI, as tests/abi_check.sh for the core: the functions
# include/shmp/mpi.h declares with SHMP_MPI_API, the symbols
# src/mpi/shmp_mpi.map lists, and what the library exports are one set;
# nothing else is exported.
set -euo pipefail
lib=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk '
	/SHMP_MPI_API/ && !/#define/ { decl = ""; on = 1 }
	on { decl = decl " " $0; if ($0 ~ /;/) { print decl; on = 0 } }
' "$src/include/shmp/mpi.h" | sed -E 's/\(.*//; s/.*[ *]([a-z_0-9]+)[[:space:]]*$/\1/' | sort -u > "$tmp/headers"
awk '/global:/ { g = 1; next } /local:/ { g = 0 } g && /;/ { gsub(/[[:space:];]/, ""); if ($0 != "") print }' \
	"$src/src/mpi/shmp_mpi.map" | sort -u > "$tmp/map"
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
bad=$(nm -D --defined-only "$lib" | awk '$2 == "A" && $3 !~ /^SHMP_MPI_[0-9]+\.[0-9]+$/ { print $3 }')
[ -z "$bad" ] || { echo "ABI: unexpected version nodes: $bad"; ok=0; }
[ $ok = 1 ] && echo "ABI: $(wc -l < "$tmp/headers") functions, headers = map = exports"
[ $ok = 1 ]
