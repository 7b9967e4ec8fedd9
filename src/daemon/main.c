/* ridehaild: the ride-hailing dispatch daemon. */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/auth.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/log.h"
#include "daemon/server.h"
#include "core/settings.h"
#include "routing/routing.h"
#include "events/events.h"
#include "store/migrations.h"

extern char **environ;

/* The repository's configuration, found from its root or beside the
 * binary; `make install` builds the installed binary with RH_DEFAULT_CONFIG
 * = $(SYSCONFDIR)/ridehail/ridehaild.conf, an absolute path. */
#ifdef RH_DEFAULT_CONFIG
#define DEFAULT_CONFIG RH_DEFAULT_CONFIG
#define DEFAULT_CONFIG_HELP "(default " DEFAULT_CONFIG ")\n"
#else
#define DEFAULT_CONFIG "conf/ridehaild.conf"
#define DEFAULT_CONFIG_HELP                                                                                \
	"(default " DEFAULT_CONFIG " here, else beside\n"                                                  \
	"                      the binary: <bin>/../" DEFAULT_CONFIG ")\n"
#endif

static void main_usage(FILE *out)
{
	fprintf(out,
		"usage: ridehaild [options]              run the daemon\n"
		"       ridehaild [options] migrate [--status]\n"
		"                                        apply pending schema migrations (or show the version)\n"
		"       ridehaild [options] admin <command> ...\n"
		"                                        create accounts, mint tokens (ridehaild admin --help)\n"
		"       ridehaild [options] map import <extract.osm.pbf|.osm|.osm.gz|.osm.bz2> -o <file.map>\n"
		"                                        build a road map for [routing] map\n"
		"       ridehaild [options] map calibrate [<file.map>] --trips <trips.csv> [--tz Area/City]\n"
		"                                        fit travel times from completed trips into the map\n"
		"       ridehaild [options] events tail [--subject S] [--all] [--count N] [--idle-exit D]\n"
		"                                        print events from the JetStream stream as JSON lines\n"
		"\n"
		"options:\n"
		"  -c, --config PATH   configuration file " DEFAULT_CONFIG_HELP
		"  -t, --check-config  validate the configuration and exit (0 valid, 1 not)\n"
		"      --print-config  print the effective configuration (secrets redacted) and exit\n"
		"      --get KEY       print one effective value, e.g. --get database.url\n"
		"      --help-config   print every configuration key as Markdown and exit\n"
		"  -v, --version       print the version and exit\n"
		"  -h, --help          this text\n"
		"\n"
		"Every key can be overridden by the environment: RIDEHAIL_<SECTION>_<KEY>,\n"
		"e.g. RIDEHAIL_HTTP_LISTEN=127.0.0.1:18080.\n");
}

/* The default configuration: conf/ridehaild.conf in the working directory,
 * else beside the binary (<dir of ridehaild>/../conf/), so that `ridehaild
 * map ...` works from anywhere; an installed binary's absolute path as it
 * is. NULL when none exists. */
static const char *main_default_config(char *buf, size_t len)
{
	if (access(DEFAULT_CONFIG, F_OK) == 0)
		return DEFAULT_CONFIG;
	if (DEFAULT_CONFIG[0] == '/')
		return NULL;
	char exe[4096];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return NULL;
	exe[n] = 0;
	char *slash = strrchr(exe, '/');
	if (!slash)
		return NULL;
	*slash = 0;
	snprintf(buf, len, "%s/../" DEFAULT_CONFIG, exe);
	return access(buf, F_OK) == 0 ? buf : NULL;
}

static int main_load_config(struct rh_config *cfg, const char *path)
{
	struct cfg_errors errs;
	if (config_load(cfg, path, environ, &errs) == RH_OK)
		return 0;
	for (int i = 0; i < errs.n; i++)
		fprintf(stderr, "ridehaild: %s\n", errs.msg[i]);
	if (errs.n == CFG_MAX_ERRORS)
		fprintf(stderr, "ridehaild: (more errors not shown)\n");
	config_fini(cfg);
	return 1;
}

