#include "../unit.h"

#include <stdlib.h>

#include "core/config.h"
#include "core/settings.h"

static char *const no_env[] = { NULL };

/* Loads text and returns the number of errors; the first one goes to first. */
static int load(struct rh_config *cfg, const char *text, char *const *env, char *first, size_t n)
{
	struct cfg_errors errs;
	rh_err e = config_load_buffer(cfg, "test.conf", text, env, &errs);
	if (first)
		snprintf(first, n, "%s", errs.n ? errs.msg[0] : "");
	if (e == RH_OK && errs.n)
		unit_fail(__FILE__, __LINE__, "RH_OK with errors");
	return errs.n;
}

UNIT_TEST(config_defaults_are_valid)
{
	struct rh_config cfg;
	REQUIRE(load(&cfg, NULL, no_env, NULL, 0) == 0);
	CHECK_EQ_STR(cfg.http.listen, "127.0.0.1:8080");
	CHECK_EQ_INT(cfg.http.max_header_size, 8192);
	CHECK_EQ_INT(cfg.http.max_body_size, 65536);
	CHECK_EQ_INT(cfg.server.shutdown_timeout_ms, 10000);
	CHECK_EQ_INT(cfg.database.pool_size, 4);
	CHECK(cfg.database.migrate);
	config_fini(&cfg);
}

UNIT_TEST(config_file_values_and_comments)
{
	struct rh_config cfg;
	const char *text = "# top comment\n"
			   "[http]\n"
			   "listen = 0.0.0.0:9000   # inline comment\n"
			   "max_body_size = 1MiB\n"
			   "request_timeout = 1500ms\n"
			   "\n"
			   "[database]\r\n"
			   "url = \"postgres://u@h:1/db#frag\"\r\n"
			   "migrate = off\n"
			   "[log]\n"
			   "level = debug\n";
	char err[256];
	REQUIRE(load(&cfg, text, no_env, err, sizeof err) == 0);
	CHECK_EQ_STR(cfg.http.listen, "0.0.0.0:9000");
	CHECK_EQ_INT(cfg.http.max_body_size, 1048576);
	CHECK_EQ_INT(cfg.http.request_timeout_ms, 1500);
	CHECK_EQ_STR(cfg.database.url, "postgres://u@h:1/db#frag");
	CHECK(!cfg.database.migrate);
	CHECK_EQ_INT(cfg.log.level, 0);
	config_fini(&cfg);
}

UNIT_TEST(config_env_overrides_file)
{
	struct rh_config cfg;
	char *env[] = { "PATH=/bin", "RIDEHAIL_HTTP_LISTEN=127.0.0.1:18080", "RIDEHAIL_DATABASE_POOL_SIZE=7", NULL };
	REQUIRE(load(&cfg, "[http]\nlisten = 1.2.3.4:80\n", env, NULL, 0) == 0);
	CHECK_EQ_STR(cfg.http.listen, "127.0.0.1:18080");
	CHECK_EQ_INT(cfg.database.pool_size, 7);
	config_fini(&cfg);
}

/* Each class of mistake is reported with file:line and a clear reason. */
UNIT_TEST(config_error_classes)
{
	static const struct { const char *text; const char *want; } cases[] = {
		{ "[http]\nbogus = 1\n", "test.conf:2: unknown key \"bogus\" in [http]" },
		{ "[nope]\nx = 1\n", "test.conf:1: unknown section [nope]" },
		{ "[http]\nbacklog = 5\nbacklog = 6\n", "test.conf:3: http.backlog is set twice" },
		{ "[http]\nbacklog = many\n", "test.conf:2: http.backlog: \"many\" is not an integer" },
		{ "[http]\nbacklog = 0\n", "test.conf:2: http.backlog: 0 is out of range 1..65535" },
		{ "[http]\nbacklog = 1.5\n", "test.conf:2: http.backlog: \"1.5\" is not an integer" },
		{ "[http]\nrequest_timeout = 10\n", "test.conf:2: http.request_timeout: \"10\" is not a duration" },
		{ "[http]\nmax_body_size = 1TiB\n", "test.conf:2: http.max_body_size: \"1TiB\" is not a size" },
		{ "[http]\nlisten = localhost\n", "test.conf:2: http.listen: \"localhost\" is not host:port" },
		{ "[http]\nlisten = 1.2.3.4:70000\n", "test.conf:2: http.listen: \"1.2.3.4:70000\" is not host:port" },
		{ "[log]\nlevel = loud\n", "test.conf:2: log.level: \"loud\" is not one of debug info warn error" },
		{ "[database]\nmigrate = maybe\n", "test.conf:2: database.migrate: \"maybe\" is not a boolean" },
		{ "listen = x\n", "test.conf:1: key \"listen\" outside any [section]" },
		{ "[http\n", "test.conf:1: malformed section header" },
		{ "[http]\njust words\n", "test.conf:2: expected \"key = value\"" },
		{ "[database]\nurl = \"open\n", "test.conf:2: database.url: unterminated quoted value" },
		{ "[http]\nmax_body_size = nan\n", "test.conf:2: http.max_body_size: \"nan\" is not a size" },
		{ "[http]\nbacklog = 0x10\n", "test.conf:2: http.backlog: \"0x10\" is not an integer" },
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct rh_config cfg;
		char err[256];
		int n = load(&cfg, cases[i].text, no_env, err, sizeof err);
		if (n == 0) {
			unit_fail(__FILE__, __LINE__, "case %zu accepted: %s", i, cases[i].text);
		} else if (strncmp(err, cases[i].want, strlen(cases[i].want)) != 0) {
			unit_fail(__FILE__, __LINE__, "case %zu: got \"%s\", want prefix \"%s\"", i, err, cases[i].want);
		}
		config_fini(&cfg);
	}
}

