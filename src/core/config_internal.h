/* Inside the configuration (core/config.h): what its files share.
 *
 *   config_value.c  one value of a key: parsed from its text (with the range
 *                   and type checks), formatted back
 *   config.c        loading: sections and their instances, the file, the
 *                   environment, the sections' own checks
 *   config_print.c  the effective configuration (--print-config), one key's
 *                   value, the reference (--help-config) */
#ifndef RH_CORE_CONFIG_INTERNAL_H
#define RH_CORE_CONFIG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

/* config_value.c */
const char *cfg_skip_ws(const char *s);
/* The field of key k in a section struct (or instance) at base. */
void *cfg_field(void *base, const struct cfg_key *k);
/* Parses `value` into the field; on failure writes why into err. */
bool cfg_value_set(void *base, const struct cfg_key *k, const char *value, char *err, size_t errlen);
/* The field's value as it would be written in the file. */
void cfg_value_format(const void *base, const struct cfg_key *k, char *out, size_t n);
/* "min..max" in the key's unit ("1s..1h"). */
void cfg_format_range(char *out, size_t n, const struct cfg_key *k);
/* "integer", "duration", "list of numbers"... */
const char *cfg_type_name(const struct cfg_key *k);

/* config.c */
const struct cfg_key *cfg_key_find(const struct cfg_section *sec, const char *name);
/* RIDEHAIL_<LABEL>_<KEY>, dots and dashes as underscores, upper case. */
void cfg_env_name(char *out, size_t n, const char *label, const char *key);

#endif
