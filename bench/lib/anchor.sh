# Sourced by the bench areas: `anchor <script> [args...]` runs the peer
# ../shared/anchors/<script> (its name=value lines on stdout, its stderr
# dropped) and answers non-zero when it is absent or fails.
#
# When BENCH_ANCHOR_CACHE names a directory (scripts/bench.sh sets it for
# `make bench QUICK=1`), a peer run with the same script and arguments
# earlier in the same `make bench` is reused instead of measured again: the
# nginx ceiling and the PostgreSQL anchor serve several areas, and measuring
# each once keeps the quick run short. A full `make bench` measures each
# area's peers next to that area, as each script always did.
anchor() {
	local script=$1 dir=${ANCHORS:-${repo:-.}/../shared/anchors} key out
	shift
	[ -x "$dir/$script" ] || return 1
	if [ -n "${BENCH_ANCHOR_CACHE:-}" ] && [ -d "$BENCH_ANCHOR_CACHE" ]; then
		key=$(echo "$script $*" | tr -c 'A-Za-z0-9._\n' '_')
		out=$BENCH_ANCHOR_CACHE/$key
		if [ -s "$out" ]; then
			echo "# note: $script $* measured earlier in this run; shared" >&2
			cat "$out"
			return 0
		fi
		"$dir/$script" "$@" 2>/dev/null >"$out.tmp" || { rm -f "$out.tmp"; return 1; }
		mv "$out.tmp" "$out"
		cat "$out"
		return 0
	fi
	"$dir/$script" "$@" 2>/dev/null
}
