/* ridehail-sim: the command line. */
#include "simtool.h"

static void sim_usage(void);
static double sim_num_arg(const char *flag, const char *v, double lo, double hi);
static char *sim_read_token_file(const char *path);

static void sim_usage(void)
{
	fprintf(stderr,
		"usage: ridehail-sim [--addr 127.0.0.1:8080] [--admin-token T | --admin-token-file F]\n"
		"         [--drivers 20] [--riders 40] [--duration 600] [--drain 0] [--speed 1] [--seed 1]\n"
		"         [--demand uniform|hotspots|replay] [--rate 120] [--hotspots 4] [--hotspot-sigma 400]\n"
		"         [--csv FILE --start 'YYYY-MM-DD HH:MM:SS' --window S --compress F] [--od FILE] [--demand-mult M]\n"
		"         [--map FILE] [--bbox minlon,minlat,maxlon,maxlat] [--margin 200] [--kmh 25] [--traffic 0.8]\n"
		"         [--ping 4] [--ping-jitter 1] [--accept 0.9] [--ignore 0.03] [--accept-delay 3] [--board 20]\n"
		"         [--patience 420] [--cruise] [--interval 30] [--http-conns 8] [--out DIR] [--quiet] [--dry-run]\n"
		"         [--price-sensitive 0] [--max-surge 1.3,2.5] [--surge-drift 0] [--drift-radius 3000] [--drift-gain 0.2]\n"
		"         [--follow-suggestions 0] [--share-fraction 0]\n"
		"See docs/simulator.md.\n");
	exit(2);
}

static double sim_num_arg(const char *flag, const char *v, double lo, double hi)
{
	char *end;
	double x = strtod(v, &end);
	if (end == v || *end || !(x >= lo && x <= hi)) {
		fprintf(stderr, "ridehail-sim: %s wants a number in %g..%g, not '%s'\n", flag, lo, hi, v);
		exit(2);
	}
	return x;
}

static char *sim_read_token_file(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char buf[512] = "";
	if (!fgets(buf, sizeof buf, f))
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\r\n")] = '\0';
	return buf[0] ? rh_strdup(buf) : NULL;
}

/* The numeric options: where each goes and the range it accepts. */
struct sim_num_opt {
	const char *flag;
	double *d;  /* a double option, or */
	int *i;     /* an int one */
	double lo, hi;
};

static const struct sim_num_opt *sim_num_opt_find(const char *flag)
{
	static const struct sim_num_opt opts[] = {
		{ "--drivers", NULL, &sim_st.ndrivers, 1, 100000 },
		{ "--riders", NULL, &sim_st.nriders, 1, 100000 },
		{ "--duration", &sim_st.duration, NULL, 1, 1e7 },
		{ "--drain", &sim_st.drain, NULL, 0, 1e7 },
		{ "--speed", &sim_st.speed, NULL, 0.01, 1000 },
		{ "--rate", &sim_st.rate, NULL, 0, 1e7 },
		{ "--hotspots", NULL, &sim_st.hotspots, 1, 1000 },
		{ "--hotspot-sigma", &sim_st.sigma_m, NULL, 1, 1e5 },
		{ "--window", &sim_st.window, NULL, 0, 1e9 },
		{ "--compress", &sim_st.compress, NULL, 0.001, 1e6 },
		{ "--demand-mult", NULL, &sim_st.demand_mult, 1, 1000 },
		{ "--margin", &sim_st.margin, NULL, 0, 1e5 },
		{ "--kmh", &sim_st.kmh, NULL, 1, 200 },
		{ "--traffic", &sim_st.traffic, NULL, 0.05, 2 },
		{ "--ping", &sim_st.ping_s, NULL, 0.5, 25 },
		{ "--ping-jitter", &sim_st.ping_jitter, NULL, 0, 10 },
		{ "--accept", &sim_st.accept_p, NULL, 0, 1 },
		{ "--ignore", &sim_st.ignore_p, NULL, 0, 1 },
		{ "--accept-delay", &sim_st.accept_delay, NULL, 0, 60 },
		{ "--board", &sim_st.board_s, NULL, 0, 3600 },
		{ "--patience", &sim_st.patience_s, NULL, 1, 1e6 },
		{ "--interval", &sim_st.interval, NULL, 1, 1e6 },
		{ "--http-conns", NULL, &sim_st.http_conns, 1, 256 },
		{ "--price-sensitive", &sim_sg.sensitive, NULL, 0, 1 },
		{ "--surge-drift", &sim_sg.drift, NULL, 0, 60 },
		{ "--drift-radius", &sim_sg.drift_radius_m, NULL, 100, 1e5 },
		{ "--drift-gain", &sim_sg.drift_gain, NULL, 0, 10 },
		{ "--follow-suggestions", &sim_st.follow_p, NULL, 0, 1 },
		{ "--share-fraction", &sim_st.share_fraction, NULL, 0, 1 },
	};
	for (size_t k = 0; k < sizeof opts / sizeof opts[0]; k++)
		if (!strcmp(opts[k].flag, flag))
			return &opts[k];
	return NULL;
}

