# The simulator (bin/ridehail-sim, tools/sim/): its client for the
# public protocol and its pure parts (demand, movement, report) live in the
# library, so the unit tests can reach them.
LIB_SRCS += src/sim/client.c src/sim/sim.c src/sim/surge.c
TOOLS += ridehail-sim
