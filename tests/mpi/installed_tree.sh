#!/usr/bin/env bash
# The MPI component from an installed tree: find_package(shmp_mpi) and
# pkg-config shmp-mpi both build a consumer, which runs as one rank.
set -euo pipefail
build=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
libdir=$(find "$tmp/prefix" -name 'libshmp_mpi.so.0' -printf '%h\n' | head -n 1)
cmake -S "$src/tests/mpi/consumer" -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/cmake" >/dev/null
LD_LIBRARY_PATH=$libdir "$tmp/cmake/consumer"
if command -v pkg-config >/dev/null; then
	export PKG_CONFIG_PATH=$libdir/pkgconfig
	cc -o "$tmp/pc" "$src/tests/mpi/consumer/main.c" $(pkg-config --cflags --libs shmp-mpi)
	LD_LIBRARY_PATH=$libdir "$tmp/pc"
fi
