LIB_SRCS += src/share/share.c src/share/lanes.c src/share/match.c src/share/api.c src/share/driver.c src/share/card.c src/share/plan.c
