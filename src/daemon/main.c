/* ridehaild: the ride-hailing dispatch daemon. */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

int main(int argc, char **argv)
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
	const char *config_path = NULL, *get_key = NULL;
	char default_buf[4200];
	bool check = false, print = false, status = false;
	int c;

	rh_alloc_install_hooks();
	main_local_passfile();
	while ((c = getopt_long(argc, argv, "+c:tvh", opts, NULL)) != -1) {
		switch (c) {
		case 'c': config_path = optarg; break;
		case 't': check = true; break;
		case OPT_PRINT: print = true; break;
		case OPT_GET: get_key = optarg; break;
		case OPT_STATUS: status = true; break;
		case OPT_DOC: config_print_doc(stdout); return 0;
		case 'v': printf("ridehaild %s (%s)\n", RH_VERSION, RH_GIT_REV); return 0;
		case 'h': main_usage(stdout); return 0;
		default: main_usage(stderr); return 2;
		}
	}
	const char *command = optind < argc ? argv[optind] : NULL;
	if (command && strcmp(command, "migrate") == 0) {
		for (int i = optind + 1; i < argc; i++) {
			if (strcmp(argv[i], "--status") == 0) {
				status = true;
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

	/* without -c: the default file where it is found; the map tools need
	 * none (they run on the built-in defaults and the environment) */
	bool defaulted = config_path == NULL;
	if (defaulted)
		config_path = main_default_config(default_buf, sizeof default_buf);
	if (!config_path && !(command && strcmp(command, "map") == 0))
		config_path = DEFAULT_CONFIG; /* reported as missing */
	struct rh_config cfg;
	if (main_load_config(&cfg, config_path))
		return 1;
	if (main_local_jwt_secret(&cfg)) {
		config_fini(&cfg);
		return 1;
	}
	if (!config_path)
		config_path = "(built-in defaults)";
	if (check) {
		printf("ridehaild: configuration %s is valid\n", config_path);
		config_fini(&cfg);
		return 0;
	}
	if (print || get_key) {
		int rc = 0;
		if (print) {
			config_print(&cfg, stdout);
		} else {
			char value[4096];
			if (config_get(&cfg, get_key, value, sizeof value)) {
				puts(value);
			} else {
				fprintf(stderr, "ridehaild: no configuration key \"%s\"\n", get_key);
				rc = 1;
			}
		}
		config_fini(&cfg);
		return rc;
	}
	if (log_open(cfg.log.file, (enum log_format)cfg.log.format, (enum log_level)cfg.log.level) != RH_OK) {
		fprintf(stderr, "ridehaild: cannot open log file %s\n", cfg.log.file);
		config_fini(&cfg);
		return 1;
	}
	log_hook_libevent();
	if (sodium_init() < 0) {
		log_error(NULL, "libsodium failed to initialise");
		config_fini(&cfg);
		return 1;
	}
	if (command && strcmp(command, "map") == 0) {
		int rc = routing_map_cli(&cfg.routing, argc - optind, argv + optind);
		config_fini(&cfg);
		return rc;
	}
	if (command) {
		int rc = strcmp(command, "admin") == 0 ? auth_admin_cli(&cfg, argc - optind, argv + optind)
			 : strcmp(command, "events") == 0 ? events_cli(&cfg, argc - optind, argv + optind)
							  : migrate_cli(cfg.database.url, status);
		config_fini(&cfg);
		return rc;
	}

	struct server srv;
	if (server_init(&srv, &cfg, config_path) != RH_OK) {
		server_fini(&srv);
		return 1;
	}
	int rc = server_run(&srv);
	server_fini(&srv);
	log_close();
	return rc;
}
