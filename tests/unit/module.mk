UNIT_SRCS += tests/unit/main.c
UNIT_SRCS += $(sort $(wildcard tests/unit/*/*_test.c))
