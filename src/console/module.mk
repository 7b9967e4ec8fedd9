# The operator's console: its live feed (console.c, figures.c) and its page
# (files.c), whose static files in console/ are compiled in
# (build-aux/console_files.py) so the daemon serves them with no files
# beside it.
LIB_SRCS += src/console/console.c src/console/figures.c src/console/files.c src/console/bookings.c \
	src/console/reports.c src/console/alerts.c
CONSOLE_FILES := $(sort $(wildcard console/*.html console/*.js console/*.css))
LIB_GEN_OBJS += $(O)/gen/console_files.o

$(O)/gen/console_files.c: $(CONSOLE_FILES) build-aux/console_files.py
	@mkdir -p $(@D)
	$(PYTHON) build-aux/console_files.py $(CONSOLE_FILES) > $@.tmp && mv $@.tmp $@

$(O)/gen/console_files.o: $(O)/gen/console_files.c
	$(Q)$(CC) $(CPPFLAGS) -Isrc/console $(CFLAGS) -Wno-missing-prototypes -c -o $@ $<
