/* embed: turn the SQL of sql/ into C tables the daemon carries.
 * Usage: embed MIGRATION... [--functions FUNCTION_FILE...] > migrations.c
 *        embed --expand FUNCTION_FILE > file.sql   (its text as the daemon
 *        carries it, placeholders expanded: what `make install` installs)
 *
 * Migrations (sql/NNN_name.sql): each name starts with its version number;
 * versions must be strictly increasing (the Makefile passes them sorted).
 * A line "-- was-checksum: <16 hex digits>" in a migration names the
 * checksum of an earlier text of the same migration that this one stands
 * for (see src/store/migrate.c): collected into the table's `was` list.
 *
 * Function files (sql/functions/NN_name.sql): kept in the order given (the
 * Makefile sorts them by name), named by their file name without ".sql".
 * Their placeholders are replaced by the text they stand for (see
 * placeholders[] below). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *read_file(const char *path)
{
	FILE *in = fopen(path, "rb");
	if (!in) {
		perror(path);
		exit(1);
	}
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	size_t n;
	while (buf && (n = fread(buf + len, 1, cap - len - 1, in)) > 0) {
		len += n;
		if (len + 1 == cap)
			buf = realloc(buf, cap *= 2);
	}
	if (!buf || ferror(in)) {
		fprintf(stderr, "embed: %s: cannot read\n", path);
		exit(1);
	}
	fclose(in);
	buf[len] = '\0';
	return buf;
}

static void emit_string(const char *s)
{
	int col = 0;
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '\n') {
			fputs("\\n\"\n\t\"", stdout);
			col = 0;
			continue;
		}
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c == '\t')
			fputs("\\t", stdout);
		else if (c == '\r')
			continue;
		else if (c < 32 || c > 126)
			printf("\\%03o", c);
		else
			putchar(c);
		if (++col > 200) {
			fputs("\"\n\t\"", stdout);
			col = 0;
		}
	}
	putchar('"');
}

static const char *base_name(const char *path)
{
	const char *base = strrchr(path, '/');
	return base ? base + 1 : path;
}

/* Prints the migration's `was` list (its "-- was-checksum:" lines) as a
 * static array named was_<version>; answers whether it has any. */
static int emit_was(long version, const char *sql, const char *path)
{
	static const char tag[] = "-- was-checksum: ";
	int n = 0;
	for (const char *p = sql; (p = strstr(p, tag)) != NULL; p++) {
		if (p != sql && p[-1] != '\n')
			continue;
		const char *h = p + sizeof tag - 1;
		size_t len = strspn(h, "0123456789abcdef");
		if (len != 16 || (h[16] != '\n' && h[16] != '\r' && h[16] != ' ' && h[16] != '\0')) {
			fprintf(stderr, "embed: %s: a was-checksum is 16 lower-case hex digits\n", path);
			exit(1);
		}
		if (n++ == 0)
			printf("static const char *const was_%ld[] = { ", version);
		printf("\"%.16s\", ", h);
	}
	if (n)
		puts("NULL };");
	return n > 0;
}

static int emit_migrations(int argc, char **argv)
{
	long prev = 0;
	char *has_was = calloc((size_t)argc + 1, 1);
	/* the was lists first: the table below points at them */
	for (int i = 0; i < argc; i++) {
		const char *base = base_name(argv[i]);
		if (!isdigit((unsigned char)base[0])) {
			fprintf(stderr, "embed: %s: name must start with a version number\n", argv[i]);
			return 1;
		}
		long v = strtol(base, NULL, 10);
		if (v <= prev) {
			fprintf(stderr, "embed: %s: version %ld not above %ld\n", argv[i], v, prev);
			return 1;
		}
		prev = v;
		char *sql = read_file(argv[i]);
		has_was[i] = (char)emit_was(v, sql, argv[i]);
		free(sql);
	}
	puts("const struct migration rh_migrations[] = {");
	for (int i = 0; i < argc; i++) {
		char *end;
		long v = strtol(base_name(argv[i]), &end, 10);
		const char *name = *end == '_' ? end + 1 : end;
		size_t nlen = strcspn(name, ".");
		char *sql = read_file(argv[i]);
		printf("\t{ %ld, \"%.*s\",\n\t", v, (int)nlen, name);
		emit_string(sql);
		if (has_was[i])
			printf(",\n\twas_%ld },\n", v);
		else
			puts(", NULL },");
		free(sql);
	}
	if (argc == 0)
		puts("\t{ 0, NULL, NULL, NULL },");
	puts("};");
	printf("const int rh_migrations_count = %d;\n", argc);
	free(has_was);
	return 0;
}

/* ------------------------------------------------------------ placeholders */

struct placeholder {
	const char *name;                 /* as written in a function file */
	void (*expand)(const char *indent, char **out, size_t *len, size_t *cap);
};

