LIB_SRCS += src/match/match.c
