/* `ridehaild admin ...`: create accounts and mint tokens from the command
 * line, for operators bootstrapping a fleet. Blocking libpq is fine here: no
 * event loop runs. Validation and SQL are the daemon's own (auth_internal.h). */
#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth/auth.h"
#include "auth_internal.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/settings.h"

static void auth_cli_usage(FILE *out)
{
	fprintf(out,
		"usage: ridehaild admin create-rider    --email E --name N (--password P | --password-stdin) [--phone T]\n"
		"       ridehaild admin create-operator --email E --name N (--password P | --password-stdin)\n"
		"       ridehaild admin create-driver   --email E --name N (--password P | --password-stdin) [--phone T]\n"
		"                                       --vehicle-type T --make M --model M --color C --plate P\n"
		"       ridehaild admin token --role rider|driver|operator --id UUID [--ttl 12h]\n"
		"       ridehaild admin disable|enable|delete --role rider|driver|operator --id UUID\n"
		"Prints the created account (JSON) or the token. Uses database.url and auth.* from the configuration.\n"
		"disable and delete end the account's tokens and sessions at once (a running daemon is told).\n");
}

/* One statement; the result (the caller clears it), or NULL after saying why. */
static PGresult *auth_cli_exec(const struct rh_config *cfg, const char *sql, int n, const char *const *params)
{
	PGconn *pg = PQconnectdb(cfg->database.url);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "ridehaild admin: cannot connect: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return NULL;
	}
	PGresult *res = PQexecParams(pg, sql, n, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "ridehaild admin: %s", PQresultErrorMessage(res));
		PQclear(res);
		res = NULL;
	}
	PQfinish(pg);
	return res;
}

/* disable, enable, delete: the daemon's own statements. */
static int auth_cli_standing(const struct rh_config *cfg, const char *cmd, const char *role, const char *id)
{
	enum auth_role r = auth_role_parse(role);
	if (r == ROLE_NONE || !id || !jv_is_uuid(id)) {
		fprintf(stderr, "ridehaild admin %s: --role rider|driver|operator and --id UUID are required\n", cmd);
		return 2;
	}
	bool del = strcmp(cmd, "delete") == 0;
	const struct db_stmt *st = del ? &st_delete[auth_role_index(r)] : &st_set_disabled[auth_role_index(r)];
	const char *params[] = { id, strcmp(cmd, "disable") == 0 ? "true" : "false" };
	PGresult *res = auth_cli_exec(cfg, st->sql, st->nparams, params);
	if (!res)
		return 1;
	int rc = 0;
	if (del && PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "0") != 0 && PQgetisnull(res, 0, 2)) {
		fprintf(stderr, "ridehaild admin delete: the %s is in a trip: finish or cancel it (or disable it) first\n", role);
		rc = 1;
	} else if (PQntuples(res) == 0 || (del && strcmp(PQgetvalue(res, 0, 0), "0") == 0)) {
		fprintf(stderr, "ridehaild admin %s: no %s with id %s\n", cmd, role, id);
		rc = 1;
	} else {
		printf("%s %s %sd\n", role, id, cmd);
	}
	PQclear(res);
	return rc;
}

