#!/usr/bin/env bash
# Install the built tree into a scratch prefix, then build a consumer with
# find_package(shmp) and another with pkg-config, and run both; the
# installed shmp command must run from its prefix alone (RUNPATH).
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(find "$tmp/prefix" -name 'libshmp.so.0' -printf '%h\n' | head -n 1)
cmake -S "$src/tests/consumer" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/cmake/consumer"
if command -v pkg-config >/dev/null; then
	export PKG_CONFIG_PATH=$libdir/pkgconfig
	cc -o "$tmp/pc" "$src/tests/consumer/main.c" $(pkg-config --cflags --libs shmp)
	LD_LIBRARY_PATH=$libdir "$tmp/pc"
fi
# Only the public API is exported, under one version node.
bad=$(nm -D --defined-only "$libdir/libshmp.so.0" | awk '$3 !~ /^shmp_/ && $3 != "SHMP_0.1" {print $3}')
[ -z "$bad" ] || { echo "unexpected exported symbols: $bad"; exit 1; }
# The installed shmp command runs from its prefix alone: RUNPATH
# $ORIGIN/../lib, no LD_LIBRARY_PATH, and the library it loads is the
# prefix's (not one installed elsewhere on the machine); moved to another
# prefix it still does.
bin=$tmp/prefix/bin/shmp
[ -x "$bin" ] || { echo "no $bin installed"; exit 1; }
if command -v readelf >/dev/null; then
	readelf -d "$bin" | grep -q 'RUNPATH.*\[\$ORIGIN/\.\./' ||
		{ echo "installed shmp has no RUNPATH \$ORIGIN/../:"; readelf -d "$bin" | grep -E 'R(UN)?PATH'; exit 1; }
fi
for prefix in "$tmp/prefix" "$tmp/moved"; do
	[ "$prefix" = "$tmp/prefix" ] || mv "$tmp/prefix" "$prefix"
	env -u LD_LIBRARY_PATH "$prefix/bin/shmp" ls >/dev/null ||
		{ echo "$prefix/bin/shmp ls failed without LD_LIBRARY_PATH"; exit 1; }
	lib=$(env -u LD_LIBRARY_PATH LD_TRACE_LOADED_OBJECTS=1 "$prefix/bin/shmp" | awk '$1 == "libshmp.so.0" {print $3}')
	case $lib in
	"$prefix"/*) ;;
	*) echo "$prefix/bin/shmp loads libshmp from '$lib', not from its prefix"; exit 1 ;;
	esac
done
