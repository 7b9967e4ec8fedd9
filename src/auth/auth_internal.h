/* Shared between the daemon's account endpoints (auth.c) and the admin CLI
 * (cli.c), so both validate and store accounts the same way. */
#ifndef RH_AUTH_INTERNAL_H
#define RH_AUTH_INTERNAL_H

#include "net/jsonv.h"
#include "store/db.h"

extern const struct jv_field auth_rider_fields[];
extern const struct jv_field auth_driver_fields[];
extern const struct jv_field auth_operator_fields[];
extern struct db_stmt st_insert_rider, st_insert_driver, st_insert_operator;

#endif
