#include "core/err.h"

const char *rh_err_name(rh_err e)
{
	switch (e) {
	case RH_OK: return "ok";
	case RH_EINVAL: return "invalid";
	case RH_ENOTFOUND: return "not_found";
	case RH_ECONFLICT: return "conflict";
	case RH_EAGAIN: return "unavailable";
	case RH_ENOMEM: return "limit";
	case RH_EDB: return "database";
	case RH_EIO: return "io";
	}
	return "unknown";
}
