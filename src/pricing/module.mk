LIB_SRCS += src/pricing/pricing.c src/pricing/surge.c src/pricing/book.c src/pricing/book_load.c src/pricing/price.c \
            src/pricing/surge_api.c src/pricing/admin_api.c src/pricing/payments.c
