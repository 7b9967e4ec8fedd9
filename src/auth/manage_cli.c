/* `ridehaild admin list|edit|reset-password`: the desk's account actions
 * from the command line, through the same SQL functions as the admin API
 * (manage.c, sql/functions/50_account_admin.sql) and the same validation. A
 * running daemon hears of what changes an account's standing by the
 * database's notification (sql/013). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth_internal.h"
#include "core/config.h"
#include "core/settings.h"

/* One statement; its rows (the caller clears them), or NULL after saying
 * why (a taken email or plate said as such). */
static PGresult *auth_manage_cli_exec(const struct rh_config *cfg, const char *cmd, const struct db_stmt *st,
				 const char *const *params)
{
	PGconn *pg = PQconnectdb(cfg->database.url);
	if (PQstatus(pg) != CONNECTION_OK) {
		fprintf(stderr, "ridehaild admin %s: cannot connect: %s", cmd, PQerrorMessage(pg));
		PQfinish(pg);
		return NULL;
	}
	PGresult *res = PQexecParams(pg, st->sql, st->nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *constraint = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
		if (state && strcmp(state, "23505") == 0)
			fprintf(stderr, "ridehaild admin %s: another account has this %s\n", cmd,
				constraint && strstr(constraint, "plate") ? "plate" : "email");
		else
			fprintf(stderr, "ridehaild admin %s: %s", cmd, PQresultErrorMessage(res));
		PQclear(res);
		res = NULL;
	}
	PQfinish(pg);
	return res;
}

struct manage_cli_args {
	const char *role, *id, *q, *cursor, *limit, *disabled;
	const char *email, *name, *phone, *vtype, *make, *model, *color, *plate;
	bool no_phone;
};

static int auth_manage_cli_list(const struct rh_config *cfg, const struct manage_cli_args *o, enum auth_role r)
{
	static const struct db_stmt st = {
		"", "SELECT account, id FROM account_search($1, $2, $3::boolean, $4::uuid, $5::integer)", 5
	};
	char *end = NULL;
	long limit = o->limit ? strtol(o->limit, &end, 10) : 50;
	if ((o->limit && (*end || end == o->limit)) || limit < 1 || limit > 500 || (o->cursor && !jv_is_uuid(o->cursor)) ||
	    (o->disabled && strcmp(o->disabled, "true") != 0 && strcmp(o->disabled, "false") != 0)) {
		fprintf(stderr, "ridehaild admin list: --limit 1..500, --cursor UUID, --disabled true|false\n");
		return 2;
	}
	char ls[24];
	snprintf(ls, sizeof ls, "%ld", limit);
	const char *params[] = { auth_role_name(r), o->q && *o->q ? o->q : NULL, o->disabled, o->cursor, ls };
	PGresult *res = auth_manage_cli_exec(cfg, "list", &st, params);
	if (!res)
		return 1;
	int n = PQntuples(res);
	for (int i = 0; i < n; i++)
		puts(PQgetvalue(res, i, 0));
	if (n == limit)
		fprintf(stderr, "more: --cursor %s\n", PQgetvalue(res, n - 1, 1));
	PQclear(res);
	return 0;
}

/* The same JSON body as PATCH /v1/admin/{role}s/{id}, checked alike. */
static cJSON *auth_manage_cli_edit_body(const struct manage_cli_args *o, enum auth_role r)
{
	cJSON *body = cJSON_CreateObject();
	if (o->email)
		cJSON_AddStringToObject(body, "email", o->email);
	if (o->name)
		cJSON_AddStringToObject(body, "name", o->name);
	if (o->no_phone)
		cJSON_AddNullToObject(body, "phone");
	else if (o->phone)
		cJSON_AddStringToObject(body, "phone", o->phone);
	if (r == ROLE_DRIVER && (o->vtype || o->make || o->model || o->color || o->plate)) {
		cJSON *v = cJSON_AddObjectToObject(body, "vehicle");
		const char *names[] = { "type", "make", "model", "color", "plate" };
		const char *vals[] = { o->vtype, o->make, o->model, o->color, o->plate };
		for (int i = 0; i < 5; i++)
			if (vals[i])
				cJSON_AddStringToObject(v, names[i], vals[i]);
	} else if (o->vtype || o->make || o->model || o->color || o->plate) {
		cJSON_AddStringToObject(body, "vehicle", ""); /* refused below: only drivers have one */
	}
	return body;
}

