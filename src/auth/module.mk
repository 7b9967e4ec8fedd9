LIB_SRCS += src/auth/auth.c src/auth/cli.c src/auth/jwt.c
