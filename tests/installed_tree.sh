#!/usr/bin/env bash
# Install the built tree into a scratch prefix, then build a consumer with
# find_package(shmp) and another with pkg-config, and run both.
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
