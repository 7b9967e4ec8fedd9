/* ridehail-sim: the clock, problems counted, envelopes, and riding through faults. */
#include "simtool.h"

static void sim_problem(int *count, const char *label, const char *fmt, va_list ap);

double sim_now(void)
{
	if (!sim_st.running)
		return 0;
	sim_st.now = (double)(rh_mono_ns() - sim_st.t0_ns) / 1e9 * sim_st.speed;
	return sim_st.now;
}

void sim_progress_clear(void)
{
	if (!sim_st.quiet && sim_st.tty)
		fprintf(stderr, "\r\033[K");
}

/* Counts one problem and prints the first MAX_ERRORS_SHOWN of its kind. */
static void sim_problem(int *count, const char *label, const char *fmt, va_list ap)
{
	if (++*count > MAX_ERRORS_SHOWN)
		return;
	sim_progress_clear();
	fprintf(stderr, "sim: %s: ", label);
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
}

RH_PRINTF(1, 2) void sim_protocol_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sim_problem(&sim_st.protocol_errors, "protocol error", fmt, ap);
	va_end(ap);
}

RH_PRINTF(1, 2) void sim_breach(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	sim_problem(&sim_st.breaches, "INVARIANT BREACH", fmt, ap);
	va_end(ap);
}

/* ------------------------------------------------------------ messages */

/* Sends one message; false when the socket is closed (its close callback
 * tells why, and the agent sends again once it is back). */
bool sim_send_envelope(struct simc_ws *ws, const char *corr, const char *type, cJSON *payload)
{
	struct uuid u;
	char eid[37], ts[32];
	uuid_v4(&u);
	uuid_format(&u, eid);
	rh_format_rfc3339(rh_wall_ms(), ts);
	cJSON *m = cJSON_CreateObject();
	cJSON_AddStringToObject(m, "event_id", eid);
	cJSON_AddStringToObject(m, "event_type", type);
	cJSON_AddNumberToObject(m, "event_version", 1);
	cJSON_AddStringToObject(m, "timestamp", ts);
	cJSON_AddStringToObject(m, "producer", "ridehail-sim/" RH_VERSION);
	cJSON_AddStringToObject(m, "correlation_id", corr);
	cJSON_AddItemToObject(m, "payload", payload);
	char *text = cJSON_PrintUnformatted(m);
	bool sent = simc_ws_send(ws, text, strlen(text));
	cJSON_free(text);
	cJSON_Delete(m);
	return sent;
}

void sim_new_uuid(char out[37])
{
	struct uuid u;
	uuid_v4(&u);
	uuid_format(&u, out);
}

const char *sim_jstr(const cJSON *o, const char *k)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

bool sim_jnum(const cJSON *o, const char *k, double *out)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
	if (!cJSON_IsNumber(v))
		return false;
	*out = v->valuedouble;
	return true;
}

bool sim_jpoint(const cJSON *o, const char *k, double *lat, double *lon)
{
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(o, k);
	if (!cJSON_IsObject(p) || !sim_jnum(p, "lat", lat))
		return false;
	return sim_jnum(p, "lon", lon) || sim_jnum(p, "lng", lon);
}

/* The envelope's payload and type, or NULL (a protocol error). */
cJSON *sim_parse_envelope(const char *who, const char *text, size_t len, const char **type, cJSON **root)
{
	*root = cJSON_ParseWithLength(text, len);
	if (!*root) {
		sim_protocol_error("%s: malformed frame: %.120s", who, text);
		return NULL;
	}
	*type = sim_jstr(*root, "event_type");
	cJSON *pl = cJSON_GetObjectItemCaseSensitive(*root, "payload");
	if (!*type || !cJSON_IsObject(pl) || !sim_jstr(*root, "event_id") || !sim_jstr(*root, "timestamp")) {
		sim_protocol_error("%s: not an envelope: %.120s", who, text);
		cJSON_Delete(*root);
		*root = NULL;
		return NULL;
	}
	return pl;
}

/* ------------------------------------------------------------ riding through faults */



void sim_later(enum sim_later_kind kind, int idx, const char *trip, const char *what, int tries, int ms)
{
	struct sim_later *l = rh_calloc(1, sizeof *l);
	l->kind = kind;
	l->idx = idx;
	l->tries = tries;
	snprintf(l->trip, sizeof l->trip, "%s", trip ? trip : "");
	snprintf(l->what, sizeof l->what, "%s", what ? what : "");
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	event_base_once(sim_st.base, -1, EV_TIMEOUT, sim_later_cb, l, &tv);
}

/* A close that means the server went away (a restart, a crash, a refused
 * upgrade while it cannot load the account): open again. */
bool sim_server_away(int code, int http_status)
{
	if (code == 0)
		return http_status == 0 || http_status == 502 || http_status == 503;
	return code == 1001 || code == 1006 || code == 1011 || code == 1012 || code == 1013 || code == 1014;
}

/* The next reconnect's wait: 250 ms doubling to 4 s, with jitter. */
int sim_reconnect_wait(int *backoff_ms, struct sim_rng *r)
{
	*backoff_ms = *backoff_ms ? (*backoff_ms * 2 > 4000 ? 4000 : *backoff_ms * 2) : 250;
	return (int)(*backoff_ms * sim_rng_range(r, 0.75, 1.25));
}

/* A failed HTTP request to send again: the connection failed (0) or the
 * database was away (503 database-unavailable). */
bool sim_http_retryable(const struct simc_reply *r)
{
	return r->status == 0 || (r->status == 503 && r->body && strstr(r->body, "database-unavailable"));
}

int sim_http_wait_ms(const struct simc_reply *r)
{
	return r->retry_after_s > 0 && r->retry_after_s < 30 ? r->retry_after_s * 1000 : 1000;
}
