/* Levelled logging: one line per event, logfmt or JSON lines.
 *
 *   log_info(conn->logid, "closed code=%d", code);
 *
 * The first argument names the request or connection the line is about
 * ("req=9f3a..." / "conn=42"), or NULL. The macros test the level before
 * formatting, so a disabled debug line costs one comparison. */
#ifndef RH_CORE_LOG_H
#define RH_CORE_LOG_H

#include <stdbool.h>

#include "core/err.h"

enum log_level { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };
enum log_format { LOG_FORMAT_LOGFMT = 0, LOG_FORMAT_JSON };

/* The one mutable global besides the server: every module logs. */
extern enum log_level log_min_level;

#define log_at(lvl, ctx, ...)                                   \
	do {                                                    \
		if ((lvl) >= log_min_level)                     \
			log_emit((lvl), (ctx), __VA_ARGS__);    \
	} while (0)
#define log_debug(ctx, ...) log_at(LOG_DEBUG, ctx, __VA_ARGS__)
#define log_info(ctx, ...)  log_at(LOG_INFO, ctx, __VA_ARGS__)
#define log_warn(ctx, ...)  log_at(LOG_WARN, ctx, __VA_ARGS__)
#define log_error(ctx, ...) log_at(LOG_ERROR, ctx, __VA_ARGS__)

void log_emit(enum log_level level, const char *ctx, const char *fmt, ...) RH_PRINTF(3, 4);

/* path NULL, "" or "-" means stderr. Returns RH_EIO when the file cannot be
 * opened (the previous destination stays in use). */
rh_err log_open(const char *path, enum log_format format, enum log_level level) RH_MUST_CHECK;
/* SIGHUP: reopen the same path (after logrotate moved it). */
void log_reopen(void);
void log_close(void);
/* Route libevent's internal messages into this log. */
void log_hook_libevent(void);
const char *log_level_name(enum log_level level);

#endif
