/* Configuration: one table (src/core/config_table.c) drives parsing,
 * validation, defaults, environment overrides, --check-config and
 * --help-config. Each module declares the struct of its own section in its
 * own header; struct rh_config gathers them.
 *
 * File format (conf/ridehaild.conf):
 *     # comment
 *     [http]
 *     listen = 127.0.0.1:8080      # inline comment
 *     [tariff.standard]            # a named instance of a repeated section
 *     base = 2.50
 * Precedence: built-in default < file < environment RIDEHAIL_<SECTION>_<KEY>
 * (section dots become underscores: RIDEHAIL_TARIFF_STANDARD_BASE).
 * Durations take a unit (ms, s, m, h, d); sizes take B, KiB, MiB, GiB (KB, MB,
 * GB: powers of 1000) or none. */
#ifndef RH_CORE_CONFIG_H
#define RH_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/err.h"

enum cfg_type {
	CFG_STR,      /* char * (owned by the config; "" when unset) */
	CFG_INT,      /* int64_t within [min, max] */
	CFG_DBL,      /* double within [min, max], finite */
	CFG_BOOL,     /* bool: true/false/yes/no/on/off/1/0 */
	CFG_DURATION, /* int64_t milliseconds within [min, max] ms */
	CFG_SIZE,     /* int64_t bytes within [min, max] */
	CFG_ENUM,     /* int: index into enum_values */
	CFG_ADDR,     /* char * "host:port" (IPv4, [IPv6] or name; port 0-65535) */
	CFG_LIST,     /* struct cfg_list: comma-separated numbers within [min, max] */
};

#define CFG_LIST_MAX 16
struct cfg_list {
	int n;
	double v[CFG_LIST_MAX];
};

enum {
	CFG_F_SECRET = 1 << 0,  /* redacted by --print-config */
	CFG_F_INTEGER = 1 << 1, /* CFG_LIST: every element must be an integer */
	CFG_F_ASCENDING = 1 << 2, /* CFG_LIST: strictly ascending */
};

struct cfg_key {
	const char *name;
	enum cfg_type type;
	size_t offset; /* of the field within the section struct */
	const char *def; /* default, written as it would be in the file */
	double min, max; /* numeric range; CFG_STR: max length (max) */
	const char *unit; /* for the docs: "ms", "bytes", "m", "USD"... */
	const char *const *enum_values; /* CFG_ENUM, NULL-terminated */
	const char *help;
	unsigned flags;
};

struct rh_config;

struct cfg_section {
	const char *name;
	const struct cfg_key *keys;
	size_t offset; /* of the section struct (or instance array) in rh_config */
	const char *help;
	/* Repeated sections ([name.<instance>]) when max_instances > 0: the
	 * array at `offset` holds up to max_instances structs of instance_size
	 * bytes, each starting with `char name[CFG_NAME_MAX]`; the count lives
	 * at count_offset in rh_config. Instances present by default are listed
	 * in default_instances (NULL-terminated). */
	int max_instances;
	size_t instance_size;
	size_t count_offset;
	const char *const *default_instances;
	/* Cross-key checks once the whole section is known; writes a message
	 * into err and returns false when invalid. */
	bool (*validate)(const void *section, char *err, size_t errlen);
};

#define CFG_NAME_MAX 32

/* Error list collected while loading: every problem, not just the first. */
#define CFG_MAX_ERRORS 32
struct cfg_errors {
	int n;
	char msg[CFG_MAX_ERRORS][256];
};

/* The table itself (src/core/config_table.c). */
extern const struct cfg_section *const cfg_sections[];

/* Fill cfg with defaults, then the file (path may be NULL: defaults and
 * environment only), then the environment `envp` (NULL-terminated, e.g.
 * environ). Returns RH_OK or RH_EINVAL with errs filled; on error cfg is left
 * in a freeable state. */
rh_err config_load(struct rh_config *cfg, const char *path, char *const *envp,
		   struct cfg_errors *errs) RH_MUST_CHECK;
/* Parse from a memory buffer; `name` is used in messages ("file:line"). */
rh_err config_load_buffer(struct rh_config *cfg, const char *name, const char *text,
			  char *const *envp, struct cfg_errors *errs) RH_MUST_CHECK;
void config_fini(struct rh_config *cfg);

/* Effective configuration, one `key = value` per line, secrets redacted. */
void config_print(const struct rh_config *cfg, FILE *out);
/* Every key with type, default, range, unit and help, as Markdown. */
void config_print_doc(FILE *out);
/* Looks up a key by "section.key" (or "section.instance.key") and formats
 * its effective value. Returns false when unknown. */
bool config_get(const struct rh_config *cfg, const char *dotted, char *out, size_t outlen);

/* Parsers shared with other modules (and tested alone). */
bool cfg_parse_duration_ms(const char *s, int64_t *out);
bool cfg_parse_size(const char *s, int64_t *out);
bool cfg_parse_bool(const char *s, bool *out);
/* Splits "host:port" / "[v6]:port"; host gets at most hostlen-1 chars. */
bool cfg_split_addr(const char *s, char *host, size_t hostlen, int *port);

#endif
