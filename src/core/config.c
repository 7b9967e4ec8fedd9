#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/settings.h"

/* ------------------------------------------------------------ small parsers */

static const char *skip_ws(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

bool cfg_parse_bool(const char *s, bool *out)
{
	static const char *yes[] = { "true", "yes", "on", "1" };
	static const char *no[] = { "false", "no", "off", "0" };
	for (size_t i = 0; i < RH_ARRAY_LEN(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

/* A finite decimal number at the start of s (no hex, no inf/nan); *rest
 * points after it. */
static bool parse_number(const char *s, const char **rest, double *out)
{
	const char *p = s;
	char *end;
	if (*p == '-' || *p == '+')
		p++;
	if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
		return false;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		return false;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || errno == ERANGE || !isfinite(v))
		return false;
	*out = v;
	*rest = end;
	return true;
}

bool cfg_parse_duration_ms(const char *s, int64_t *out)
{
	static const struct { const char *unit; double ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 }, { "d", 86400000 },
	};
	const char *rest;
	double v;
	if (!parse_number(s, &rest, &v) || v < 0)
		return false;
	rest = skip_ws(rest);
	for (size_t i = 0; i < RH_ARRAY_LEN(units); i++) {
		if (strcmp(rest, units[i].unit) == 0) {
			double ms = v * units[i].ms;
			if (ms > 9.0e15 || ms != floor(ms))
				return false;
			*out = (int64_t)ms;
			return true;
		}
	}
	return false; /* a duration without a unit is ambiguous: refuse it */
}

bool cfg_parse_size(const char *s, int64_t *out)
{
	static const struct { const char *unit; double mult; } units[] = {
		{ "", 1 }, { "B", 1 }, { "KiB", 1024.0 }, { "MiB", 1048576.0 },
		{ "GiB", 1073741824.0 }, { "KB", 1000.0 }, { "MB", 1e6 }, { "GB", 1e9 },
	};
	const char *rest;
	double v;
	if (!parse_number(s, &rest, &v) || v < 0)
		return false;
	rest = skip_ws(rest);
	for (size_t i = 0; i < RH_ARRAY_LEN(units); i++) {
		if (strcmp(rest, units[i].unit) == 0) {
			double b = v * units[i].mult;
			if (b > 9.0e15 || b != floor(b))
				return false;
			*out = (int64_t)b;
			return true;
		}
	}
	return false;
}

bool cfg_split_addr(const char *s, char *host, size_t hostlen, int *port)
{
	const char *colon;
	size_t hl;
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		if (!close || close[1] != ':')
			return false;
		hl = (size_t)(close - s - 1);
		s++;
		colon = close + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon || memchr(s, ':', (size_t)(colon - s)))
			return false; /* bare IPv6 must be bracketed */
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hostlen)
		return false;
	for (size_t i = 0; i < hl; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!isalnum(c) && c != '.' && c != '-' && c != ':' && c != '_')
			return false;
	}
	const char *p = colon + 1;
	if (!*p || strlen(p) > 5)
		return false;
	long v = 0;
	for (; *p; p++) {
		if (!isdigit((unsigned char)*p))
			return false;
		v = v * 10 + (*p - '0');
	}
	if (v > 65535)
		return false;
	memcpy(host, s, hl);
	host[hl] = '\0';
	*port = (int)v;
	return true;
}

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

static void *field(void *base, const struct cfg_key *k) { return (char *)base + k->offset; }
static const void *cfield(const void *base, const struct cfg_key *k) { return (const char *)base + k->offset; }

static const char *type_name(const struct cfg_key *k)
{
	switch (k->type) {
	case CFG_STR: return "string";
	case CFG_INT: return "integer";
	case CFG_DBL: return "number";
	case CFG_BOOL: return "boolean";
	case CFG_DURATION: return "duration";
	case CFG_SIZE: return "size";
	case CFG_ENUM: return "enum";
	case CFG_ADDR: return "host:port";
	case CFG_LIST: return (k->flags & CFG_F_INTEGER) ? "list of integers" : "list of numbers";
	}
	return "?";
}

static void fmt_num(char *out, size_t n, double v)
{
	if (v == floor(v) && fabs(v) < 1e15)
		snprintf(out, n, "%.0f", v);
	else
		snprintf(out, n, "%.10g", v);
}

