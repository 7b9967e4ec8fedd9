/* The console's page: GET /console (index.html) and GET /console/{file},
 * compiled in from console/ (build-aux/console_files.py), revalidated by
 * ETag. */
#include <string.h>

#include "console_internal.h"
#include "net/http.h"

static const struct console_file *console_file_named(const char *name)
{
	for (const struct console_file *f = console_files; f->name; f++)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static void console_file_reply(struct http_req *req, const struct console_file *f)
{
	http_reply_header(req, "ETag", f->etag);
	http_reply_header(req, "Cache-Control", "no-cache");
	http_reply_header(req, "X-Content-Type-Options", "nosniff");
	const char *inm = http_req_header(req, "if-none-match");
	if (inm && strstr(inm, f->etag)) {
		http_reply(req, 304, NULL, NULL, 0);
		return;
	}
	http_reply(req, 200, f->type, f->data, f->len);
}

static void console_get_index(struct http_req *req, void *ctx)
{
	(void)ctx;
	const struct console_file *f = console_file_named("index.html");
	if (!f) {
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "this build has no console page");
		return;
	}
	http_reply_header(req, "Content-Security-Policy",
			  "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data: blob:; "
			  "style-src 'self'; script-src 'self'; frame-ancestors 'none'");
	console_file_reply(req, f);
}

static void console_get_file(struct http_req *req, void *ctx)
{
	(void)ctx;
	const char *name = http_req_param(req, "file");
	const struct console_file *f = name ? console_file_named(name) : NULL;
	if (!f) {
		http_reply_problem(req, PROBLEM_NOT_FOUND, NULL, "no console file %s", name ? name : "");
		return;
	}
	console_file_reply(req, f);
}

static const struct http_route console_routes[] = {
	{ HTTP_GET, "/console", console_get_index, 0 },
	{ HTTP_GET, "/console/{file}", console_get_file, 0 },
	{ 0 },
};

void console_files_init(struct http_server *http)
{
	http_server_add_routes(http, console_routes, NULL);
}
