/* vw_check_connection.h -- --check-connection: a token, end to end */

#ifndef VW_CHECK_CONNECTION_H
#define VW_CHECK_CONNECTION_H


#include "vw_conf.h"


/*
 * Gets a token for conf's [connection] name through oauth.c on a loop of
 * its own (Redis, the vault, the token endpoint), prints one JSON line on
 * stdout that never holds the token, and returns the exit code: 0 when a
 * token was got, 1 when not.
 */
int vw_check_connection(const vw_conf_t *conf, const char *name);


#endif /* VW_CHECK_CONNECTION_H */
