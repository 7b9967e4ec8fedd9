LIB_SRCS += src/pricing/pricing.c src/pricing/surge.c