static void sim_defaults(void)
{
	sim_sg.max_lo = 1.3;
	sim_sg.max_hi = 2.5;
	sim_sg.drift_radius_m = 3000;
	sim_sg.drift_gain = 0.2;
	snprintf(sim_st.host, sizeof sim_st.host, "127.0.0.1");
	sim_st.port = 8080;
	sim_st.ndrivers = 20;
	sim_st.nriders = 40;
	sim_st.duration = 600;
	sim_st.speed = 1;
	sim_st.seed = 1;
	sim_st.demand = "uniform";
	sim_st.rate = 120;
	sim_st.hotspots = 4;
	sim_st.sigma_m = 400;
	sim_st.compress = 1;
	sim_st.window = 0;
	sim_st.margin = 200;
	sim_st.kmh = 25;
	sim_st.traffic = 0.8;
	sim_st.ping_s = 4;
	sim_st.ping_jitter = 1;
	sim_st.accept_p = 0.9;
	sim_st.ignore_p = 0.03;
	sim_st.accept_delay = 3;
	sim_st.board_s = 20;
	sim_st.patience_s = 420;
	sim_st.interval = 30;
	sim_st.http_conns = 8;
	sim_st.demand_mult = 1;
}

/* A flag without a value; false when a is not one. */
static bool sim_switch_arg(const char *a)
{
	if (!strcmp(a, "--cruise"))
		sim_st.cruise = true;
	else if (!strcmp(a, "--quiet"))
		sim_st.quiet = true;
	else if (!strcmp(a, "--dry-run"))
		sim_st.dry_run = true;
	else if (!strcmp(a, "-h") || !strcmp(a, "--help"))
		sim_usage();
	else
		return false;
	return true;
}

/* An option with a value that is not in the numeric table; false when a
 * is none. */
static bool sim_value_arg(const char *a, const char *v, const char **token_file)
{
	const char **str[] = { &sim_st.admin_token, token_file, &sim_st.demand, &sim_st.csv, &sim_st.od,
			       &sim_st.start_str, &sim_st.map_path, &sim_st.out_dir };
	static const char *const str_flag[] = { "--admin-token", "--admin-token-file", "--demand", "--csv", "--od",
						"--start", "--map", "--out" };
	for (size_t k = 0; k < sizeof str_flag / sizeof str_flag[0]; k++)
		if (!strcmp(a, str_flag[k])) {
			*str[k] = v;
			return true;
		}
	if (!strcmp(a, "--addr")) {
		const char *c = strrchr(v, ':');
		if (!c || (size_t)(c - v) >= sizeof sim_st.host)
			sim_usage();
		snprintf(sim_st.host, sizeof sim_st.host, "%.*s", (int)(c - v), v);
		sim_st.port = (int)sim_num_arg(a, c + 1, 1, 65535);
	} else if (!strcmp(a, "--seed")) {
		sim_st.seed = (uint64_t)sim_num_arg(a, v, 0, 1e18);
	} else if (!strcmp(a, "--bbox")) {
		if (!sim_bbox_parse(v, &sim_st.box)) {
			fprintf(stderr, "ridehail-sim: --bbox wants minlon,minlat,maxlon,maxlat\n");
			exit(2);
		}
		sim_st.have_box = true;
	} else if (!strcmp(a, "--max-surge")) {
		if (sscanf(v, "%lf,%lf", &sim_sg.max_lo, &sim_sg.max_hi) != 2 || sim_sg.max_lo < 1 ||
		    sim_sg.max_hi < sim_sg.max_lo) {
			fprintf(stderr, "ridehail-sim: --max-surge wants LO,HI with 1 <= LO <= HI\n");
			exit(2);
		}
	} else {
		return false;
	}
	return true;
}

void sim_parse_args(int argc, char **argv)
{
	sim_defaults();
	const char *token_file = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (sim_switch_arg(a))
			continue;
		if (!v) {
			fprintf(stderr, "ridehail-sim: %s needs a value\n", a);
			sim_usage();
		}
		i++;
		const struct sim_num_opt *o = sim_num_opt_find(a);
		if (o && o->d)
			*o->d = sim_num_arg(a, v, o->lo, o->hi);
		else if (o)
			*o->i = (int)sim_num_arg(a, v, o->lo, o->hi);
		else if (!sim_value_arg(a, v, &token_file)) {
			fprintf(stderr, "ridehail-sim: unknown option %s\n", a);
			sim_usage();
		}
	}
	if (sim_st.ping_jitter >= sim_st.ping_s)
		sim_st.ping_jitter = sim_st.ping_s / 2;
	if (!sim_st.admin_token)
		sim_st.admin_token = getenv("RIDEHAIL_ADMIN_TOKEN");
	if (!sim_st.admin_token || !*sim_st.admin_token)
		sim_st.admin_token = sim_read_token_file(token_file ? token_file : "var/admin.token");
	if (!sim_st.admin_token && !sim_st.dry_run) {
		fprintf(stderr, "ridehail-sim: no admin token (--admin-token, --admin-token-file, RIDEHAIL_ADMIN_TOKEN or "
				"var/admin.token)\n");
		exit(2);
	}
	if (strcmp(sim_st.demand, "uniform") && strcmp(sim_st.demand, "hotspots") && strcmp(sim_st.demand, "replay")) {
		fprintf(stderr, "ridehail-sim: --demand is uniform, hotspots or replay\n");
		exit(2);
	}
	if (!strcmp(sim_st.demand, "replay") && !sim_st.csv) {
		fprintf(stderr, "ridehail-sim: --demand replay needs --csv FILE\n");
		exit(2);
	}
}
