LIB_SRCS += src/store/db.c src/store/db_conn.c src/store/migrate.c src/store/listen.c
