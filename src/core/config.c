/* Loading the configuration: defaults, then the file, then the environment
 * (RIDEHAIL_<SECTION>_<KEY>), then each section's own checks; every problem
 * is collected with its file:line. One value's text is parsed in
 * config_value.c, the result printed by config_print.c. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "config_internal.h"
#include "core/alloc.h"
#include "core/settings.h"

/* ------------------------------------------------------------ errors */

static void cfg_error(struct cfg_errors *errs, const char *fmt, ...) RH_PRINTF(2, 3);
static void cfg_error(struct cfg_errors *errs, const char *fmt, ...)
{
	va_list ap;
	if (errs->n >= CFG_MAX_ERRORS)
		return;
	va_start(ap, fmt);
	vsnprintf(errs->msg[errs->n++], sizeof errs->msg[0], fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ the table walk */

struct cfg_target {
	const struct cfg_section *sec;
	void *base;      /* the section struct (or the instance) */
	char label[96];  /* "http" or "tariff.standard" */
};

/* ------------------------------------------------------------ sections */

static int *cfg_instance_count(struct rh_config *cfg, const struct cfg_section *sec)
{
	return (int *)((char *)cfg + sec->count_offset);
}

static void *cfg_instance_at(void *cfgbase, const struct cfg_section *sec, int i)
{
	return (char *)cfgbase + sec->offset + (size_t)i * sec->instance_size;
}

static void cfg_section_defaults(void *base, const struct cfg_section *sec)
{
	char err[256];
	for (const struct cfg_key *k = sec->keys; k->name; k++) {
		if (!cfg_value_set(base, k, k->def, err, sizeof err)) {
			/* A bad built-in default is our bug; the unit tests catch it. */
			fprintf(stderr, "config: default of %s.%s invalid: %s\n", sec->name, k->name, err);
			abort();
		}
	}
}

static bool cfg_instance_name_is_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= CFG_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(islower(c) || isdigit(c) || c == '_' || c == '-'))
			return false;
	}
	return true;
}

/* Finds (or with create, adds) the instance `name` of a repeated section. */
static void *cfg_instance_find(struct rh_config *cfg, const struct cfg_section *sec, const char *name, bool create)
{
	int *count = cfg_instance_count(cfg, sec);
	for (int i = 0; i < *count; i++) {
		char *inst = cfg_instance_at(cfg, sec, i);
		if (strcmp(inst, name) == 0)
			return inst;
	}
	if (!create || *count >= sec->max_instances)
		return NULL;
	char *inst = cfg_instance_at(cfg, sec, (*count)++);
	snprintf(inst, CFG_NAME_MAX, "%s", name);
	cfg_section_defaults(inst, sec);
	return inst;
}

static void cfg_set_defaults(struct rh_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (sec->max_instances == 0)
			cfg_section_defaults((char *)cfg + sec->offset, sec);
	}
}

/* A repeated section that neither the file nor the environment mentioned
 * gets its default instances; mentioning any instance replaces them all
 * (an operator who runs only "xl" does not also get "standard"). */
static void cfg_default_instances(struct rh_config *cfg)
{
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (sec->max_instances == 0 || *cfg_instance_count(cfg, sec) > 0)
			continue;
		for (int i = 0; sec->default_instances && sec->default_instances[i]; i++)
			(void)cfg_instance_find(cfg, sec, sec->default_instances[i], true);
	}
}