static void fmt_duration(char *out, size_t n, int64_t ms)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(out, n, "%lldh", (long long)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(out, n, "%lldm", (long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(out, n, "%llds", (long long)(ms / 1000));
	else
		snprintf(out, n, "%lldms", (long long)ms);
}

static void fmt_size(char *out, size_t n, int64_t b)
{
	if (b != 0 && b % 1073741824 == 0)
		snprintf(out, n, "%lldGiB", (long long)(b / 1073741824));
	else if (b != 0 && b % 1048576 == 0)
		snprintf(out, n, "%lldMiB", (long long)(b / 1048576));
	else if (b != 0 && b % 1024 == 0)
		snprintf(out, n, "%lldKiB", (long long)(b / 1024));
	else
		snprintf(out, n, "%lld", (long long)b);
}

static void fmt_range(char *out, size_t n, const struct cfg_key *k)
{
	char a[48], b[48];
	switch (k->type) {
	case CFG_DURATION:
		fmt_duration(a, sizeof a, (int64_t)k->min);
		fmt_duration(b, sizeof b, (int64_t)k->max);
		break;
	case CFG_SIZE:
		fmt_size(a, sizeof a, (int64_t)k->min);
		fmt_size(b, sizeof b, (int64_t)k->max);
		break;
	default:
		fmt_num(a, sizeof a, k->min);
		fmt_num(b, sizeof b, k->max);
	}
	snprintf(out, n, "%s..%s", a, b);
}

/* Parses `value` into the field; on failure writes why into err. */
static bool cfg_set(void *base, const struct cfg_key *k, const char *value, char *err, size_t errlen)
{
	void *f = field(base, k);
	char range[128];
	fmt_range(range, sizeof range, k);
	switch (k->type) {
	case CFG_STR:
		if (k->max > 0 && strlen(value) > (size_t)k->max) {
			snprintf(err, errlen, "longer than %.0f characters", k->max);
			return false;
		}
		rh_free(*(char **)f);
		*(char **)f = rh_strdup(value);
		return true;
	case CFG_ADDR: {
		char host[256];
		int port;
		if (!cfg_split_addr(value, host, sizeof host, &port)) {
			snprintf(err, errlen, "\"%s\" is not host:port (IPv6 as [addr]:port, port 0-65535)", value);
			return false;
		}
		rh_free(*(char **)f);
		*(char **)f = rh_strdup(value);
		return true;
	}
	case CFG_INT: {
		const char *rest;
		double v;
		if (!parse_number(value, &rest, &v) || *rest || v != floor(v)) {
			snprintf(err, errlen, "\"%s\" is not an integer", value);
			return false;
		}
		if (v < k->min || v > k->max) {
			snprintf(err, errlen, "%s is out of range %s", value, range);
			return false;
		}
		*(int64_t *)f = (int64_t)v;
		return true;
	}
	case CFG_DBL: {
		const char *rest;
		double v;
		if (!parse_number(value, &rest, &v) || *rest) {
			snprintf(err, errlen, "\"%s\" is not a number", value);
			return false;
		}
		if (v < k->min || v > k->max) {
			snprintf(err, errlen, "%s is out of range %s", value, range);
			return false;
		}
		*(double *)f = v;
		return true;
	}
	case CFG_BOOL:
		if (!cfg_parse_bool(value, (bool *)f)) {
			snprintf(err, errlen, "\"%s\" is not a boolean (true/false, yes/no, on/off)", value);
			return false;
		}
		return true;
	case CFG_DURATION: {
		int64_t ms;
		if (!cfg_parse_duration_ms(value, &ms)) {
			snprintf(err, errlen, "\"%s\" is not a duration (a number with unit ms, s, m, h or d)", value);
			return false;
		}
		if (ms < (int64_t)k->min || ms > (int64_t)k->max) {
			snprintf(err, errlen, "%s is out of range %s", value, range);
			return false;
		}
		*(int64_t *)f = ms;
		return true;
	}
	case CFG_SIZE: {
		int64_t b;
		if (!cfg_parse_size(value, &b)) {
			snprintf(err, errlen, "\"%s\" is not a size (bytes, or a number with B, KiB, MiB, GiB)", value);
			return false;
		}
		if (b < (int64_t)k->min || b > (int64_t)k->max) {
			snprintf(err, errlen, "%s is out of range %s", value, range);
			return false;
		}
		*(int64_t *)f = b;
		return true;
	}
	case CFG_ENUM:
		for (int i = 0; k->enum_values[i]; i++) {
			if (strcmp(value, k->enum_values[i]) == 0) {
				*(int *)f = i;
				return true;
			}
		}
		{
			size_t len = (size_t)snprintf(err, errlen, "\"%s\" is not one of", value);
			for (int i = 0; k->enum_values[i] && len < errlen; i++)
				len += (size_t)snprintf(err + len, errlen - len, " %s", k->enum_values[i]);
		}
		return false;
	case CFG_LIST: {
		struct cfg_list list = { 0 };
		const char *p = value;
		if (!*skip_ws(p)) {
			*(struct cfg_list *)f = list;
			return true;
		}
		for (;;) {
			char item[64];
			size_t n = strcspn(p, ",");
			if (n >= sizeof item) {
				snprintf(err, errlen, "list element too long");
				return false;
			}
			memcpy(item, p, n);
			item[n] = '\0';
			char *s = item, *e = item + n;
			while (*s == ' ' || *s == '\t')
				s++;
			while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
				*--e = '\0';
			const char *rest;
			double v;
			if (!parse_number(s, &rest, &v) || *rest) {
				snprintf(err, errlen, "list element \"%s\" is not a number", s);
				return false;
			}
			if ((k->flags & CFG_F_INTEGER) && v != floor(v)) {
				snprintf(err, errlen, "list element %s is not an integer", s);
				return false;
			}
			if (v < k->min || v > k->max) {
				snprintf(err, errlen, "list element %s is out of range %s", s, range);
				return false;
			}
			if (list.n == CFG_LIST_MAX) {
				snprintf(err, errlen, "more than %d elements", CFG_LIST_MAX);
				return false;
			}
			if ((k->flags & CFG_F_ASCENDING) && list.n > 0 && v <= list.v[list.n - 1]) {
				snprintf(err, errlen, "list must be strictly ascending");
				return false;
			}
			list.v[list.n++] = v;
			if (!p[n])
				break;
			p += n + 1;
		}
		*(struct cfg_list *)f = list;
		return true;
	}
	}
	return false;
}

static void cfg_format(const void *base, const struct cfg_key *k, char *out, size_t n)
{
	const void *f = cfield(base, k);
	switch (k->type) {
	case CFG_STR:
	case CFG_ADDR:
		snprintf(out, n, "%s", *(char *const *)f ? *(char *const *)f : "");
		break;
	case CFG_INT:
		snprintf(out, n, "%lld", (long long)*(const int64_t *)f);
		break;
	case CFG_DBL:
		fmt_num(out, n, *(const double *)f);
		break;
	case CFG_BOOL:
		snprintf(out, n, "%s", *(const bool *)f ? "true" : "false");
		break;
	case CFG_DURATION:
		fmt_duration(out, n, *(const int64_t *)f);
		break;
	case CFG_SIZE:
		fmt_size(out, n, *(const int64_t *)f);
		break;
	case CFG_ENUM:
		snprintf(out, n, "%s", k->enum_values[*(const int *)f]);
		break;
	case CFG_LIST: {
		const struct cfg_list *l = f;
		size_t len = 0;
		out[0] = '\0';
		for (int i = 0; i < l->n && len < n; i++) {
			char num[48];
			fmt_num(num, sizeof num, l->v[i]);
			len += (size_t)snprintf(out + len, n - len, "%s%s", i ? ", " : "", num);
		}
		break;
	}
	}
}

/* ------------------------------------------------------------ sections */

static int *instance_count(struct rh_config *cfg, const struct cfg_section *sec)
{
	return (int *)((char *)cfg + sec->count_offset);
}

static void *instance_at(void *cfgbase, const struct cfg_section *sec, int i)
{
	return (char *)cfgbase + sec->offset + (size_t)i * sec->instance_size;
}

static void apply_defaults(void *base, const struct cfg_section *sec)
{
	char err[256];
	for (const struct cfg_key *k = sec->keys; k->name; k++) {
		if (!cfg_set(base, k, k->def, err, sizeof err)) {
			/* A bad built-in default is our bug; the unit tests catch it. */
			fprintf(stderr, "config: default of %s.%s invalid: %s\n", sec->name, k->name, err);
			abort();
		}
	}
}

static bool valid_instance_name(const char *s)
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
static void *instance_find(struct rh_config *cfg, const struct cfg_section *sec, const char *name, bool create)
{
	int *count = instance_count(cfg, sec);
	for (int i = 0; i < *count; i++) {
		char *inst = instance_at(cfg, sec, i);
		if (strcmp(inst, name) == 0)
			return inst;
	}
	if (!create || *count >= sec->max_instances)
		return NULL;
	char *inst = instance_at(cfg, sec, (*count)++);
	snprintf(inst, CFG_NAME_MAX, "%s", name);
	apply_defaults(inst, sec);
	return inst;
}

static void cfg_set_defaults(struct rh_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (sec->max_instances == 0)
			apply_defaults((char *)cfg + sec->offset, sec);
	}
}

/* A repeated section that neither the file nor the environment mentioned
 * gets its default instances; mentioning any instance replaces them all
 * (an operator who runs only "xl" does not also get "standard"). */
static void cfg_default_instances(struct rh_config *cfg)
{
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (sec->max_instances == 0 || *instance_count(cfg, sec) > 0)
			continue;
		for (int i = 0; sec->default_instances && sec->default_instances[i]; i++)
			(void)instance_find(cfg, sec, sec->default_instances[i], true);
	}
}

