LIB_SRCS += src/share/share.c src/share/card.c src/share/plan.c
