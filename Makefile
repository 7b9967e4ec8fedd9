# ridehail — plain GNU Makefile.
#
#   make              build bin/ridehaild and the tools
#   make run          run the daemon on the local default (own PostgreSQL under var/)
#   make demo         the daemon plus a simulated city (bin/ridehail-sim), then the report
#   make check        every test: unit, fuzz-corpus regression, bench summary, end-to-end
#   make check SANITIZE=1   the same under AddressSanitizer + UBSan (build/san/)
#   make chaos        a simulated city through SIGKILLs and database and NATS outages,
#                     then nothing lost, nobody stuck (tests/chaos/chaos.py; CHAOS_ARGS)
#   make soak         30 minutes of bookings at half the measured capacity (bench/soak.sh)
#   make bench        every benchmark and one summary table (bench/results/);
#                     make bench QUICK=1 a reduced set; make bench-<area> one area
#   make deps         install build/run/test dependencies (Debian 12, apt)
#   make install      the daemon, its data and a systemd unit (PREFIX, DESTDIR, SYSCONFDIR)
#
# Each module lists its sources in src/<module>/module.mk; this file only
# knows how to build what those lists name.

SANITIZE ?= 0
CC       ?= cc
PYTHON   ?= /usr/bin/python3
PKGS     := libevent libpq libcjson libsodium readosm libnats

ifeq ($(SANITIZE),1)
O        := build/san
BINDIR   := build/san/bin
SANFLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
OPT      := -O1
else
O        := build/release
BINDIR   := bin
SANFLAGS :=
OPT      := -O2
endif

VERSION  := $(shell cat VERSION 2>/dev/null || echo 0.0.0)
GIT_REV  := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)

WARN     := -Wall -Wextra -Werror -Wformat=2 -Wstrict-prototypes -Wmissing-prototypes \
            -Wshadow -Wpointer-arith -Wvla -Wno-unused-parameter -Wno-missing-field-initializers
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CPPFLAGS += -Iinclude -I$(O)/gen -D_GNU_SOURCE -DRH_VERSION='"$(VERSION)"' -DRH_GIT_REV='"$(GIT_REV)"'
CFLAGS   ?= -g $(OPT)
CFLAGS   += -std=c11 $(WARN) $(SANFLAGS) -MMD -MP
LDFLAGS  += $(SANFLAGS)
LDLIBS   += $(PKG_LIBS) -lbz2 -lm -lpthread

# Filled by the module.mk files.
LIB_SRCS   :=
UNIT_SRCS  :=
FUZZ_SRCS  :=
TOOLS      :=
BENCHES    :=
LIB_GEN_OBJS :=