static const struct cfg_key *key_find(const struct cfg_section *sec, const char *name)
{
	for (const struct cfg_key *k = sec->keys; k->name; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* "[http]" or "[tariff.standard]" -> target; false with a message if unknown. */
static bool section_resolve(struct rh_config *cfg, const char *name, struct cfg_target *t, char *err, size_t errlen)
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
		if (!dot || !valid_instance_name(dot + 1)) {
			snprintf(err, errlen, "section [%s] needs an instance name: [%s.<name>] with a-z, 0-9, _ or -, at most %d characters",
				 sec->name, sec->name, CFG_NAME_MAX - 1);
			return false;
		}
		t->base = instance_find(cfg, sec, dot + 1, true);
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
struct seen {
	int n, cap;
	char **keys;
};

static bool seen_add(struct seen *sn, const char *label, const char *key)
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

static void seen_free(struct seen *sn)
{
	for (int i = 0; i < sn->n; i++)
		rh_free(sn->keys[i]);
	rh_free(sn->keys);
}

/* Strips an inline comment and surrounding blanks; unquotes "...". Returns
 * false for an unterminated quote. Works in place. */
static bool clean_value(char *v, char *err, size_t errlen)
{
	v = (char *)skip_ws(v);
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
		const char *after = skip_ws(r + 1);
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

static void parse_text(struct rh_config *cfg, const char *name, const char *text, struct cfg_errors *errs)
{
	struct cfg_target cur = { 0 };
	struct seen seen = { 0 };
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

		char *s = (char *)skip_ws(line);
		if (!*s || *s == '#' || *s == ';')
			continue;
		if (*s == '[') {
			char *close = strchr(s, ']');
			const char *after = close ? skip_ws(close + 1) : NULL;
			if (!close || (*after && *after != '#')) {
				cfg_error(errs, "%s:%d: malformed section header", name, lineno);
				in_bad_section = true;
				continue;
			}
			*close = '\0';
			char *sname = (char *)skip_ws(s + 1);
			size_t sl = strlen(sname);
			while (sl && (sname[sl - 1] == ' ' || sname[sl - 1] == '\t'))
				sname[--sl] = '\0';
			in_bad_section = !section_resolve(cfg, sname, &cur, err, sizeof err);
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
		const struct cfg_key *k = key_find(cur.sec, key);
		if (!k) {
			cfg_error(errs, "%s:%d: unknown key \"%s\" in [%s]", name, lineno, key, cur.label);
			continue;
		}
		if (!seen_add(&seen, cur.label, key)) {
			cfg_error(errs, "%s:%d: %s.%s is set twice", name, lineno, cur.label, key);
			continue;
		}
		char *value = eq + 1;
		if (!clean_value(value, err, sizeof err) ||
		    !cfg_set(cur.base, k, (char *)skip_ws(value), err, sizeof err))
			cfg_error(errs, "%s:%d: %s.%s: %s", name, lineno, cur.label, key, err);
	}
	seen_free(&seen);
}

/* ------------------------------------------------------------ environment */

static void env_name(char *out, size_t n, const char *label, const char *key)
{
	size_t len = (size_t)snprintf(out, n, "RIDEHAIL_%s_%s", label, key);
	for (size_t i = 0; i < len && i < n; i++)
		out[i] = out[i] == '.' || out[i] == '-' ? '_' : (char)toupper((unsigned char)out[i]);
}

/* RIDEHAIL_<SECTION>_<KEY>=value; for repeated sections the middle part is
 * the instance name (RIDEHAIL_TARIFF_XL_BASE), which may create it. */
static bool env_apply_one(struct rh_config *cfg, const char *var, const char *value, struct cfg_errors *errs)
{
	char want[200], err[200];
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		for (const struct cfg_key *k = sec->keys; k->name; k++) {
			if (sec->max_instances == 0) {
				env_name(want, sizeof want, sec->name, k->name);
				if (strcmp(want, var) != 0)
					continue;
				if (!cfg_set((char *)cfg + sec->offset, k, value, err, sizeof err))
					cfg_error(errs, "environment %s: %s", var, err);
				return true;
			}
			char prefix[64], suffix[64];
			env_name(prefix, sizeof prefix, sec->name, "");
			env_name(suffix, sizeof suffix, "", k->name); /* "RIDEHAIL__KEY" */
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
			if (!valid_instance_name(inst))
				continue;
			void *base = instance_find(cfg, sec, inst, true);
			if (!base)
				cfg_error(errs, "environment %s: too many [%s.*] sections", var, sec->name);
			else if (!cfg_set(base, k, value, err, sizeof err))
				cfg_error(errs, "environment %s: %s", var, err);
			return true;
		}
	}
	return false;
}

static void env_apply(struct rh_config *cfg, char *const *envp, struct cfg_errors *errs)
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
		if (!env_apply_one(cfg, var, eq + 1, errs))
			cfg_error(errs, "environment %s: no such configuration key", var);
	}
}

