# The daemon: assembles the modules (server.c), runs them (main.c), and the
# endpoints that belong to no module (health, the admin API). Nothing below
# includes daemon/.
LIB_SRCS += src/daemon/server.c src/daemon/admin.c src/daemon/health.c src/daemon/openapi.c
