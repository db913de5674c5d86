#!/usr/bin/env bash
# shmp's one entry point, so that a fresh Debian 12 machine needs one command:
#   ./build.sh demo    install what is missing, build, run the main demo
#   ./build.sh test    install what is missing, build, run the whole test suite
#   ./build.sh asan    the same suite under AddressSanitizer + UBSan
#   ./build.sh bench   build and run the benchmarks (peers are optional)
set -euo pipefail
cd "$(dirname "$0")"

# Needed to build and test. The benchmarks' optional peers (python3, ZeroMQ,
# ck) are never required.
PKGS="gcc make cmake pkg-config liburing-dev"
# What only the tests need (the man-page renderer); the demo never waits for these.
TEST_PKGS="scdoc"

install_deps() {
	local missing=() p
	for p in $PKGS; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	local sudo=""
	[ "$(id -u)" -ne 0 ] && sudo="sudo"
	echo "installing: ${missing[*]}"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

build() {
	local dir=$1
	shift
	cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSHMP_WERROR=ON "$@" >/dev/null
	cmake --build "$dir" -j"$(nproc)"
}

case "${1:-}" in
demo)
	install_deps
	build build
	./build/demos/tour
	;;
test)
	install_deps
	PKGS=$TEST_PKGS install_deps
	build build
	(cd build && ctest --output-on-failure)
	;;
asan)
	install_deps
	build build-asan -DSHMP_SANITIZE=ON -DSHMP_BUILD_BENCH=OFF
	(cd build-asan && ctest --output-on-failure)
	;;
bench)
	install_deps
	# The peers measured beside shmp; best effort, never required.
	PKGS="libzmq3-dev libck-dev python3" install_deps || echo "benchmark peers not installed: their figures print n/a"
	build build
	cmake --build build --target bench
	;;
*)
	echo "usage: $0 demo|test|asan|bench" >&2
	exit 2
	;;
esac
