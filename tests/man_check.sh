#!/usr/bin/env bash
# Every exported function (src/shmp.map) is declared in the SYNOPSIS of a
# section-3 page under man/, and every page renders with scdoc (when it is
# installed) into the build tree, with a `.so` link per function. The same
# holds for the MPI library's exports (src/mpi/shmp_mpi.map) when its
# version script exists: the man pages are rendered whether or not MPI was
# found, so its functions are checked either way.
set -euo pipefail
build=$1 src=$2
fail=0
syms=$(awk '/global:/ { g = 1; next } /local:/ { g = 0 } g && /;/ { gsub(/[[:space:];]/, ""); if ($0 != "") print }' "$src/src/shmp.map")
declared=$(for f in "$src"/man/*.3.scd; do sed -n '/^# SYNOPSIS/,/^# DESCRIPTION/p' "$f"; done | grep -o 'shmp_[a-z0-9_]*\**(' | tr -d '*(' | sort -u)
for s in $syms; do
	grep -qx "$s" <<< "$declared" || { echo "no man page declares $s"; fail=1; }
done
mpisyms=""
if [ -f "$src/src/mpi/shmp_mpi.map" ]; then
	mpisyms=$(awk '/global:/ { g = 1; next } /local:/ { g = 0 } g && /;/ { gsub(/[[:space:];]/, ""); if ($0 != "") print }' "$src/src/mpi/shmp_mpi.map")
	for s in $mpisyms; do
		grep -qx "$s" <<< "$declared" || { echo "no man page declares $s (libshmp_mpi)"; fail=1; }
	done
fi
for f in "$src"/man/*.scd; do
	for sec in NAME DESCRIPTION; do
		grep -q "^# $sec" "$f" || { echo "$(basename "$f"): no $sec section"; fail=1; }
	done
	case $f in *.3.scd)
		for sec in SYNOPSIS "RETURN VALUE" ERRORS "SEE ALSO"; do
			grep -q "^# $sec" "$f" || { echo "$(basename "$f"): no $sec section"; fail=1; }
		done;;
	esac
done
if command -v scdoc >/dev/null; then
	for s in $syms $mpisyms; do
		[ -f "$build/man/man3/$s.3" ] || { echo "no rendered page or link for $s in $build/man/man3"; fail=1; }
	done
	for p in shmp.1 shmp.7; do
		[ -f "$build/man/man${p##*.}/$p" ] || { echo "$p not rendered"; fail=1; }
	done
else
	echo "scdoc not installed: sources checked, rendering not"
fi
[ $fail = 0 ] && echo "man pages: $(wc -w <<< "$syms") functions documented${mpisyms:+, and $(wc -w <<< "$mpisyms") of libshmp_mpi}"
exit $fail