static int auth_manage_cli_edit(const struct rh_config *cfg, const struct manage_cli_args *o, enum auth_role r)
{
	cJSON *body = auth_manage_cli_edit_body(o, r);
	struct jv_error err;
	if (cJSON_GetArraySize(body) == 0 || !auth_edit_check(cfg, r, body, &err)) {
		fprintf(stderr, "ridehaild admin edit: %s\n",
			cJSON_GetArraySize(body) == 0 ? "nothing to change (--email, --name, --phone, --no-phone, "
							"and for drivers --vehicle-type, --make, --model, --color, --plate)"
						      : err.message);
		cJSON_Delete(body);
		return 2;
	}
	char *json = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);
	const char *params[] = { auth_role_name(r), o->id, json };
	PGresult *res = auth_manage_cli_exec(cfg, "edit", &auth_st_edit, params);
	cJSON_free(json);
	if (!res)
		return 1;
	int rc = 0;
	if (PQntuples(res) == 0) {
		fprintf(stderr, "ridehaild admin edit: no %s with id %s\n", auth_role_name(r), o->id);
		rc = 1;
	} else {
		puts(PQgetvalue(res, 0, 0));
	}
	PQclear(res);
	return rc;
}

static int auth_manage_cli_reset(const struct rh_config *cfg, const struct manage_cli_args *o, enum auth_role r)
{
	char token[AUTH_RESET_TOKEN_LEN], hash[65], ttl[24];
	auth_reset_token_new(token, hash);
	snprintf(ttl, sizeof ttl, "%d", AUTH_RESET_TTL_S);
	const char *params[] = { auth_role_name(r), o->id, hash, ttl, "cli" };
	PGresult *res = auth_manage_cli_exec(cfg, "reset-password", &auth_st_reset_issue, params);
	if (!res)
		return 1;
	int rc = 0;
	if (PQntuples(res) != 1 || PQgetisnull(res, 0, 0)) {
		fprintf(stderr, "ridehaild admin reset-password: no %s with id %s\n", auth_role_name(r), o->id);
		rc = 1;
	} else {
		printf("token %s\nexpires_at %s\npath /console#reset=%s\n", token, PQgetvalue(res, 0, 0), token);
	}
	sodium_memzero(token, sizeof token);
	PQclear(res);
	return rc;
}

int auth_manage_cli(const struct rh_config *cfg, const char *cmd, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "role", required_argument, NULL, 'r' },     { "id", required_argument, NULL, 'i' },
		{ "q", required_argument, NULL, 'q' },        { "cursor", required_argument, NULL, 'C' },
		{ "limit", required_argument, NULL, 'L' },    { "disabled", required_argument, NULL, 'D' },
		{ "email", required_argument, NULL, 'e' },    { "name", required_argument, NULL, 'n' },
		{ "phone", required_argument, NULL, 't' },    { "no-phone", no_argument, NULL, 'N' },
		{ "vehicle-type", required_argument, NULL, 'v' }, { "make", required_argument, NULL, 'm' },
		{ "model", required_argument, NULL, 'o' },    { "color", required_argument, NULL, 'c' },
		{ "plate", required_argument, NULL, 'l' },    { 0 },
	};
	struct manage_cli_args o = { 0 };
	optind = 2;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'r': o.role = optarg; break;
		case 'i': o.id = optarg; break;
		case 'q': o.q = optarg; break;
		case 'C': o.cursor = optarg; break;
		case 'L': o.limit = optarg; break;
		case 'D': o.disabled = optarg; break;
		case 'e': o.email = optarg; break;
		case 'n': o.name = optarg; break;
		case 't': o.phone = optarg; break;
		case 'N': o.no_phone = true; break;
		case 'v': o.vtype = optarg; break;
		case 'm': o.make = optarg; break;
		case 'o': o.model = optarg; break;
		case 'c': o.color = optarg; break;
		case 'l': o.plate = optarg; break;
		default: return 2;
		}
	}
	enum auth_role r = o.role ? auth_role_parse(o.role) : ROLE_NONE;
	if (r == ROLE_NONE) {
		fprintf(stderr, "ridehaild admin %s: --role rider|driver|operator is required\n", cmd);
		return 2;
	}
	if (strcmp(cmd, "list") == 0)
		return auth_manage_cli_list(cfg, &o, r);
	if (!o.id || !jv_is_uuid(o.id)) {
		fprintf(stderr, "ridehaild admin %s: --id UUID is required\n", cmd);
		return 2;
	}
	return strcmp(cmd, "edit") == 0 ? auth_manage_cli_edit(cfg, &o, r) : auth_manage_cli_reset(cfg, &o, r);
}