/* ------------------------------------------------------------ whole config */

static void validate_sections(struct rh_config *cfg, struct cfg_errors *errs)
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
		for (int i = 0; i < *instance_count(cfg, sec); i++) {
			const char *inst = instance_at(cfg, sec, i);
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
		parse_text(cfg, name, text, errs);
	env_apply(cfg, envp, errs);
	cfg_default_instances(cfg);
	if (errs->n == 0)
		validate_sections(cfg, errs);
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

static void free_strings(void *base, const struct cfg_section *sec)
{
	for (const struct cfg_key *k = sec->keys; k->name; k++) {
		if (k->type == CFG_STR || k->type == CFG_ADDR) {
			char **f = field(base, k);
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
			free_strings((char *)cfg + sec->offset, sec);
			continue;
		}
		for (int i = 0; i < *instance_count(cfg, sec); i++)
			free_strings(instance_at(cfg, sec, i), sec);
		*instance_count(cfg, sec) = 0;
	}
}

/* ------------------------------------------------------------ output */

static void print_section(const void *base, const struct cfg_section *sec, const char *label, FILE *out)
{
	char v[1024];
	fprintf(out, "[%s]\n", label);
	for (const struct cfg_key *k = sec->keys; k->name; k++) {
		cfg_format(base, k, v, sizeof v);
		if ((k->flags & CFG_F_SECRET) && v[0])
			snprintf(v, sizeof v, "<redacted>");
		fprintf(out, "%s = %s\n", k->name, v);
	}
	fputc('\n', out);
}

void config_print(const struct rh_config *cfg, FILE *out)
{
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (sec->max_instances == 0) {
			print_section((const char *)cfg + sec->offset, sec, sec->name, out);
			continue;
		}
		int count = *(const int *)((const char *)cfg + sec->count_offset);
		for (int i = 0; i < count; i++) {
			const char *inst = (const char *)cfg + sec->offset + (size_t)i * sec->instance_size;
			char label[96];
			snprintf(label, sizeof label, "%s.%s", sec->name, inst);
			print_section(inst, sec, label, out);
		}
	}
}

