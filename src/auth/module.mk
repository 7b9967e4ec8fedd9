LIB_SRCS += src/auth/auth.c src/auth/password.c src/auth/account_api.c src/auth/cli.c src/auth/jwt.c src/auth/revoke.c src/auth/accounts.c
