#!/usr/bin/env bash
# Real fuzzing with libFuzzer: builds the library and the fuzz targets with
# clang -fsanitize=fuzzer,address,undefined and runs them.
#
#   scripts/fuzz.sh                      every target, FUZZ_RUNS executions each (make fuzz)
#   scripts/fuzz.sh list                 list the targets
#   scripts/fuzz.sh ws_frame [seconds]   fuzz one target for a time (default 60 s)
#   scripts/fuzz.sh all [seconds]        each target in turn, for a time
#   make fuzz                            the first; make fuzz FUZZ="utf8 300" the third
#
# FUZZ_RUNS (default 10000000): executions per target in the first form
# (FUZZ_TARGETS="a b" for some of them only); it
# ends with a table of each target's executions, time, rate and crashes
# (also written to build/fuzz/summary.md), and fails if any target crashed or
# fell short of FUZZ_RUNS. docs/fuzzing.md keeps the last table.
#
# Needs Debian's clang and libclang-rt-14-dev; installed here on first use
# (scripts/deps.sh install fuzz).
# The run starts from the committed seeds (tests/fuzz/corpus/<name>/) and
# grows a scratch corpus in build/fuzz/corpus/<name>/, kept across runs
# (a run of millions finds hundreds of inputs: they stay there, the seeds
# stay few). Crashes land in tests/fuzz/crashes/ (ignored by git); once
# fixed, copy the crash into tests/fuzz/corpus/<name>/ so `make check-fuzz`
# keeps it as a regression. To add an input that reaches code the seeds do
# not, copy that one file by hand; to see what a long run added, minimise it
# into a fresh directory:
#   build/fuzz/<name>_fuzz -merge=1 -max_len=512 /tmp/min build/fuzz/corpus/<name>
# One job, one worker: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG=${CLANG:-clang}
scripts/deps.sh check fuzz 2>/dev/null || scripts/deps.sh install fuzz
OUT=build/fuzz
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
RUNS=${FUZZ_RUNS:-10000000}

targets() {
	for f in tests/fuzz/*_fuzz.c; do
		basename "$f" _fuzz.c
	done
}

chosen() {
	if [ -n "${FUZZ_TARGETS:-}" ]; then
		printf '%s\n' $FUZZ_TARGETS
	else
		targets
	fi
}

build_lib() {
	# The library with coverage instrumentation, in its own build directory
	# (O= overrides the Makefile's choice; CFLAGS replaces its warnings,
	# which gcc already enforces).
	make -s O="$OUT" CC="$CLANG" \
		CFLAGS="-O1 -gline-tables-only -fsanitize=fuzzer-no-link $SAN" \
		LDFLAGS="-fsanitize=fuzzer-no-link $SAN" "$OUT/libridehail.a"
}

build_target() {
	local name=$1
	"$CLANG" -g -O1 -fsanitize=fuzzer $SAN -Iinclude -D_GNU_SOURCE \
		$(pkg-config --cflags libevent libpq libcjson libsodium libnats) \
		-o "$OUT/${name}_fuzz" "tests/fuzz/${name}_fuzz.c" "$OUT/libridehail.a" \
		$(pkg-config --libs libevent libpq libcjson libsodium libnats) -lm
}

# run_target NAME -max_total_time=S | -runs=N
run_target() {
	local name=$1 limit=$2
	mkdir -p "$OUT/corpus/$name" tests/fuzz/crashes
	build_target "$name"
	echo "fuzz: $name ($limit)"
	"$OUT/${name}_fuzz" "$limit" -print_final_stats=1 \
		-artifact_prefix="tests/fuzz/crashes/${name}-" \
		"$OUT/corpus/$name" "tests/fuzz/corpus/$name" 2>&1 | tee "$OUT/$name.log" |
		grep -E "^(fuzz|#[0-9]+ +(INITED|DONE)|stat::|==[0-9]+==ERROR|SUMMARY)" || true
}

stat_of() { awk -v k="$2" '$1 == "stat::" k ":" {print $2}' "$OUT/$1.log" | tail -1; }

case "${1:-}" in
list)
	targets
	;;
"")
	build_lib
	summary=$OUT/summary.md
	failed=0
	{
		echo "| target | executions | seconds | executions/s | crashes | seeds |"
		echo "|---|---:|---:|---:|---:|---:|"
	} >"$summary.tmp"
	for t in $(chosen); do
		t0=$(date +%s)
		run_target "$t" "-runs=$RUNS"
		secs=$(($(date +%s) - t0))
		execs=$(stat_of "$t" number_of_executed_units)
		crashes=$(grep -c "^==[0-9]*==ERROR\|deadly signal\|SUMMARY: .*Sanitizer" "$OUT/$t.log" || true)
		seeds=$(find "tests/fuzz/corpus/$t" -type f | wc -l)
		[ "${execs:-0}" -ge "$RUNS" ] && [ "$crashes" -eq 0 ] || failed=1
		printf '| %s | %s | %s | %s | %s | %s |\n' "$t" "${execs:-0}" "$secs" \
			"$(awk -v e="${execs:-0}" -v s="$secs" 'BEGIN { printf "%d", (s > 0) ? e / s : e }')" "$crashes" "$seeds" \
			>>"$summary.tmp"
	done
	mv "$summary.tmp" "$summary"
	echo
	echo "fuzz: $RUNS executions a target ($(date -u +%Y-%m-%d), clang $("$CLANG" -dumpversion), ASan + UBSan):"
	cat "$summary"
	[ "$failed" -eq 0 ] || { echo "fuzz: a target crashed or fell short of $RUNS executions" >&2; exit 1; }
	;;
all)
	build_lib
	for t in $(targets); do
		run_target "$t" "-max_total_time=${2:-60}"
	done
	;;
*)
	[ -f "tests/fuzz/$1_fuzz.c" ] || { echo "no such fuzz target: $1" >&2; exit 2; }
	build_lib
	run_target "$1" "-max_total_time=${2:-60}"
	;;
esac
