# Micro-benchmarks: bench/<name>.c, each with its own main(), linked against
# the library like the tests. `make bench-geo-micro` / `bench-ws-micro`
# build and run one.
# (LIBRH is defined after this file is read, hence the spelled-out path.)
$(O)/bench/%: $(O)/bench/%.o $(O)/libridehail.a
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

.PHONY: bench-geo-micro
bench-geo-micro: $(O)/bench/geo_micro
	$(O)/bench/geo_micro $(BENCH_ARGS)

.PHONY: bench-ws-micro
bench-ws-micro: $(O)/bench/ws_micro
	$(O)/bench/ws_micro
