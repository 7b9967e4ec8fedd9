#!/usr/bin/env bash
# Real fuzzing with libFuzzer: builds the library and the fuzz targets with
# clang -fsanitize=fuzzer,address,undefined and runs one target.
#
#   scripts/fuzz.sh                     list the targets
#   scripts/fuzz.sh ws_frame [seconds]  fuzz one target (default 60 s)
#   scripts/fuzz.sh all [seconds]       each target in turn
#   make fuzz FUZZ="utf8 300"           the same through make
#
# Needs Debian's clang and libclang-rt-14-dev; installed here on first use
# (scripts/deps.sh install fuzz).
# The run starts from the committed seeds (tests/fuzz/corpus/<name>/) and
# grows a scratch corpus in build/fuzz/corpus/<name>/; crashes land in
# tests/fuzz/crashes/ (ignored by git). Once fixed, copy the crash into
# tests/fuzz/corpus/<name>/ so `make check-fuzz` keeps it as a regression.
# To refresh the seeds from a long run (keep them few and small):
#   build/fuzz/<name>_fuzz -merge=1 -max_len=512 tests/fuzz/corpus/<name> build/fuzz/corpus/<name>
# One job, one worker: the machine is shared.
set -euo pipefail
cd "$(dirname "$0")/.."

CLANG=${CLANG:-clang}
scripts/deps.sh check fuzz 2>/dev/null || scripts/deps.sh install fuzz
OUT=build/fuzz
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"

targets() {
	for f in tests/fuzz/*_fuzz.c; do
		basename "$f" _fuzz.c
	done
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
		$(pkg-config --cflags libevent libpq libcjson libsodium) \
		-o "$OUT/${name}_fuzz" "tests/fuzz/${name}_fuzz.c" "$OUT/libridehail.a" \
		$(pkg-config --libs libevent libpq libcjson libsodium) -lm
}

run_target() {
	local name=$1 secs=$2
	mkdir -p "$OUT/corpus/$name" tests/fuzz/crashes
	build_target "$name"
	echo "fuzz: $name for ${secs}s"
	"$OUT/${name}_fuzz" -max_total_time="$secs" -print_final_stats=1 \
		-artifact_prefix="tests/fuzz/crashes/${name}-" \
		"$OUT/corpus/$name" "tests/fuzz/corpus/$name"
}

case "${1:-}" in
"")
	echo "usage: $0 <target>|all [seconds]; targets:"
	targets | sed 's/^/  /'
	;;
all)
	build_lib
	for t in $(targets); do
		run_target "$t" "${2:-60}"
	done
	;;
*)
	[ -f "tests/fuzz/$1_fuzz.c" ] || { echo "no such fuzz target: $1" >&2; exit 2; }
	build_lib
	run_target "$1" "${2:-60}"
	;;
esac