const struct cfg_key *cfg_key_find(const struct cfg_section *sec, const char *name)
{
	for (const struct cfg_key *k = sec->keys; k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* "[http]" or "[tariff.standard]" -> target; false with a message if unknown. */
static bool cfg_section_resolve(struct rh_config *cfg, const char *name, struct cfg_target *t, char *err, size_t errlen)
{
	const char *dot = strchr(name, '.');
	size_t base_len = dot ? (size_t)(dot - name) : strlen(name);
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (strlen(sec->name) != base_len || strncmp(sec->name, name, base_len) != 0)
			continue;
		t->sec = sec;
		snprintf(t->label, sizeof t->label, "%s", name);
		if (sec->max_instances == 0) {
			if (dot) {
				snprintf(err, errlen, "section [%s] takes no instance name", sec->name);
				return false;
			}
			t->base = (char *)cfg + sec->offset;
			return true;
		}
		if (!dot || !cfg_instance_name_is_valid(dot + 1)) {
			snprintf(err, errlen, "section [%s] needs an instance name: [%s.<name>] with a-z, 0-9, _ or -, at most %d characters",
				 sec->name, sec->name, CFG_NAME_MAX - 1);
			return false;
		}
		t->base = cfg_instance_find(cfg, sec, dot + 1, true);
		if (!t->base) {
			snprintf(err, errlen, "too many [%s.*] sections (at most %d)", sec->name, sec->max_instances);
			return false;
		}
		return true;
	}
	snprintf(err, errlen, "unknown section [%s]", name);
	return false;
}

/* ------------------------------------------------------------ the file */

/* Tracks keys already set by the file so that a repeated key is an error. */
struct cfg_seen {
	int n, cap;
	char **keys;
};

static bool cfg_seen_add(struct cfg_seen *sn, const char *label, const char *key)
{
	char buf[160];
	snprintf(buf, sizeof buf, "%s.%s", label, key);
	for (int i = 0; i < sn->n; i++)
		if (strcmp(sn->keys[i], buf) == 0)
			return false;
	if (sn->n == sn->cap) {
		sn->cap = sn->cap ? sn->cap * 2 : 64;
		sn->keys = rh_realloc(sn->keys, (size_t)sn->cap * sizeof *sn->keys);
	}
	sn->keys[sn->n++] = rh_strdup(buf);
	return true;
}

static void cfg_seen_free(struct cfg_seen *sn)
{
	for (int i = 0; i < sn->n; i++)
		rh_free(sn->keys[i]);
	rh_free(sn->keys);
}

/* Strips an inline comment and surrounding blanks; unquotes "...". Returns
 * false for an unterminated quote. Works in place. */
static bool cfg_value_clean(char *v, char *err, size_t errlen)
{
	v = (char *)cfg_skip_ws(v);
	if (*v == '"') {
		char *w = v, *r = v + 1;
		for (; *r && *r != '"'; r++) {
			if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
				r++;
			*w++ = *r;
		}
		if (*r != '"') {
			snprintf(err, errlen, "unterminated quoted value");
			return false;
		}
		const char *after = cfg_skip_ws(r + 1);
		if (*after && *after != '#') {
			snprintf(err, errlen, "unexpected text after quoted value");
			return false;
		}
		*w = '\0';
		return true;
	}
	char *hash = v;
	while ((hash = strchr(hash, '#')) != NULL) {
		if (hash == v || hash[-1] == ' ' || hash[-1] == '\t') {
			*hash = '\0';
			break;
		}
		hash++;
	}
	size_t n = strlen(v);
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		v[--n] = '\0';
	return true;
}

static void cfg_text_parse(struct rh_config *cfg, const char *name, const char *text, struct cfg_errors *errs)
{
	struct cfg_target cur = { 0 };
	struct cfg_seen seen = { 0 };
	bool in_bad_section = false;
	int lineno = 0;
	const char *p = text;

	while (*p) {
		char line[4096], err[200];
		size_t n = strcspn(p, "\n");
		lineno++;
		if (n >= sizeof line) {
			cfg_error(errs, "%s:%d: line too long", name, lineno);
			p += n + (p[n] == '\n');
			continue;
		}
		memcpy(line, p, n);
		line[n] = '\0';
		p += n + (p[n] == '\n');
		if (n && line[n - 1] == '\r')
			line[n - 1] = '\0';

		char *s = (char *)cfg_skip_ws(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			const char *after = close ? cfg_skip_ws(close + 1) : NULL;
			if (!close || (*after && *after != '#')) {
				cfg_error(errs, "%s:%d: malformed section header", name, lineno);
				in_bad_section = true;
				continue;
			}
			*close = '\0';
			char *sname = (char *)cfg_skip_ws(s + 1);
			size_t sl = strlen(sname);
			while (sl && (sname[sl - 1] == ' ' || sname[sl - 1] == '\t'))
				sname[--sl] = '\0';
			in_bad_section = !cfg_section_resolve(cfg, sname, &cur, err, sizeof err);
			if (in_bad_section)
				cfg_error(errs, "%s:%d: %s", name, lineno, err);
			continue;
		}
		char *eq = strchr(s, '=');
		if (!eq) {
			cfg_error(errs, "%s:%d: expected \"key = value\"", name, lineno);
			continue;
		}
		*eq = '\0';
		char *key = s;
		size_t kl = strlen(key);
		while (kl && (key[kl - 1] == ' ' || key[kl - 1] == '\t'))
			key[--kl] = '\0';
		if (in_bad_section)
			continue; /* already reported */
		if (!cur.sec) {
			cfg_error(errs, "%s:%d: key \"%s\" outside any [section]", name, lineno, key);
			continue;
		}
		const struct cfg_key *k = cfg_key_find(cur.sec, key);
		if (!k) {
			cfg_error(errs, "%s:%d: unknown key \"%s\" in [%s]", name, lineno, key, cur.label);
			continue;
		}
		if (!cfg_seen_add(&seen, cur.label, key)) {
			cfg_error(errs, "%s:%d: %s.%s is set twice", name, lineno, cur.label, key);
			continue;
		}
		char *value = eq + 1;
		if (!cfg_value_clean(value, err, sizeof err) ||
		    !cfg_value_set(cur.base, k, (char *)cfg_skip_ws(value), err, sizeof err))
			cfg_error(errs, "%s:%d: %s.%s: %s", name, lineno, cur.label, key, err);
	}
	cfg_seen_free(&seen);
}

/* ------------------------------------------------------------ environment */

void cfg_env_name(char *out, size_t n, const char *label, const char *key)
{
	size_t len = (size_t)snprintf(out, n, "RIDEHAIL_%s_%s", label, key);
	for (size_t i = 0; i < len && i < n; i++)
		out[i] = out[i] == '.' || out[i] == '-' ? '_' : (char)toupper((unsigned char)out[i]);
}

/* RIDEHAIL_<SECTION>_<KEY>=value; for repeated sections the middle part is
 * the instance name (RIDEHAIL_TARIFF_XL_BASE), which may create it. */
static bool cfg_env_apply_one(struct rh_config *cfg, const char *var, const char *value, struct cfg_errors *errs)
{
	char want[200], err[200];
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		for (const struct cfg_key *k = sec->keys; k->name; k++) {
			if (sec->max_instances == 0) {
				cfg_env_name(want, sizeof want, sec->name, k->name);
				if (strcmp(want, var) != 0)
					continue;
				if (!cfg_value_set((char *)cfg + sec->offset, k, value, err, sizeof err))
					cfg_error(errs, "environment %s: %s", var, err);
				return true;
			}
			char prefix[64], suffix[64];
			cfg_env_name(prefix, sizeof prefix, sec->name, "");
			cfg_env_name(suffix, sizeof suffix, "", k->name); /* "RIDEHAIL__KEY" */
			const char *sfx = suffix + strlen("RIDEHAIL_");
			size_t vl = strlen(var), pl = strlen(prefix), sl = strlen(sfx);
			if (vl <= pl + sl || strncmp(var, prefix, pl) != 0 || strcmp(var + vl - sl, sfx) != 0)
				continue;
			char inst[CFG_NAME_MAX + 1];
			size_t il = vl - pl - sl;
			if (il >= sizeof inst)
				continue;
			for (size_t i = 0; i < il; i++)
				inst[i] = (char)tolower((unsigned char)var[pl + i]);
			inst[il] = '\0';
			if (!cfg_instance_name_is_valid(inst))
				continue;
			void *base = cfg_instance_find(cfg, sec, inst, true);
			if (!base)
				cfg_error(errs, "environment %s: too many [%s.*] sections", var, sec->name);
			else if (!cfg_value_set(base, k, value, err, sizeof err))
				cfg_error(errs, "environment %s: %s", var, err);
			return true;
		}
	}
	return false;
}

