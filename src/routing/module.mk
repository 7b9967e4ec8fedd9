LIB_SRCS += src/routing/api.c src/routing/calibrate.c src/routing/ch.c src/routing/graph.c src/routing/graph_snap.c src/routing/graph_search.c src/routing/graph_load.c src/routing/import.c src/routing/cli.c \
	src/routing/mapfile.c src/routing/roads.c src/routing/trips.c src/routing/turns.c
