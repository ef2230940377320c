/* vault.c -- the worker's reader of the credential vault */

/*
 * The worker reads secrets from the vault ({vv}:vault, common/vc_vault.c,
 * docs/VAULT.md); it never writes them: vantagectl does.  The master key
 * is read with the configuration ([vault] key_file, conf.c), so that
 * --check validates it and a reload may change it.
 *
 * Two ways in.  vw_vault_get() is blocking, for start-up and
 * configuration time only, when there is no event loop to stall.  At run
 * time a caller sends VW_VAULT_HGET on its own hiredis async context and
 * hands the reply to vw_vault_open_reply(), which is all the cryptography
 * and all the checks, so that both ways read a record the same way.
 *
 * No message holds a value: errors say which secret, and why it does not
 * open (a wrong master key names both key ids).  Secrets are cleared
 * before they are freed.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "vw_core.h"
#include "vw_vault.h"


struct vw_vault_s {
    redisContext               *c;
    const vc_vault_key_t       *key;
};


int
vw_vault_open_reply(const vc_vault_key_t *key, const char *name,
    const redisReply *reply, vw_secret_t *secret, char *err, size_t errlen)
{
    secret->data = NULL;
    secret->len = 0;

    if (reply == NULL) {
        snprintf(err, errlen, "redis: no reply");
        return VW_AGAIN;
    }

    if (reply->type == REDIS_REPLY_NIL) {
        snprintf(err, errlen, "no secret \"%s\" in the vault", name);
        return VW_DECLINED;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis: %s", reply->str);
        return VW_AGAIN;
    }

    if (reply->type != REDIS_REPLY_STRING) {
        snprintf(err, errlen, "redis: HGET: a string expected");
        return VW_AGAIN;
    }

    if (vc_vault_open(key, name, strlen(name),
                      (const unsigned char *) reply->str, reply->len,
                      &secret->data, &secret->len, err, errlen)
        != VC_OK)
    {
        return VW_ERROR;
    }

    return VW_OK;
}


vw_vault_t *
vw_vault_connect(const char *redis, const char *password,
    const vc_vault_key_t *key, char *err, size_t errlen)
{
    int              port;
    char            *host, *colon;
    vw_vault_t      *v;
    redisReply      *r;
    struct timeval   tv = { 2, 0 };

    v = calloc(1, sizeof(vw_vault_t));
    if (v == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }

    v->key = key;

    if (strncmp(redis, "unix:", 5) == 0) {
        v->c = redisConnectUnixWithTimeout(redis + 5, tv);

    } else {
        host = strdup(redis);
        if (host == NULL) {
            snprintf(err, errlen, "out of memory");
            free(v);
            return NULL;
        }

        port = 6379;
        colon = strrchr(host, ':');

        if (colon != NULL) {
            *colon = '\0';
            port = atoi(colon + 1);
        }

        if (port <= 0 || port > 65535 || host[0] == '\0') {
            snprintf(err, errlen, "invalid Redis address");
            free(host);
            free(v);
            return NULL;
        }

        v->c = redisConnectWithTimeout(host, port, tv);
        free(host);
    }

    if (v->c == NULL || v->c->err) {
        snprintf(err, errlen, "Redis unreachable: %s",
                 v->c ? v->c->errstr : "out of memory");
        vw_vault_close(v);
        return NULL;
    }

    (void) redisSetTimeout(v->c, tv);

    if (password != NULL) {
        r = redisCommand(v->c, "AUTH %b", password, strlen(password));

        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            /* Redis's message names no password */
            snprintf(err, errlen, "Redis AUTH failed: %s",
                     r ? r->str : v->c->errstr);

            if (r != NULL) {
                freeReplyObject(r);
            }

            vw_vault_close(v);
            return NULL;
        }

        freeReplyObject(r);
    }

    return v;
}


int
vw_vault_get(vw_vault_t *v, const char *name, vw_secret_t *secret,
    char *err, size_t errlen)
{
    int          rc;
    redisReply  *r;

    secret->data = NULL;
    secret->len = 0;

    if (!vc_vault_name_valid(name, strlen(name))) {
        snprintf(err, errlen, "invalid name");
        return VW_ERROR;
    }

    r = redisCommand(v->c, VW_VAULT_HGET, name, strlen(name));

    if (r == NULL) {
        snprintf(err, errlen, "redis: %s", v->c->errstr);
        return VW_AGAIN;
    }

    rc = vw_vault_open_reply(v->key, name, r, secret, err, errlen);

    freeReplyObject(r);

    return rc;
}


void
vw_vault_close(vw_vault_t *v)
{
    if (v == NULL) {
        return;
    }

    redisFree(v->c);
    free(v);
}


void
vw_secret_clear(vw_secret_t *secret)
{
    vc_vault_free(secret->data, secret->len);
    secret->data = NULL;
    secret->len = 0;
}


int
vw_vault_check(const vw_conf_t *conf)
{
    int           rc, refused;
    char          err[VC_VAULT_ERRSTR_LEN], count[16];
    size_t        i, opened;
    vw_vault_t   *v;
    vw_secret_t   secret;

    if (conf->vault.key_file == NULL) {
        return VW_OK;
    }

    vw_log("info", "vault key loaded", "file", conf->vault.key_file,
           "key_id", conf->vault.key.id_hex, NULL);

    if (conf->vault.nrequire == 0) {
        return VW_OK;
    }

    v = vw_vault_connect(conf->redis, conf->redis_password, &conf->vault.key,
                         err, sizeof(err));
    if (v == NULL) {
        vw_log("warn", "vault not checked at start: Redis could not be "
               "asked", "reason", err, NULL);
        return VW_AGAIN;
    }

    refused = 0;
    opened = 0;

    for (i = 0; i < conf->vault.nrequire; i++) {
        rc = vw_vault_get(v, conf->vault.require[i], &secret, err,
                          sizeof(err));

        switch (rc) {

        case VW_OK:
            vw_secret_clear(&secret);
            opened++;
            break;

        case VW_DECLINED:
            vw_log("error", "refusing to start: a required vault secret is "
                   "missing", "secret", conf->vault.require[i], NULL);
            refused++;
            break;

        case VW_ERROR:
            vw_log("error", "refusing to start: a required vault secret "
                   "does not open", "secret", conf->vault.require[i],
                   "reason", err, NULL);
            refused++;
            break;

        default:
            vw_log("warn", "vault not checked at start: Redis could not be "
                   "asked", "reason", err, NULL);
            vw_vault_close(v);
            return VW_AGAIN;
        }
    }

    vw_vault_close(v);

    if (refused) {
        return VW_DECLINED;
    }

    snprintf(count, sizeof(count), "%zu", opened);
    vw_log("info", "vault secrets open", "count", count,
           "key_id", conf->vault.key.id_hex, NULL);

    return VW_OK;
}