bool config_get(const struct rh_config *cfg, const char *dotted, char *out, size_t outlen)
{
	const char *last = strrchr(dotted, '.');
	if (!last)
		return false;
	char label[96];
	size_t ll = (size_t)(last - dotted);
	if (ll >= sizeof label)
		return false;
	memcpy(label, dotted, ll);
	label[ll] = '\0';
	const char *dot = strchr(label, '.');
	size_t bl = dot ? (size_t)(dot - label) : ll;
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (strlen(sec->name) != bl || strncmp(sec->name, label, bl) != 0)
			continue;
		const struct cfg_key *k = key_find(sec, last + 1);
		if (!k)
			return false;
		const void *base = NULL;
		if (sec->max_instances == 0 && !dot) {
			base = (const char *)cfg + sec->offset;
		} else if (sec->max_instances > 0 && dot) {
			int count = *(const int *)((const char *)cfg + sec->count_offset);
			for (int i = 0; i < count && !base; i++) {
				const char *inst = (const char *)cfg + sec->offset + (size_t)i * sec->instance_size;
				if (strcmp(inst, dot + 1) == 0)
					base = inst;
			}
		}
		if (!base)
			return false;
		cfg_format(base, k, out, outlen);
		return true;
	}
	return false;
}

void config_print_doc(FILE *out)
{
	char range[128], env[200];
	fputs("# Configuration reference\n\n"
	      "Generated by `bin/ridehaild --help-config`; a test keeps this file equal to its output.\n"
	      "Every key can be set in `conf/ridehaild.conf` or overridden by the environment variable\n"
	      "shown. Durations take a unit (`ms`, `s`, `m`, `h`, `d`); sizes take `B`, `KiB`, `MiB`,\n"
	      "`GiB` or none (bytes).\n", out);
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		const char *label = sec->max_instances ? "<name>" : NULL;
		fprintf(out, "\n## [%s%s%s]\n\n%s\n", sec->name, label ? "." : "", label ? label : "", sec->help ? sec->help : "");
		if (sec->max_instances) {
			fprintf(out, "\nRepeated section: up to %d instances.", sec->max_instances);
			if (sec->default_instances && sec->default_instances[0]) {
				fputs(" Present by default:", out);
				for (int i = 0; sec->default_instances[i]; i++)
					fprintf(out, " `%s`", sec->default_instances[i]);
				fputc('.', out);
			}
			fputc('\n', out);
		}
		fputs("\n| key | type | default | range | unit | environment | meaning |\n"
		      "|---|---|---|---|---|---|---|\n", out);
		for (const struct cfg_key *k = sec->keys; k->name; k++) {
			range[0] = '\0';
			if (k->type == CFG_INT || k->type == CFG_DBL || k->type == CFG_DURATION ||
			    k->type == CFG_SIZE || k->type == CFG_LIST)
				fmt_range(range, sizeof range, k);
			else if (k->type == CFG_ENUM) {
				size_t len = 0;
				for (int i = 0; k->enum_values[i]; i++)
					len += (size_t)snprintf(range + len, sizeof range - len, "%s%s", i ? ", " : "", k->enum_values[i]);
			} else if (k->type == CFG_STR && k->max > 0)
				snprintf(range, sizeof range, "≤ %.0f chars", k->max);
			env_name(env, sizeof env, label ? "" : sec->name, k->name);
			if (label) {
				char tmp[200];
				snprintf(tmp, sizeof tmp, "RIDEHAIL_%s_<NAME>_%s", sec->name, k->name);
				for (char *c = tmp; *c; c++)
					if (*c != '<' && *c != '>' )
						*c = *c == '.' ? '_' : (char)toupper((unsigned char)*c);
				snprintf(env, sizeof env, "%s", tmp);
			}
			fprintf(out, "| `%s` | %s | `%s` | %s | %s | `%s` | %s |\n", k->name, type_name(k),
				k->def, range, k->unit ? k->unit : "", env, k->help);
		}
	}
}