static void append(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
	while (*len + n + 1 > *cap)
		*out = realloc(*out, *cap *= 2);
	if (!*out) {
		fprintf(stderr, "embed: out of memory\n");
		exit(1);
	}
	memcpy(*out + *len, s, n);
	*len += n;
	(*out)[*len] = '\0';
}

static void append_str(char **out, size_t *len, size_t *cap, const char *s)
{
	append(out, len, cap, s, strlen(s));
}

/* @TRIP_ROW@: the trip row's columns (include/trip/trip_row.def), one per
 * line with its position and name, as jsonb_build_array()'s arguments. */
static const struct {
	const char *name, *sql;
} trip_row[] = {
#define TRIP_ROW(c, name, sql) { #name, sql },
#include "trip/trip_row.def"
#undef TRIP_ROW
};

static void expand_trip_row(const char *indent, char **out, size_t *len, size_t *cap)
{
	size_t n = sizeof trip_row / sizeof *trip_row;
	for (size_t i = 0; i < n; i++) {
		char line[512];
		int w = snprintf(line, sizeof line, "%s%s%s -- %zu %s\n", indent, trip_row[i].sql, i + 1 < n ? "," : "", i,
				 trip_row[i].name);
		if (w < 0 || (size_t)w >= sizeof line) {
			fprintf(stderr, "embed: trip_row.def: %s: too long\n", trip_row[i].name);
			exit(1);
		}
		append_str(out, len, cap, line);
	}
}

static const struct placeholder placeholders[] = {
	{ "@TRIP_ROW@", expand_trip_row },
	{ NULL, NULL },
};

/* sql with every placeholder replaced; a placeholder stands alone on its
 * line, and each line of its text takes that line's indentation. */
static char *expand_placeholders(const char *sql, const char *path)
{
	size_t len = 0, cap = strlen(sql) + 4096;
	char *out = malloc(cap);
	if (!out) {
		fprintf(stderr, "embed: out of memory\n");
		exit(1);
	}
	out[0] = '\0';
	const char *line = sql;
	while (*line) {
		const char *eol = strchr(line, '\n');
		size_t n = eol ? (size_t)(eol - line) + 1 : strlen(line);
		size_t ind = strspn(line, " \t");
		const struct placeholder *ph = NULL;
		for (const struct placeholder *p = placeholders; p->name; p++) {
			size_t pl = strlen(p->name);
			if (strncmp(line + ind, p->name, pl) == 0 && (line[ind + pl] == '\n' || line[ind + pl] == '\0'))
				ph = p;
		}
		if (ph) {
			char indent[64];
			if (ind >= sizeof indent) {
				fprintf(stderr, "embed: %s: %s indented too deep\n", path, ph->name);
				exit(1);
			}
			memcpy(indent, line, ind);
			indent[ind] = '\0';
			ph->expand(indent, &out, &len, &cap);
		} else {
			for (const struct placeholder *p = placeholders; p->name; p++) {
				const char *at = strstr(line, p->name);
				if (at && at < line + n) {
					fprintf(stderr, "embed: %s: %s must stand alone on its line\n", path, p->name);
					exit(1);
				}
			}
			append(&out, &len, &cap, line, n);
		}
		line += n;
	}
	return out;
}

static int emit_functions(int argc, char **argv)
{
	puts("const struct function_file rh_function_files[] = {");
	for (int i = 0; i < argc; i++) {
		const char *name = base_name(argv[i]);
		size_t nlen = strcspn(name, ".");
		/* the name goes into SQL text as a literal, and orders the files */
		if (!isdigit((unsigned char)name[0]) || strspn(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != nlen ||
		    strcmp(name + nlen, ".sql") != 0) {
			fprintf(stderr, "embed: %s: name must be NN_name.sql (digits first; a-z, 0-9, _)\n", argv[i]);
			return 1;
		}
		char *sql = read_file(argv[i]);
		char *text = expand_placeholders(sql, argv[i]);
		printf("\t{ \"%.*s\",\n\t", (int)nlen, name);
		emit_string(text);
		puts(" },");
		free(text);
		free(sql);
	}
	if (argc == 0)
		puts("\t{ NULL, NULL },");
	puts("};");
	printf("const int rh_function_files_count = %d;\n", argc);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--expand") == 0) {
		char *sql = read_file(argv[2]);
		char *text = expand_placeholders(sql, argv[2]);
		fputs(text, stdout);
		free(text);
		free(sql);
		return ferror(stdout) ? 1 : 0;
	}
	int nmig = 1;
	while (nmig < argc && strcmp(argv[nmig], "--functions") != 0)
		nmig++;
	puts("/* generated by build-aux/embed from sql/; do not edit */");
	puts("#include <stddef.h>");
	puts("#include \"store/migrations.h\"");
	if (emit_migrations(nmig - 1, argv + 1))
		return 1;
	int first_fn = nmig < argc ? nmig + 1 : argc;
	return emit_functions(argc - first_fn, argv + first_fn);
}