UNIT_TEST(config_env_errors)
{
	struct rh_config cfg;
	char err[256];
	char *env1[] = { "RIDEHAIL_HTTP_LISTNE=1.2.3.4:5", NULL };
	CHECK_EQ_INT(load(&cfg, NULL, env1, err, sizeof err), 1);
	CHECK_EQ_STR(err, "environment RIDEHAIL_HTTP_LISTNE: no such configuration key");
	config_fini(&cfg);
	char *env2[] = { "RIDEHAIL_DATABASE_POOL_SIZE=1000", NULL };
	CHECK_EQ_INT(load(&cfg, NULL, env2, err, sizeof err), 1);
	CHECK_EQ_STR(err, "environment RIDEHAIL_DATABASE_POOL_SIZE: 1000 is out of range 1..64");
	config_fini(&cfg);
}

UNIT_TEST(config_all_errors_reported)
{
	struct rh_config cfg;
	struct cfg_errors errs;
	rh_err e = config_load_buffer(&cfg, "f", "[http]\na = 1\nb = 2\n[log]\nlevel = x\n", no_env, &errs);
	CHECK(e == RH_EINVAL);
	CHECK_EQ_INT(errs.n, 3);
	config_fini(&cfg);
}

UNIT_TEST(config_parsers)
{
	int64_t v;
	bool b;
	char host[64];
	int port;
	CHECK(cfg_parse_duration_ms("250ms", &v) && v == 250);
	CHECK(cfg_parse_duration_ms("1.5s", &v) && v == 1500);
	CHECK(cfg_parse_duration_ms("2m", &v) && v == 120000);
	CHECK(cfg_parse_duration_ms("1h", &v) && v == 3600000);
	CHECK(!cfg_parse_duration_ms("5", &v));
	CHECK(!cfg_parse_duration_ms("-1s", &v));
	CHECK(!cfg_parse_duration_ms("0.5ms", &v));
	CHECK(cfg_parse_size("64KiB", &v) && v == 65536);
	CHECK(cfg_parse_size("100", &v) && v == 100);
	CHECK(!cfg_parse_size("1.5B", &v));
	CHECK(cfg_parse_bool("Yes", &b) && b);
	CHECK(cfg_parse_bool("off", &b) && !b);
	CHECK(!cfg_parse_bool("2", &b));
	CHECK(cfg_split_addr("[::1]:8080", host, sizeof host, &port) && port == 8080 && strcmp(host, "::1") == 0);
	CHECK(cfg_split_addr("localhost:0", host, sizeof host, &port) && port == 0);
	CHECK(!cfg_split_addr("::1:8080", host, sizeof host, &port));
	CHECK(!cfg_split_addr(":80", host, sizeof host, &port));
	CHECK(!cfg_split_addr("a b:80", host, sizeof host, &port));
}

UNIT_TEST(config_get_and_print)
{
	struct rh_config cfg;
	char out[256];
	char *env[] = { "RIDEHAIL_DATABASE_URL=postgres://secret@x/y", NULL };
	REQUIRE(load(&cfg, NULL, env, NULL, 0) == 0);
	CHECK(config_get(&cfg, "http.max_body_size", out, sizeof out));
	CHECK_EQ_STR(out, "64KiB");
	CHECK(config_get(&cfg, "database.url", out, sizeof out));
	CHECK_EQ_STR(out, "postgres://secret@x/y");
	CHECK(!config_get(&cfg, "http.nope", out, sizeof out));
	CHECK(!config_get(&cfg, "nope", out, sizeof out));
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print(&cfg, f);
	fclose(f);
	CHECK(strstr(buf, "[http]\nlisten = 127.0.0.1:8080\n") != NULL);
	CHECK(strstr(buf, "postgres://secret") == NULL); /* redacted */
	CHECK(strstr(buf, "url = <redacted>") != NULL);
	free(buf);
	config_fini(&cfg);
}

/* The shipped conf/ridehaild.conf parses, and names every key of the table
 * with exactly its built-in default: it is the documentation of defaults. */