/* The local default database (scripts/localdb.sh) takes passwords only, kept
 * in var/pg/pgpass: a command run from the clone finds it there, as it finds
 * the database at database.url's built-in default, with nothing set. An
 * explicit PGPASSFILE (or passfile= in the URL, which libpq prefers) wins. */
static void main_local_passfile(void)
{
	static const char local[] = "var/pg/pgpass";
	char *abs;
	if (getenv("PGPASSFILE") || access(local, R_OK) != 0 || !(abs = realpath(local, NULL)))
		return;
	setenv("PGPASSFILE", abs, 0);
	free(abs);
}

/* The local default's token key: `make run` generates var/jwt.secret, and
 * a command run from the clone (`ridehaild admin token` in a second shell)
 * signs with it as the daemon does, with nothing set. auth.jwt_secret, when
 * set, wins; the file must be its owner's alone, as any file holding a
 * secret (a service's working directory has no var/jwt.secret: there an
 * empty auth.jwt_secret still means a random key per process). */
static int main_local_jwt_secret(struct rh_config *cfg)
{
	static const char local[] = "var/jwt.secret";
	if (cfg->auth.jwt_secret && cfg->auth.jwt_secret[0])
		return 0;
	FILE *f = fopen(local, "r");
	if (!f)
		return 0;
	struct stat st;
	char key[1100];
	int rc = 0;
	if (fstat(fileno(f), &st) != 0 || (st.st_mode & (S_IRWXG | S_IRWXO))) {
		fprintf(stderr, "ridehaild: %s is readable by others; it holds the token key (chmod 600)\n", local);
		rc = 1;
	} else if (!fgets(key, sizeof key, f) || (key[strcspn(key, "\r\n")] = '\0', strlen(key) < 32) ||
		   strlen(key) > 1024) {
		fprintf(stderr, "ridehaild: %s does not hold a key of 32 to 1,024 characters on its first line\n", local);
		rc = 1;
	} else {
		rh_free(cfg->auth.jwt_secret);
		cfg->auth.jwt_secret = rh_strdup(key);
	}
	sodium_memzero(key, sizeof key);
	fclose(f);
	return rc;
}

/* What the command line asked for. */
struct main_opts {
	const char *config_path, *get_key;
	const char *command; /* migrate, admin, map, events, or NULL: the daemon */
	bool check, print, status;
};

/* Reads the options and the command: -1 to go on, else the exit code. */
static int main_parse_args(int argc, char **argv, struct main_opts *o)
{
	enum { OPT_PRINT = 256, OPT_DOC, OPT_GET, OPT_STATUS };
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "check-config", no_argument, NULL, 't' },
		{ "print-config", no_argument, NULL, OPT_PRINT },
		{ "help-config", no_argument, NULL, OPT_DOC },
		{ "get", required_argument, NULL, OPT_GET },
		{ "status", no_argument, NULL, OPT_STATUS },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ 0 },
	};
	int c;
	while ((c = getopt_long(argc, argv, "+c:tvh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': o->config_path = optarg; break;
		case 't': o->check = true; break;
		case OPT_PRINT: o->print = true; break;
		case OPT_GET: o->get_key = optarg; break;
		case OPT_STATUS: o->status = true; break;
		case OPT_DOC: config_print_doc(stdout); return 0;
		case 'v': printf("ridehaild %s (%s)\n", RH_VERSION, RH_GIT_REV); return 0;
		case 'h': main_usage(stdout); return 0;
		default: main_usage(stderr); return 2;
		}
	}
	const char *command = optind < argc ? argv[optind] : NULL;
	o->command = command;
	if (command && strcmp(command, "migrate") == 0) {
		for (int i = optind + 1; i < argc; i++) {
			if (strcmp(argv[i], "--status") == 0) {
				o->status = true;
			} else {
				fprintf(stderr, "ridehaild migrate: unknown argument \"%s\"\n", argv[i]);
				return 2;
			}
		}
	}
	if (command && strcmp(command, "migrate") != 0 && strcmp(command, "admin") != 0 && strcmp(command, "map") != 0 &&
	    strcmp(command, "events") != 0) {
		fprintf(stderr, "ridehaild: unknown command \"%s\"\n", command);
		main_usage(stderr);
		return 2;
	}
	return -1;
}

