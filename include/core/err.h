/* Error codes shared by every module. Fallible calls return rh_err (RH_OK on
 * success) and are marked RH_MUST_CHECK; yes/no questions return bool. */
#ifndef RH_CORE_ERR_H
#define RH_CORE_ERR_H

typedef enum {
	RH_OK = 0,
	RH_EINVAL,    /* the caller's input is wrong (a client mistake, 4xx) */
	RH_ENOTFOUND, /* no such thing */
	RH_ECONFLICT, /* valid, but the current state forbids it (409) */
	RH_EAGAIN,    /* temporarily impossible; retry later (503) */
	RH_ENOMEM,    /* a configured limit was hit (not malloc failure: that aborts) */
	RH_EDB,       /* the database failed or is unreachable */
	RH_EIO,       /* a system call failed */
} rh_err;

const char *rh_err_name(rh_err e);

#define RH_MUST_CHECK __attribute__((warn_unused_result))
#define RH_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define RH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