static int auth_cli_mint(const struct rh_config *cfg, const char *role, const char *id, const char *ttl)
{
	int64_t ttl_ms = cfg->auth.token_ttl_ms;
	enum auth_role r = auth_role_parse(role);
	if (r == ROLE_NONE || !id || !jv_is_uuid(id)) {
		fprintf(stderr, "ridehaild admin token: --role rider|driver|operator and --id UUID are required\n");
		return 2;
	}
	if (ttl && !cfg_parse_duration_ms(ttl, &ttl_ms)) {
		fprintf(stderr, "ridehaild admin token: --ttl \"%s\" is not a duration\n", ttl);
		return 2;
	}
	if (!cfg->auth.jwt_secret[0]) {
		fprintf(stderr, "ridehaild admin token: auth.jwt_secret is empty and there is no var/jwt.secret here, so the daemon's key is random: set it first\n");
		return 1;
	}
	/* the account's credential version: a token under an older one is refused */
	static const char *const sql[] = {
		"SELECT credential_version, disabled, deleted_at IS NOT NULL FROM riders WHERE id = $1::uuid",
		"SELECT credential_version, disabled, deleted_at IS NOT NULL FROM drivers WHERE id = $1::uuid",
		"SELECT credential_version, disabled, deleted_at IS NOT NULL FROM operators WHERE id = $1::uuid",
	};
	const char *params[] = { id };
	PGresult *res = auth_cli_exec(cfg, sql[auth_role_index(r)], 1, params);
	if (!res)
		return 1;
	if (PQntuples(res) != 1 || PQgetvalue(res, 0, 1)[0] == 't' || PQgetvalue(res, 0, 2)[0] == 't') {
		fprintf(stderr, "ridehaild admin token: no %s %s in good standing (absent, disabled or deleted)\n", role, id);
		PQclear(res);
		return 1;
	}
	int64_t cv = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	char token[JWT_MAX_LEN];
	if (auth_issue_token((const unsigned char *)cfg->auth.jwt_secret, strlen(cfg->auth.jwt_secret), r, id, cv,
			     rh_wall_ms() / 1000, ttl_ms / 1000, token, sizeof token, NULL) != RH_OK)
		return 1;
	puts(token);
	return 0;
}

static int auth_cli_insert(const struct rh_config *cfg, const struct db_stmt *st, const char *const *params)
{
	PGconn *pg = PQconnectdb(cfg->database.url);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "ridehaild admin: cannot connect: %s", PQerrorMessage(pg));
		PQfinish(pg);
		return 1;
	}
	PGresult *res = PQexecParams(pg, st->sql, st->nparams, NULL, params, NULL, NULL, 0);
	int rc = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (state && strcmp(state, "23505") == 0)
			fprintf(stderr, "ridehaild admin: an account with this %s already exists\n",
				strstr(PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) ?: "", "plate") ? "plate" : "email");
		else
			fprintf(stderr, "ridehaild admin: %s", PQresultErrorMessage(res));
		rc = 1;
	} else {
		puts(PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	PQfinish(pg);
	return rc;
}

/* The command line's options. */
struct auth_cli_args {
	const char *email, *name, *phone, *vtype, *make, *model, *color, *plate, *role, *id, *ttl;
	char password[256];
	bool have_password;
};

/* Reads the options after the command: -1 to go on, else the exit code. */
static int auth_cli_parse(int argc, char **argv, struct auth_cli_args *a)
{
	static const struct option opts[] = {
		{ "email", required_argument, NULL, 'e' }, { "name", required_argument, NULL, 'n' },
		{ "password", required_argument, NULL, 'p' }, { "password-stdin", no_argument, NULL, 'P' },
		{ "phone", required_argument, NULL, 't' }, { "vehicle-type", required_argument, NULL, 'v' },
		{ "make", required_argument, NULL, 'm' }, { "model", required_argument, NULL, 'o' },
		{ "color", required_argument, NULL, 'c' }, { "plate", required_argument, NULL, 'l' },
		{ "role", required_argument, NULL, 'r' }, { "id", required_argument, NULL, 'i' },
		{ "ttl", required_argument, NULL, 'T' }, { "help", no_argument, NULL, 'h' }, { 0 },
	};
	optind = 2;
	int c;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'e': a->email = optarg; break;
		case 'n': a->name = optarg; break;
		case 'p': snprintf(a->password, sizeof a->password, "%s", optarg); a->have_password = true; break;
		case 'P':
			if (!fgets(a->password, sizeof a->password, stdin))
				a->password[0] = '\0';
			a->password[strcspn(a->password, "\r\n")] = '\0';
			a->have_password = true;
			break;
		case 't': a->phone = optarg; break;
		case 'v': a->vtype = optarg; break;
		case 'm': a->make = optarg; break;
		case 'o': a->model = optarg; break;
		case 'c': a->color = optarg; break;
		case 'l': a->plate = optarg; break;
		case 'r': a->role = optarg; break;
		case 'i': a->id = optarg; break;
		case 'T': a->ttl = optarg; break;
		case 'h': auth_cli_usage(stdout); return 0;
		default: auth_cli_usage(stderr); return 2;
		}
	}
	return -1;
}

