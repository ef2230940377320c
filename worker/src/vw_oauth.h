/* vw_oauth.h -- access tokens for the connectors' vendor accounts */

#ifndef VW_OAUTH_H
#define VW_OAUTH_H

/*
 * One token per [connection] (docs/CONNECTORS.md, "Tokens"):
 *
 *   - Salesforce JWT bearer: an RS256 assertion (iss client_id, sub
 *     username, aud audience, exp now + 3 min) signed with the private
 *     key opened from the vault, POSTed to <login_url>/services/oauth2/
 *     token; client credentials and refresh token flows to the same
 *     endpoint with the secrets opened from the vault;
 *   - HubSpot: a private app's token, opened from the vault (it never
 *     expires), or the OAuth refresh flow at token_url.
 *
 * A token is kept in memory and in Redis, sealed with the vault's master
 * key (vc_vault_seal(), the Redis key as associated data) at
 * {vq}:tok:<connection>, with a PX ending a minute before it expires
 * (token_lifetime when the vendor does not say).  Getting one takes, in
 * order: the process's copy; Redis's; a new grant.  A new grant is made
 * by one worker at a time across all workers: SET {vq}:toklock:<name>
 * <consumer> NX PX <timeout>; the others read {vq}:tok:<name> again
 * every 100 ms until a token newer than the one they hold appears or the
 * lock is gone (then they try to take it).  Waiters in one process share
 * the process's one request.
 *
 * A request with stale set (the vendor answered 401 to that token) skips
 * every copy equal to stale: a copy that differs is a token someone else
 * got meanwhile and is answered at once, so one refusal costs one grant
 * however many calls meet it.
 *
 * Nothing here logs or returns a secret or a token in clear but the
 * answer's token itself; error texts name the connection and the
 * vendor's error code ("invalid_grant: user hasn't approved this
 * consumer"), never a value sent.
 */


#include <stddef.h>
#include <stdint.h>

#include "vw_conf.h"
#include "vw_core.h"
#include "vw_services.h"


#define VW_OAUTH_TOKEN_MAX  4096
#define VW_OAUTH_URL_MAX    512


typedef enum {
    VW_TOKEN_MEMORY = 0,        /* the process's copy */
    VW_TOKEN_REDIS,             /* another worker's grant, from Redis */
    VW_TOKEN_GRANT,             /* a new grant at the token endpoint */
    VW_TOKEN_VAULT              /* a private app's token, from the vault */
} vw_token_source_e;


typedef struct vw_oauth_s      vw_oauth_t;
typedef struct vw_token_req_s  vw_token_req_t;

/* called once per vw_oauth_get() that returned VW_OK, unless cancelled */
typedef void (*vw_token_pt)(vw_token_req_t *tr);


struct vw_token_req_s {
    /* set by the caller, alive until the handler runs or it cancels */
    const vw_conf_connection_t *conn;
    const char                 *stale;    /* a token the vendor refused,
                                             or NULL */
    uint64_t                    timeout_ms;   /* the whole wait; 0: 30 s */
    vw_token_pt                 handler;
    void                       *data;
    const char                 *ca_file;  /* the connection's target's:  */
    const char                 *proxy;    /* the engine's copy of the    */
    uint64_t                    connect_timeout_ms;  /* connection has no
                                             target; as in vw_http_req_t */

    /* the answer, set before the handler runs */
    int                         rc;       /* VW_OK: token is set;
                                             VW_AGAIN: try later (no
                                             connection, 5xx, timeout,
                                             Redis down, lock held too
                                             long);
                                             VW_ERROR: the credentials
                                             are refused or missing
                                             (400/401 from the token
                                             endpoint, no such vault
                                             record, a wrong master key):
                                             retrying will not help */
    long                        status;   /* the token endpoint's, or 0 */
    char                        error[VW_ERRSTR_LEN];
    char                        token[VW_OAUTH_TOKEN_MAX];   /* cleared by
                                             vw_token_clear() */
    char                        instance_url[VW_OAUTH_URL_MAX];
                                          /* Salesforce's; else the
                                             connection's base_url */
    uint64_t                    expires_ms;   /* wall clock ms, 0: unknown */
    vw_token_source_e           source;   /* where the token came from */

    /* private */
    void                       *priv;
    vw_token_req_t             *next;
};


/* the token manager on the services' loop, client and Redis */
vw_oauth_t *vw_oauth_create(const vw_services_t *svc);

/* cancels every request (no handler runs) and frees what it holds */
void vw_oauth_free(vw_oauth_t *oauth);

/*
 * Starts getting a token for tr->conn.  Returns VW_OK: tr->handler runs
 * later from the loop, never from within this call; or VW_ERROR with
 * tr->rc and tr->error set when it cannot start (the handler does not
 * run).
 */
int vw_oauth_get(vw_oauth_t *oauth, vw_token_req_t *tr);

/* stops a request whose handler has not run; it never will */
void vw_oauth_cancel(vw_token_req_t *tr);

/* clears tr->token's memory */
void vw_token_clear(vw_token_req_t *tr);

/* forgets the process's copies (a reload that changed a connection) */
void vw_oauth_forget(vw_oauth_t *oauth, const char *name);


#endif /* VW_OAUTH_H */