UNIT_TEST(config_shipped_file_matches_table)
{
	struct rh_config cfg, def;
	struct cfg_errors errs;
	FILE *f = fopen("conf/ridehaild.conf", "r");
	REQUIRE(f != NULL);
	char text[65536];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = '\0';
	rh_err e = config_load_buffer(&cfg, "conf/ridehaild.conf", text, no_env, &errs);
	for (int i = 0; i < errs.n; i++)
		unit_fail(__FILE__, __LINE__, "%s", errs.msg[i]);
	REQUIRE(e == RH_OK);
	REQUIRE(load(&def, NULL, no_env, NULL, 0) == 0);
	for (int s = 0; cfg_sections[s]; s++) {
		const struct cfg_section *sec = cfg_sections[s];
		if (sec->max_instances)
			continue; /* repeated sections are checked by their own module tests */
		char section_hdr[96];
		snprintf(section_hdr, sizeof section_hdr, "\n[%s]\n", sec->name);
		const char *at = strstr(text, section_hdr);
		if (!at) {
			unit_fail(__FILE__, __LINE__, "conf/ridehaild.conf lacks [%s]", sec->name);
			continue;
		}
		for (const struct cfg_key *k = sec->keys; k->name; k++) {
			char key[160], a[512], b[512];
			snprintf(key, sizeof key, "%s.%s", sec->name, k->name);
			config_get(&cfg, key, a, sizeof a);
			config_get(&def, key, b, sizeof b);
			char line[160];
			snprintf(line, sizeof line, "\n%s =", k->name);
			const char *next = strstr(at + 1, "\n[");
			const char *kat = strstr(at, line);
			if (!kat || (next && kat > next))
				unit_fail(__FILE__, __LINE__, "conf/ridehaild.conf does not set %s", key);
			else if (strcmp(a, b) != 0)
				unit_fail(__FILE__, __LINE__, "conf/ridehaild.conf sets %s = %s, default is %s", key, a, b);
			if (!k->help || strlen(k->help) < 10)
				unit_fail(__FILE__, __LINE__, "%s has no help text", key);
		}
	}
	config_fini(&cfg);
	config_fini(&def);
}

UNIT_TEST(config_repeated_sections)
{
	struct rh_config cfg;
	char err[256];
	/* none mentioned: the default vehicle type */
	REQUIRE(load(&cfg, NULL, no_env, NULL, 0) == 0);
	CHECK_EQ_INT(cfg.ntariffs, 1);
	CHECK_EQ_STR(cfg.tariff[0].name, "standard");
	CHECK_EQ_INT(cfg.tariff[0].base, 250);
	config_fini(&cfg);
	/* the file names its own: they replace the default */
	REQUIRE(load(&cfg, "[tariff.xl]\nbase = 500\ncurrency = EUR\n[tariff.moto]\nseats = 1\n", no_env, err, sizeof err) == 0);
	CHECK_EQ_INT(cfg.ntariffs, 2);
	CHECK_EQ_STR(cfg.tariff[0].name, "xl");
	CHECK_EQ_INT(cfg.tariff[0].base, 500);
	CHECK_EQ_STR(cfg.tariff[0].currency, "EUR");
	CHECK_EQ_INT(cfg.tariff[1].seats, 1);
	CHECK_EQ_INT(cfg.tariff[1].per_km, 156); /* defaults fill the rest */
	config_fini(&cfg);
	/* the environment can add one and change one */
	char *env[] = { "RIDEHAIL_TARIFF_XL_BASE=900", "RIDEHAIL_TARIFF_VAN_SEATS=8", NULL };
	REQUIRE(load(&cfg, "[tariff.xl]\nbase = 500\n", env, NULL, 0) == 0);
	CHECK_EQ_INT(cfg.ntariffs, 2);
	CHECK_EQ_INT(cfg.tariff[0].base, 900);
	CHECK_EQ_STR(cfg.tariff[1].name, "van");
	CHECK_EQ_INT(cfg.tariff[1].seats, 8);
	config_fini(&cfg);
	/* bad names and values */
	CHECK(load(&cfg, "[tariff]\n", no_env, err, sizeof err) == 1);
	CHECK(strstr(err, "needs an instance name") != NULL);
	config_fini(&cfg);
	CHECK(load(&cfg, "[tariff.Big Car]\n", no_env, err, sizeof err) == 1);
	config_fini(&cfg);
	CHECK(load(&cfg, "[tariff.xl]\ncurrency = usd\n", no_env, err, sizeof err) == 1);
	CHECK(strstr(err, "[tariff.xl]: currency must be three capital letters") != NULL);
	config_fini(&cfg);
	CHECK(load(&cfg, "[tariff.xl]\nbase = 1\n[tariff.xl]\nbase = 2\n", no_env, err, sizeof err) == 1);
	CHECK(strstr(err, "tariff.xl.base is set twice") != NULL);
	config_fini(&cfg);
}