/* The same validation as the HTTP endpoints, on the same JSON shape. */
static bool auth_cli_account_valid(const struct rh_config *cfg, const struct auth_cli_args *a, enum auth_role r,
				   const struct jv_field *fields)
{
	cJSON *body = cJSON_CreateObject();
	if (a->email)
		cJSON_AddStringToObject(body, "email", a->email);
	if (a->name)
		cJSON_AddStringToObject(body, "name", a->name);
	if (a->have_password)
		cJSON_AddStringToObject(body, "password", a->password);
	if (a->phone && r != ROLE_OPERATOR)
		cJSON_AddStringToObject(body, "phone", a->phone);
	if (r == ROLE_DRIVER) {
		cJSON *v = cJSON_AddObjectToObject(body, "vehicle");
		if (a->vtype)
			cJSON_AddStringToObject(v, "type", a->vtype);
		if (a->make)
			cJSON_AddStringToObject(v, "make", a->make);
		if (a->model)
			cJSON_AddStringToObject(v, "model", a->model);
		if (a->color)
			cJSON_AddStringToObject(v, "color", a->color);
		if (a->plate)
			cJSON_AddStringToObject(v, "plate", a->plate);
	}
	struct jv_error err;
	bool ok = jv_check(body, fields, &err) && (r != ROLE_DRIVER || auth_vehicle_type_check(cfg, a->vtype, &err));
	if (!ok)
		fprintf(stderr, "ridehaild admin: %s\n", err.message);
	cJSON_Delete(body);
	return ok;
}

/* create-rider, create-driver, create-operator. */
static int auth_cli_create(const struct rh_config *cfg, const char *cmd, struct auth_cli_args *a)
{
	const struct jv_field *fields;
	enum auth_role r;
	if (strcmp(cmd, "create-rider") == 0) {
		fields = auth_rider_fields;
		r = ROLE_RIDER;
	} else if (strcmp(cmd, "create-driver") == 0) {
		fields = auth_driver_fields;
		r = ROLE_DRIVER;
	} else if (strcmp(cmd, "create-operator") == 0) {
		fields = auth_operator_fields;
		r = ROLE_OPERATOR;
	} else {
		fprintf(stderr, "ridehaild admin: unknown command \"%s\"\n", cmd);
		auth_cli_usage(stderr);
		return 2;
	}
	if (!auth_cli_account_valid(cfg, a, r, fields))
		return 2;
	char hash[crypto_pwhash_STRBYTES];
	if (crypto_pwhash_str(hash, a->password, strlen(a->password), (unsigned long long)cfg->auth.password_opslimit,
			      (size_t)cfg->auth.password_memlimit) != 0) {
		fprintf(stderr, "ridehaild admin: cannot hash the password\n");
		return 1;
	}
	sodium_memzero(a->password, sizeof a->password);
	if (r == ROLE_RIDER) {
		const char *p[] = { a->email, a->name, a->phone, hash };
		return auth_cli_insert(cfg, &st_insert_rider, p);
	}
	if (r == ROLE_OPERATOR) {
		const char *p[] = { a->email, a->name, hash };
		return auth_cli_insert(cfg, &st_insert_operator, p);
	}
	const char *p[] = { a->email, a->name, a->phone, hash, a->vtype, a->make, a->model, a->color, a->plate };
	return auth_cli_insert(cfg, &st_insert_driver, p);
}

int auth_admin_cli(const struct rh_config *cfg, int argc, char **argv)
{
	struct auth_cli_args a = { 0 };
	if (argc < 2) {
		auth_cli_usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	int rc = auth_cli_parse(argc, argv, &a);
	if (rc >= 0)
		return rc;
	if (strcmp(cmd, "token") == 0)
		return auth_cli_mint(cfg, a.role, a.id, a.ttl);
	if (strcmp(cmd, "disable") == 0 || strcmp(cmd, "enable") == 0 || strcmp(cmd, "delete") == 0)
		return auth_cli_standing(cfg, cmd, a.role, a.id);
	return auth_cli_create(cfg, cmd, &a);
}
