#!/usr/bin/env bash
# The README's code examples are programs: every ```c block of README.md is
# extracted, compiled against this build (-Wall -Wextra -Werror) and run
# with a timeout, so what the README shows works and never drifts.
#   - A block must exit 0.
#   - A line `/* prints: TEXT */` in a block: its stdout must contain TEXT.
#   - A line `/* runs: N */`: run it N times (a race shows as a wrong print).
#   - A block whose first line is `/* fragment */` is not a program: it is
#     compiled (not run) inside a function body of a test harness, with
#     shmp.h and the standard headers included.
#   - A block whose first line is `/* mpi: N ranks */` is an MPI program: it
#     is built with mpicc against libshmp_mpi and run under mpiexec with N
#     ranks, when MPI was built (else it is skipped, saying so).
set -euo pipefail
build=$1 src=$2 cc=${3:-cc} mpiexec=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
awk -v dir="$tmp" '
	/^```c[[:space:]]*$/ { n++; f = sprintf("%s/ex%02d.c", dir, n); inblk = 1; next }
	/^```/ && inblk { inblk = 0; close(f); next }
	inblk { print > f }
' "$src/README.md"
count=$(ls "$tmp"/ex*.c 2>/dev/null | wc -l)
[ "$count" -gt 0 ] || { echo "no C examples found in README.md"; exit 1; }
libdir=$(cd "$(dirname "$(find "$build" -maxdepth 1 -name "libshmp.so*" | head -n 1)")" && pwd)
fail=0
for f in "$tmp"/ex*.c; do
	name=$(basename "$f" .c)
	first=$(head -n 1 "$f")
	if [ "$first" = "/* fragment */" ]; then
		{
			printf '#include <shmp.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n#include <ctype.h>\n'
			printf '#pragma GCC diagnostic ignored "-Wunused-variable"\n#pragma GCC diagnostic ignored "-Wunused-but-set-variable"\n'
			printf 'void fragment(void);\nvoid fragment(void)\n{\n'
			cat "$f"
			printf '\n}\n'
		} > "$tmp/$name.frag.c"
		if ! "$cc" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -c -I "$src/include" "$tmp/$name.frag.c" -o "$tmp/$name.o" 2> "$tmp/$name.err"; then
			echo "README example $name (fragment) does not compile:"; cat "$tmp/$name.err"; sed -n '1,200p' "$f" | nl | head -60; fail=1
		else
			echo "ok   $name (fragment, compiled)"
		fi
		continue
	fi
	runner=()
	if ranks=$(sed -n '1s|^/\* mpi: \([0-9]*\) ranks \*/$|\1|p' "$f") && [ -n "$ranks" ]; then
		mpilib=$(find "$build/src/mpi" -maxdepth 1 -name 'libshmp_mpi.so' 2>/dev/null | head -n 1)
		if [ -z "$mpilib" ] || [ -z "$mpiexec" ] || ! command -v mpicc >/dev/null; then
			echo "skip $name (MPI not built here)"
			continue
		fi
		mpidir=$(cd "$(dirname "$mpilib")" && pwd)
		if ! mpicc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I "$src/include" "$f" -o "$tmp/$name" \
			-L "$mpidir" -lshmp_mpi -L "$libdir" -lshmp -Wl,-rpath,"$mpidir:$libdir" -lpthread 2> "$tmp/$name.err"; then
			echo "README example $name (MPI) does not compile:"; cat "$tmp/$name.err"; nl "$f" | head -80; fail=1
			continue
		fi
		extra=()
		"$mpiexec" --version 2>/dev/null | grep -qE "Open MPI|OpenRTE" && extra=(--oversubscribe)
		runner=(env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 "$mpiexec" -n "$ranks" "${extra[@]}")
	elif ! "$cc" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I "$src/include" "$f" -o "$tmp/$name" \
		-L "$libdir" -lshmp -Wl,-rpath,"$libdir" -lpthread 2> "$tmp/$name.err"; then
		echo "README example $name does not compile:"; cat "$tmp/$name.err"; nl "$f" | head -80; fail=1
		continue
	fi
	runs=$(sed -n 's|.*/\* runs: \([0-9]*\) \*/.*|\1|p' "$f" | head -n 1)
	runs=${runs:-1}
	want=$(sed -n 's|.*/\* prints: \(.*\) \*/.*|\1|p' "$f")
	for ((i = 0; i < runs; i++)); do
		if ! out=$(cd "$tmp" && timeout 60 "${runner[@]}" "$tmp/$name" 2>&1); then
			echo "README example $name failed (run $i):"; echo "$out" | head -40; fail=1; break
		fi
		while IFS= read -r w; do
			[ -z "$w" ] && continue
			if ! grep -qF -- "$w" <<< "$out"; then
				echo "README example $name (run $i) did not print '$w':"; echo "$out" | head -40; fail=1; break 2
			fi
		done <<< "$want"
	done
	[ $fail = 0 ] && echo "ok   $name (ran $runs time(s))"
done
exit $fail
