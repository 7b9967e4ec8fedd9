# The configuration is read in three files (src/core/config_internal.h).
LIB_SRCS += src/core/config_value.c src/core/config_print.c
LIB_SRCS += src/core/umap.c src/core/alloc.c src/core/clock.c src/core/config.c src/core/config_table.c src/core/err.c src/core/fdbudget.c \
            src/core/log.c src/core/metrics.c src/core/strbuf.c src/core/uuid.c src/core/worker.c src/core/timer.c src/core/proxy.c
