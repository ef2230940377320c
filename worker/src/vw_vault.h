/* vw_vault.h -- the worker's reader of the credential vault */

#ifndef VW_VAULT_H
#define VW_VAULT_H


#include <stddef.h>

#include <hiredis/hiredis.h>

#include "vc_vault.h"
#include "vw_conf.h"


/*
 * The command that fetches one record, for a hiredis async caller:
 * redisAsyncCommand(ac, cb, data, VW_VAULT_HGET, name, strlen(name)),
 * then vw_vault_open_reply() in cb.
 */
#define VW_VAULT_HGET  "HGET " VC_VAULT_REDIS_KEY " %b"


/* a secret in clear: data has a NUL after its len bytes */
typedef struct {
    unsigned char              *data;
    size_t                      len;
} vw_secret_t;


/* a blocking connection for start-up: see vw_vault_get() */
typedef struct vw_vault_s  vw_vault_t;


/*
 * Opens the record in reply, the answer to VW_VAULT_HGET for name, with
 * key.  Returns:
 *   VW_OK        secret holds the value (vw_secret_clear() it);
 *   VW_DECLINED  no secret of that name (a nil reply);
 *   VW_AGAIN     Redis answered with an error or not with a string, or
 *                reply is NULL (no connection): ask again later;
 *   VW_ERROR     the record does not open: a wrong master key, an
 *                altered record, an unknown version, an invalid name.
 * err says why on anything but VW_OK; it never holds a value.
 */
int vw_vault_open_reply(const vc_vault_key_t *key, const char *name,
    const redisReply *reply, vw_secret_t *secret, char *err, size_t errlen);

/*
 * A blocking connection to redis (host:port or unix:<path>), logged in
 * with password unless it is NULL, that opens records with key (kept by
 * reference: it must outlive the connection).  For start-up and
 * configuration time only: each call may block for 2 s.  NULL with err
 * when Redis cannot be reached or refuses the password.
 */
vw_vault_t *vw_vault_connect(const char *redis, const char *password,
    const vc_vault_key_t *key, char *err, size_t errlen);

/* one secret, by name: the return codes of vw_vault_open_reply() */
int vw_vault_get(vw_vault_t *v, const char *name, vw_secret_t *secret,
    char *err, size_t errlen);

void vw_vault_close(vw_vault_t *v);

/* clears the secret's memory and frees it; a zeroed secret is fine */
void vw_secret_clear(vw_secret_t *secret);

/*
 * At start: logs the vault's key id when conf has a [vault], then opens
 * each secret of "require" (and clears it at once).  Returns VW_OK;
 * VW_DECLINED when one is missing or does not open (each logged): the
 * worker must not start; VW_AGAIN when Redis could not be asked (logged
 * as a warning, as the queue's own check does).
 */
int vw_vault_check(const vw_conf_t *conf);


#endif /* VW_VAULT_H */