static void cfg_env_apply(struct rh_config *cfg, char *const *envp, struct cfg_errors *errs)
{
	for (; envp && *envp; envp++) {
		const char *e = *envp;
		if (strncmp(e, "RIDEHAIL_", 9) != 0)
			continue;
		const char *eq = strchr(e, '=');
		if (!eq)
			continue;
		char var[200];
		size_t vl = (size_t)(eq - e);
		if (vl >= sizeof var) {
			cfg_error(errs, "environment: variable name too long");
			continue;
		}
		memcpy(var, e, vl);
		var[vl] = '\0';
		if (!cfg_env_apply_one(cfg, var, eq + 1, errs))
			cfg_error(errs, "environment %s: no such configuration key", var);
	}
}

/* ------------------------------------------------------------ whole config */

static void cfg_sections_validate(struct rh_config *cfg, struct cfg_errors *errs)
{
	char err[200];
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (!sec->validate)
			continue;
		if (sec->max_instances == 0) {
			if (!sec->validate((char *)cfg + sec->offset, err, sizeof err))
				cfg_error(errs, "[%s]: %s", sec->name, err);
			continue;
		}
		for (int i = 0; i < *cfg_instance_count(cfg, sec); i++) {
			const char *inst = cfg_instance_at(cfg, sec, i);
			if (!sec->validate(inst, err, sizeof err))
				cfg_error(errs, "[%s.%s]: %s", sec->name, inst, err);
		}
	}
}

