LIB_SRCS += src/match/match.c src/match/dispatch.c src/match/feed.c src/match/commands.c src/match/meter.c src/match/recover.c src/match/lost.c