include $(sort $(wildcard src/*/module.mk))
include tests/unit/module.mk
include tests/fuzz/module.mk
-include bench/module.mk

MIGRATIONS     := $(sort $(wildcard sql/[0-9]*.sql))
FUNCTION_FILES := $(sort $(wildcard sql/functions/[0-9]*.sql))

LIB_OBJS  := $(LIB_SRCS:%.c=$(O)/%.o) $(O)/gen/migrations.o $(O)/gen/openapi.o $(LIB_GEN_OBJS)
UNIT_OBJS := $(UNIT_SRCS:%.c=$(O)/%.o)
LIBRH     := $(O)/libridehail.a

.PHONY: install all run demo chaos soak check check-layers check-unit check-fuzz check-bench-summary check-e2e check-config-doc bench deps deps-check \
        clean clean-db stop-db stop-nats clean-nats fuzz lint format
.DEFAULT_GOAL := all
.SECONDARY:

all: $(BINDIR)/ridehaild $(TOOLS:%=$(BINDIR)/%)

V ?= 0
ifeq ($(V),0)
Q := @
else
Q :=
endif

$(O)/%.o: %.c
	@mkdir -p $(@D)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -c -o $@ $<

$(LIBRH): $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

# Migrations and function files are compiled into the daemon, so a deployed
# binary needs no sql/ folder (see include/store/migrations.h).
$(O)/build-aux/embed: build-aux/embed.c include/trip/trip_row.def
	@mkdir -p $(@D)
	$(CC) -std=c11 -O1 -Iinclude -o $@ $<

$(O)/gen/migrations.c: $(MIGRATIONS) $(FUNCTION_FILES) $(O)/build-aux/embed
	@mkdir -p $(@D)
	$(O)/build-aux/embed $(MIGRATIONS) --functions $(FUNCTION_FILES) > $@.tmp && mv $@.tmp $@

# The function files as the daemon carries them (placeholders expanded), for
# make install.
FUNCTION_GEN := $(FUNCTION_FILES:sql/functions/%=$(O)/gen/functions/%)
$(O)/gen/functions/%.sql: sql/functions/%.sql $(O)/build-aux/embed
	@mkdir -p $(@D)
	$(O)/build-aux/embed --expand $< > $@.tmp && mv $@.tmp $@

$(O)/gen/migrations.o: $(O)/gen/migrations.c
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Wno-missing-prototypes -c -o $@ $<

# docs/openapi.yaml, as JSON, is compiled in too: GET /openapi.json serves it.
$(O)/gen/openapi.c: docs/openapi.yaml build-aux/openapi_json.py
	@mkdir -p $(@D)
	$(PYTHON) build-aux/openapi_json.py docs/openapi.yaml > $@.tmp && mv $@.tmp $@

$(O)/gen/openapi.o: $(O)/gen/openapi.c
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) -Wno-missing-prototypes -Wno-overlength-strings -c -o $@ $<

$(BINDIR)/ridehaild: $(O)/src/daemon/main.o $(LIBRH)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BINDIR)/%: $(O)/tools/%.o $(LIBRH)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The simulator is one program in several files (tools/sim/, one job each).
SIM_TOOL_OBJS := $(patsubst %.c,$(O)/%.o,$(wildcard tools/sim/*.c))
$(BINDIR)/ridehail-sim: $(SIM_TOOL_OBJS) $(LIBRH)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/tests/unit/run: $(UNIT_OBJS) $(LIBRH)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# ---------------------------------------------------------------- tests
# deps-check installs what is missing (a fresh machine), and is quick otherwise.
deps:
	scripts/deps.sh install

deps-check:
	@scripts/deps.sh check || scripts/deps.sh install

check: deps-check
	$(MAKE) check-layers check-names check-unit check-fuzz check-bench-summary check-e2e

# Every include runs down the layers (docs/architecture.md).
check-layers:
	$(PYTHON) scripts/check_layers.py

# Every function carries its module's prefix (scripts/check_names.py: the
# prefixes each folder allows) and takes at most 80 lines: check-names prints
# the offenders and fails while there are any. check-names-report counts them
# by file and does not fail. --unused lists exported functions no other file
# calls.
.PHONY: check-names check-names-report
check-names:
	$(PYTHON) scripts/check_names.py

check-names-report:
	$(PYTHON) scripts/check_names.py --report

check-unit: $(O)/tests/unit/run
	$(O)/tests/unit/run

check-fuzz: $(FUZZ_SRCS:tests/fuzz/%.c=$(O)/tests/fuzz/%)
	@for f in $^; do n=$$(basename $$f); \
	  echo "fuzz corpus: $$n"; $$f tests/fuzz/corpus/$${n%_fuzz} || exit 1; done

# A fuzz target built with gcc runs its corpus (a regression test); `make fuzz`
# builds the same targets with clang's libFuzzer for real fuzzing.
$(O)/tests/fuzz/%: $(O)/tests/fuzz/%.o $(O)/tests/fuzz/corpus_driver.o $(LIBRH)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

fuzz:
	scripts/fuzz.sh $(FUZZ)

# The summary of `make bench` (scripts/bench_summary.py) on canned output.
check-bench-summary:
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/bench

check-e2e: all
	RIDEHAILD=$(CURDIR)/$(BINDIR)/ridehaild BINDIR=$(CURDIR)/$(BINDIR) SANITIZE=$(SANITIZE) \
	  $(PYTHON) -m pytest -q -rs -p no:cacheprovider $(or $(E2E),tests/e2e) $(PYTEST_ARGS)

# A simulated city while the daemon is SIGKILLed 20 times and PostgreSQL and
# NATS go away; the checks afterwards (tests/chaos/chaos.py --help). The short
# version (3 kills, one 5 s outage) runs in check-e2e (tests/e2e/test_chaos.py).
chaos: all
	$(PYTHON) tests/chaos/chaos.py --bindir $(CURDIR)/$(BINDIR) $(CHAOS_ARGS)

# Bookings at half the measured capacity for 30 minutes: memory, descriptors,
# latency drift, errors (bench/soak.sh; SOAK_MINUTES, SOAK_RATE...).
soak: all
	bench/soak.sh

# ---------------------------------------------------------------- running
# make run and make demo build with one job per core (JOBS=), unless make
# was already given -j.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
PARALLEL = $(if $(filter -j% j%,$(MAKEFLAGS)),,-j$(JOBS))

run: deps-check
	$(MAKE) $(PARALLEL) all
	scripts/run.sh

demo: deps-check
	$(MAKE) $(PARALLEL) all
	scripts/demo.sh

stop-db:
	scripts/localdb.sh stop

clean-db:
	scripts/localdb.sh destroy

stop-nats:
	scripts/localnats.sh stop

clean-nats:
	scripts/localnats.sh destroy

# QUICK=1: reduced knobs in every area (see the top of each bench/<area>.sh).
QUICK ?= 0
bench: all
	QUICK=$(QUICK) scripts/bench.sh all

bench-%: all
	QUICK=$(QUICK) scripts/bench.sh $*

# ---------------------------------------------------------------- installing
# make install [PREFIX=/usr/local] [DESTDIR=] [SYSCONFDIR=/etc]: scripts/install.sh
# says what goes where. The installed ridehaild is linked apart, with its
# default configuration at $(SYSCONFDIR)/ridehail/ridehaild.conf.
PREFIX      ?= /usr/local
SYSCONFDIR  ?= /etc
UNITDIR     ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
INST_CONF   := $(SYSCONFDIR)/ridehail/ridehaild.conf

# Rewritten only when the path changes, so main.o is rebuilt only then.
$(O)/install/default-config: FORCE
	@mkdir -p $(@D)
	@echo '$(INST_CONF)' | cmp -s - $@ || echo '$(INST_CONF)' > $@

$(O)/install/main.o: src/daemon/main.c $(O)/install/default-config
	@mkdir -p $(@D)
	$(Q)$(CC) $(CPPFLAGS) -DRH_DEFAULT_CONFIG='"$(INST_CONF)"' $(PKG_CFLAGS) $(CFLAGS) -c -o $@ $<

$(O)/install/ridehaild: $(O)/install/main.o $(LIBRH)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

install: $(O)/install/ridehaild $(BINDIR)/ridehail-sim $(FUNCTION_GEN)
	DESTDIR='$(DESTDIR)' PREFIX='$(PREFIX)' SYSCONFDIR='$(SYSCONFDIR)' UNITDIR='$(UNITDIR)' \
	  SYSUSERSDIR='$(SYSUSERSDIR)' DAEMON='$(O)/install/ridehaild' SIM='$(BINDIR)/ridehail-sim' \
	  FUNCTIONS='$(O)/gen/functions' scripts/install.sh

.PHONY: FORCE
FORCE:

clean:
	rm -rf build bin

# Header dependencies of every object built so far (unit, fuzz, tools too).
-include $(shell find $(O) -name "*.d" 2>/dev/null)