rh_err config_load_buffer(struct rh_config *cfg, const char *name, const char *text,
			  char *const *envp, struct cfg_errors *errs)
{
	errs->n = 0;
	cfg_set_defaults(cfg);
	if (text)
		cfg_text_parse(cfg, name, text, errs);
	cfg_env_apply(cfg, envp, errs);
	cfg_default_instances(cfg);
	if (errs->n == 0)
		cfg_sections_validate(cfg, errs);
	return errs->n ? RH_EINVAL : RH_OK;
}

rh_err config_load(struct rh_config *cfg, const char *path, char *const *envp, struct cfg_errors *errs)
{
	char *text = NULL;
	errs->n = 0;
	if (path) {
		FILE *f = fopen(path, "rb");
		if (!f) {
			int saved = errno; /* setting the defaults allocates */
			cfg_set_defaults(cfg);
			cfg_error(errs, "%s: cannot open: %s", path, strerror(saved));
			return RH_EINVAL;
		}
		size_t len = 0, cap = 8192, n;
		text = rh_malloc(cap);
		while ((n = fread(text + len, 1, cap - len - 1, f)) > 0) {
			len += n;
			if (len + 1 == cap) {
				if (cap >= 4u << 20) {
					fclose(f);
					rh_free(text);
					cfg_set_defaults(cfg);
					cfg_error(errs, "%s: larger than 4 MiB", path);
					return RH_EINVAL;
				}
				cap *= 2;
				text = rh_realloc(text, cap);
			}
		}
		text[len] = '\0';
		fclose(f);
		if (memchr(text, '\0', len)) {
			rh_free(text);
			cfg_set_defaults(cfg);
			cfg_error(errs, "%s: contains a NUL byte (not a text file?)", path);
			return RH_EINVAL;
		}
	}
	rh_err e = config_load_buffer(cfg, path, text, envp, errs);
	rh_free(text);
	return e;
}

static void cfg_section_free_strings(void *base, const struct cfg_section *sec)
{
	for (const struct cfg_key *k = sec->keys; k->name; k++) {
		if (k->type == CFG_STR || k->type == CFG_ADDR) {
			char **f = cfg_field(base, k);
			rh_free(*f);
			*f = NULL;
		}
	}
}

void config_fini(struct rh_config *cfg)
{
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (sec->max_instances == 0) {
			cfg_section_free_strings((char *)cfg + sec->offset, sec);
			continue;
		}
		for (int i = 0; i < *cfg_instance_count(cfg, sec); i++)
			cfg_section_free_strings(cfg_instance_at(cfg, sec, i), sec);
		*cfg_instance_count(cfg, sec) = 0;
	}
}
