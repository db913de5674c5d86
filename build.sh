#!/usr/bin/env bash
# shmp's one entry point, so that a fresh Debian 12 machine needs one command:
#   ./build.sh demo    install what is missing, build, run the main demo
#   ./build.sh test    install what is missing, build, run the whole test suite
#   ./build.sh asan    the same suite under AddressSanitizer + UBSan
#   ./build.sh tsan    the threaded part of the suite under ThreadSanitizer
#                      (ctest label tsan: see tests/CMakeLists.txt)
#   ./build.sh bench   build and run the benchmarks (peers are optional)
set -euo pipefail
cd "$(dirname "$0")"

# Needed to build and test. The benchmarks' optional peers (python3, ZeroMQ,
# ck) are never required.
PKGS="gcc make cmake pkg-config liburing-dev"
# What only the tests need (the man-page renderer; Open MPI, so that the
# MPI component shmp::mpi is built and its tests run); the demo never
# waits for these.
TEST_PKGS="scdoc openmpi-bin libopenmpi-dev"

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

# The benchmarks, all of them or those named (`./build.sh bench pool lock`),
# quiet and loaded (tests/bench/bench.h), each program after the other so
# that one failing does not hide the others' figures. The whole output also
# goes to build/bench-YYYYmmdd-HHMM.txt, from which the README's tables are
# made. BENCH_QUICK=1: a smoke run (1 round, small sizes, meaningless
# figures); BENCH_REPS=n: rounds per state (default 5).
# bench_mpi (the MPI component) starts itself under mpiexec with 3 ranks on
# this machine (as root with Open MPI's OMPI_ALLOW_RUN_AS_ROOT* variables);
# it is skipped, with a line saying so, when MPI was not found.
BENCHES="process lock counter ring pool dict pipeline memory mpi"

bench_peer() { # yes/no: was the peer's library found when build/ was configured
	grep -q "^$1:FILEPATH=/" build/CMakeCache.txt && echo yes || echo no
}

bench_all() {
	local failed="" b
	echo "# shmp benchmarks: $(date '+%Y-%m-%d %H:%M:%S %z')"
	echo "# commit $(git describe --always --dirty 2>/dev/null || echo '?'); $(uname -sr); $(nproc) CPUs online"
	echo "# uptime:$(uptime)"
	echo "# $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null || echo 'cpu: ?')"
	echo "# peers: python3 $(command -v python3 >/dev/null && echo yes || echo no); ZeroMQ $(bench_peer ZMQ_LIBRARY);" \
		"ck $(bench_peer CK_LIBRARY)"
	echo "# BENCH_QUICK=${BENCH_QUICK:-0} BENCH_REPS=${BENCH_REPS:-default}; programs: $*"
	for b in "$@"; do
		if [ "$b" = mpi ] && [ ! -x build/tests/bench/bench_mpi ]; then
			echo "--- bench_mpi: skipped: MPI not found when build/ was configured (openmpi-bin libopenmpi-dev)"
			continue
		fi
		if [ ! -x "build/tests/bench/bench_$b" ]; then
			echo "!!! bench_$b: no such benchmark built"
			failed="$failed $b"
			continue
		fi
		"./build/tests/bench/bench_$b" || {
			echo "!!! bench_$b FAILED (exit status $?)"
			failed="$failed $b"
		}
	done
	[ -z "$failed" ] || { echo "!!! failed:$failed"; return 1; }
}

bench_summary() {
	local out=$1
	echo
	echo "######## summary: $(date '+%Y-%m-%d %H:%M:%S'), uptime:$(uptime)"
	echo "# lines with a goal judged: $(grep -cE ': (MET|MISSED|-), (MET|MISSED|-)$' "$out" || true);" \
		"missed quiet: $(grep -cE ': MISSED, ' "$out" || true); missed loaded: $(grep -cE ', MISSED$' "$out" || true)"
	echo "# lines with a goal missed in either state:"
	grep -E ': (MISSED, [A-Z-]+|[A-Z-]+, MISSED)$' "$out" || echo "(none)"
	grep -E '^!!! ' "$out" || true
	echo "# the whole output: $out"
}

run_benches() {
	local out rc=0
	out="build/bench-$(date +%Y%m%d-%H%M%S).txt"
	# shellcheck disable=SC2086 # the default list is split on purpose
	[ $# -gt 0 ] || set -- $BENCHES
	bench_all "$@" 2>&1 | tee "$out" || rc=$?
	bench_summary "$out" | tee -a "$out"
	return "$rc"
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
	# Two at a time: serial, the sanitized suite is CI's longest step
	# (the whole CI run must stay well under 20 minutes on 2 cores).
	(cd build-asan && ctest -j2 --output-on-failure)
	;;
tsan)
	install_deps
	build build-tsan -DSHMP_TSAN=ON -DSHMP_BUILD_BENCH=OFF -DSHMP_BUILD_DEMOS=OFF -DSHMP_MPI=OFF
	# Every report fails its test (exit code 66); tests/tsan.supp holds
	# the false positives, each with its reason.
	(cd build-tsan && TSAN_OPTIONS="suppressions=$PWD/../tests/tsan.supp second_deadlock_stack=1 ${TSAN_OPTIONS:-}" \
		ctest -L tsan --output-on-failure)
	;;
bench)
	install_deps
	# The peers measured beside shmp; best effort, never required.
	PKGS="libzmq3-dev libck-dev python3" install_deps || echo "benchmark peers not installed: their figures print n/a"
	# bench_mpi's MPI (best effort too: without it bench_mpi is skipped).
	PKGS="openmpi-bin libopenmpi-dev" install_deps || echo "Open MPI not installed: bench_mpi is skipped"
	build build
	shift
	run_benches "$@"
	;;
*)
	echo "usage: $0 demo|test|asan|tsan|bench" >&2
	exit 2
	;;
esac