/* --check-config, --print-config, --get: the exit code. */
static int main_config_only(const struct rh_config *cfg, const struct main_opts *o)
{
	if (o->check) {
		printf("ridehaild: configuration %s is valid\n", o->config_path);
		return 0;
	}
	if (o->print) {
		config_print(cfg, stdout);
		return 0;
	}
	char value[4096];
	if (config_get(cfg, o->get_key, value, sizeof value)) {
		puts(value);
		return 0;
	}
	fprintf(stderr, "ridehaild: no configuration key \"%s\"\n", o->get_key);
	return 1;
}

/* The log and libsodium, then the command if one was given: false to run
 * the daemon, true when done (*rc: the exit code). */
static bool main_start(struct rh_config *cfg, const struct main_opts *o, int argc, char **argv, int *rc)
{
	*rc = 1;
	if (log_open(cfg->log.file, (enum log_format)cfg->log.format, (enum log_level)cfg->log.level) != RH_OK) {
		fprintf(stderr, "ridehaild: cannot open log file %s\n", cfg->log.file);
		return true;
	}
	log_hook_libevent();
	if (sodium_init() < 0) {
		log_error(NULL, "libsodium failed to initialise");
		return true;
	}
	const char *command = o->command;
	if (!command)
		return false;
	if (strcmp(command, "map") == 0)
		*rc = routing_map_cli(&cfg->routing, argc - optind, argv + optind);
	else
		*rc = strcmp(command, "admin") == 0 ? auth_admin_cli(cfg, argc - optind, argv + optind)
		      : strcmp(command, "events") == 0 ? events_cli(cfg, argc - optind, argv + optind)
						       : migrate_cli(cfg->database.url, o->status);
	return true;
}

int main(int argc, char **argv)
{
	struct main_opts o = { 0 };
	char default_buf[4200];

	rh_alloc_install_hooks();
	main_local_passfile();
	int rc = main_parse_args(argc, argv, &o);
	if (rc >= 0)
		return rc;

	/* without -c: the default file where it is found; the map tools need
	 * none (they run on the built-in defaults and the environment) */
	if (!o.config_path)
		o.config_path = main_default_config(default_buf, sizeof default_buf);
	if (!o.config_path && !(o.command && strcmp(o.command, "map") == 0))
		o.config_path = DEFAULT_CONFIG; /* reported as missing */
	struct rh_config cfg;
	if (main_load_config(&cfg, o.config_path))
		return 1;
	if (main_local_jwt_secret(&cfg)) {
		config_fini(&cfg);
		return 1;
	}
	if (!o.config_path)
		o.config_path = "(built-in defaults)";
	if (o.check || o.print || o.get_key) {
		rc = main_config_only(&cfg, &o);
		config_fini(&cfg);
		return rc;
	}
	if (main_start(&cfg, &o, argc, argv, &rc)) {
		config_fini(&cfg);
		return rc;
	}

	/* The tariffs' time-of-day bands are local times of pricing.timezone:
	 * the process's own zone (logs and the API keep to UTC, gmtime_r). Set
	 * before any thread starts. */
	setenv("TZ", cfg.pricing.timezone, 1);
	tzset();
	struct server srv;
	if (server_init(&srv, &cfg, o.config_path) != RH_OK) {
		server_fini(&srv);
		return 1;
	}
	rc = server_run(&srv);
	server_fini(&srv);
	log_close();
	return rc;
}
