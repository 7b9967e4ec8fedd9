# Sourced by the bench areas: `anchor <script> [args...]` runs the peer
# ../shared/anchors/<script> (its name=value lines on stdout, its stderr
# dropped) and answers non-zero when it is absent or fails.
#
# When BENCH_ANCHOR_CACHE names a directory and the script is one of
# BENCH_ANCHOR_SHARE (scripts/bench.sh sets both for `make bench QUICK=1`,
# sharing postgis.sh), a peer run with the same script and arguments earlier
# in the same `make bench` is reused instead of measured again: the
# PostgreSQL anchor serves dispatch and trips and takes ~20 s to set up.
# Quick peers (nginx, 2 s) are still measured next to each area, and a full
# `make bench` measures every area's peers next to that area.
anchor() {
	local script=$1 dir=${ANCHORS:-${repo:-.}/../shared/anchors} key out
	shift
	[ -x "$dir/$script" ] || return 1
	if [ -n "${BENCH_ANCHOR_CACHE:-}" ] && [ -d "$BENCH_ANCHOR_CACHE" ] &&
		[[ " ${BENCH_ANCHOR_SHARE:-} " == *" $script "* ]]; then
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
