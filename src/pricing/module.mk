LIB_SRCS += src/pricing/pricing.c
