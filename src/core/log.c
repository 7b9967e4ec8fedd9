#include "core/log.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum log_level log_min_level = LOG_INFO;

static struct {
	int fd;
	enum log_format format;
	char path[1024];
} lg = { .fd = STDERR_FILENO };

static const char *level_names[] = { "debug", "info", "warn", "error", "off" };

const char *log_level_name(enum log_level level)
{
	return level <= LOG_OFF ? level_names[level] : "?";
}

static int log_open_fd(const char *path)
{
	if (!path || !*path || strcmp(path, "-") == 0)
		return STDERR_FILENO;
	return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
}

rh_err log_open(const char *path, enum log_format format, enum log_level level)
{
	int fd = log_open_fd(path);
	if (fd < 0)
		return RH_EIO;
	if (lg.fd != STDERR_FILENO)
		close(lg.fd);
	lg.fd = fd;
	lg.format = format;
	log_min_level = level;
	snprintf(lg.path, sizeof lg.path, "%s", path ? path : "");
	return RH_OK;
}

void log_reopen(void)
{
	int fd = log_open_fd(lg.path);
	if (fd < 0) {
		log_error(NULL, "cannot reopen log file %s: %s", lg.path, strerror(errno));
		return;
	}
	if (lg.fd != STDERR_FILENO && lg.fd != fd)
		close(lg.fd);
	lg.fd = fd;
	log_info(NULL, "log reopened");
}

void log_close(void)
{
	if (lg.fd != STDERR_FILENO)
		close(lg.fd);
	lg.fd = STDERR_FILENO;
}

/* Append s to buf[*len..cap) with JSON string escaping (also valid as a
 * logfmt quoted value). Truncates silently at the cap. */
static void log_put_escaped(char *buf, size_t *len, size_t cap, const char *s)
{
	for (; *s && *len + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[(*len)++] = '\\';
			buf[(*len)++] = (char)c;
		} else if (c == '\n') {
			buf[(*len)++] = '\\';
			buf[(*len)++] = 'n';
		} else if (c < 0x20) {
			*len += (size_t)snprintf(buf + *len, cap - *len, "\\u%04x", c);
		} else {
			buf[(*len)++] = (char)c;
		}
	}
}

static void log_put_raw(char *buf, size_t *len, size_t cap, const char *s)
{
	size_t n = strlen(s);
	if (*len + 1 >= cap)
		return;
	if (n > cap - *len - 1)
		n = cap - *len - 1;
	memcpy(buf + *len, s, n);
	*len += n;
}

/* ctx is "key=value"; in JSON it becomes "key":"value". */
static void log_put_ctx_json(char *buf, size_t *len, size_t cap, const char *ctx)
{
	const char *eq = strchr(ctx, '=');
	char key[32];
	size_t klen = eq ? (size_t)(eq - ctx) : 3;
	if (klen >= sizeof key)
		klen = sizeof key - 1;
	memcpy(key, eq ? ctx : "ctx", klen);
	key[klen] = '\0';
	log_put_raw(buf, len, cap, ",\"");
	log_put_escaped(buf, len, cap, key);
	log_put_raw(buf, len, cap, "\":\"");
	log_put_escaped(buf, len, cap, eq ? eq + 1 : ctx);
	log_put_raw(buf, len, cap, "\"");
}

void log_emit(enum log_level level, const char *ctx, const char *fmt, ...)
{
	char msg[2048], line[4096], ts[40];
	size_t len = 0, cap = sizeof line;
	struct timeval tv;
	struct tm tm;
	va_list ap;
	int saved_errno = errno;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", (long)(tv.tv_usec / 1000));

	if (lg.format == LOG_FORMAT_JSON) {
		len = (size_t)snprintf(line, cap, "{\"ts\":\"%s\",\"level\":\"%s\"", ts, log_level_name(level));
		if (len >= cap)
			len = cap - 1;
		if (ctx)
			log_put_ctx_json(line, &len, cap, ctx);
		log_put_raw(line, &len, cap, ",\"msg\":\"");
		log_put_escaped(line, &len, cap, msg);
		log_put_raw(line, &len, cap, "\"}");
	} else {
		len = (size_t)snprintf(line, cap, "ts=%s level=%s", ts, log_level_name(level));
		if (ctx) {
			log_put_raw(line, &len, cap, " ");
			log_put_raw(line, &len, cap, ctx);
		}
		log_put_raw(line, &len, cap, " msg=\"");
		log_put_escaped(line, &len, cap, msg);
		log_put_raw(line, &len, cap, "\"");
	}
	if (len > cap - 2)
		len = cap - 2;
	line[len++] = '\n';
	/* One write per line, so lines from a crash or a second writer never
	 * interleave mid-line. A failed log write has nowhere to be reported. */
	ssize_t w = write(lg.fd, line, len);
	(void)w;
	errno = saved_errno;
}

static void log_libevent_cb(int severity, const char *msg)
{
	enum log_level level = severity == EVENT_LOG_DEBUG ? LOG_DEBUG
		: severity == EVENT_LOG_MSG ? LOG_INFO
		: severity == EVENT_LOG_WARN ? LOG_WARN : LOG_ERROR;
	log_at(level, "lib=libevent", "%s", msg);
}

void log_hook_libevent(void)
{
	event_set_log_callback(log_libevent_cb);
}
