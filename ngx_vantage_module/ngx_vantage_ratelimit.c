/* ngx_vantage_ratelimit.c -- runs after the auth check: asks _redis, resumes */

/*
 * The limiter is a PRECONTENT handler, so every access check (the JWT
 * check included, and "satisfy any") has passed before a request is
 * charged: a refused token consumes nothing, and a claim-keyed limit only
 * ever sees verified claims.  A main request is decided once; its context
 * survives internal redirects, and subrequests are never charged.
 *
 * All limits of a request go to Redis in one round trip: one BITFIELD (see
 * vc_ratelimit.c for why it is an exact token bucket) and one PEXPIRE per
 * limit, inside MULTI/EXEC when there are several.  When one limit admits
 * and another refuses, the admitting ones get their units back with a
 * compensating INCRBY that nobody waits for.
 *
 * When Redis cannot be asked or does not answer in time, on_error decides:
 * "local" runs the same arithmetic on buckets in shared memory (so an
 * outage gives each instance the configured rate, never no limit), "open"
 * admits, "closed" answers 503.
 */

#include "ngx_vantage_module.h"

#include <openssl/evp.h>


#define NGX_VANTAGE_RL_NONE      0    /* request states */
#define NGX_VANTAGE_RL_PENDING   1
#define NGX_VANTAGE_RL_DECIDED   2
#define NGX_VANTAGE_RL_APPLIED   3

#define NGX_VANTAGE_RL_ADMIT        0    /* outcomes */
#define NGX_VANTAGE_RL_REFUSE       1
#define NGX_VANTAGE_RL_UNAVAILABLE  2
#define NGX_VANTAGE_RL_UNLIMITED    3    /* on_error open, nothing known */

#define NGX_VANTAGE_RL_KEY_PREFIX  "vantage:rl:{"
#define NGX_VANTAGE_RL_HASH_LEN    32     /* hex digits of the key's hash */

#define NGX_VANTAGE_RL_ARGS        28     /* of one BITFIELD */


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;     /* least recently used first */
} ngx_vantage_rl_shctx_t;


typedef struct {
    u_char                      color;
    u_char                      len;
    u_short                     pad;
    ngx_queue_t                 queue;
    uint64_t                    tat;
    u_char                      data[1];
} ngx_vantage_rl_node_t;


typedef struct {
    ngx_vantage_rl_shctx_t     *sh;
    ngx_slab_pool_t            *shpool;
} ngx_vantage_rl_zone_ctx_t;


static ngx_int_t ngx_vantage_rl_handler(ngx_http_request_t *r);
static ngx_int_t ngx_vantage_rl_keys(ngx_http_request_t *r,
    ngx_vantage_loc_conf_t *vlcf, ngx_vantage_rl_ctx_t *rl);
static ngx_int_t ngx_vantage_rl_ask(ngx_http_request_t *r,
    ngx_vantage_rl_ctx_t *rl);
static void ngx_vantage_rl_reply(void *data, redisReply *reply);
static ngx_int_t ngx_vantage_rl_read_reply(ngx_vantage_rl_ctx_t *rl,
    redisReply *reply);
static void ngx_vantage_rl_settle(ngx_vantage_rl_ctx_t *rl,
    ngx_uint_t in_redis);
static void ngx_vantage_rl_fallback(ngx_vantage_rl_ctx_t *rl, ngx_log_t *log);
static ngx_int_t ngx_vantage_rl_local(ngx_vantage_rl_ctx_t *rl,
    ngx_log_t *log);
static ngx_vantage_rl_node_t *ngx_vantage_rl_lookup(
    ngx_vantage_rl_zone_ctx_t *zctx, ngx_str_t *key, uint32_t hash,
    uint64_t now);
static ngx_int_t ngx_vantage_rl_apply(ngx_http_request_t *r,
    ngx_vantage_rl_ctx_t *rl);
static ngx_int_t ngx_vantage_rl_header_filter(ngx_http_request_t *r);
static char *ngx_vantage_rl_zone_add(ngx_conf_t *cf,
    ngx_vantage_main_conf_t *vmcf, size_t size);
static ngx_int_t ngx_vantage_rl_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);


static ngx_http_output_header_filter_pt  ngx_http_next_header_filter;


ngx_int_t
ngx_vantage_rl_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_core_main_conf_t  *cmcf;

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_PRECONTENT_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_vantage_rl_handler;

    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_vantage_rl_header_filter;

    return NGX_OK;
}


static ngx_int_t
ngx_vantage_rl_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_vantage_ctx_t       *ctx;
    ngx_vantage_rl_ctx_t    *rl;
    ngx_vantage_loc_conf_t  *vlcf;

    if (r != r->main) {
        return NGX_DECLINED;
    }

    vlcf = ngx_http_get_module_loc_conf(r, ngx_vantage_module);

    ctx = ngx_vantage_get_ctx(r);

    if (ctx != NULL) {
        rl = &ctx->rl;

        switch (rl->state) {

        case NGX_VANTAGE_RL_PENDING:
            return NGX_AGAIN;

        case NGX_VANTAGE_RL_DECIDED:
            rl->state = NGX_VANTAGE_RL_APPLIED;
            return ngx_vantage_rl_apply(r, rl);

        case NGX_VANTAGE_RL_APPLIED:
            /* an internal redirect: the main request is charged once */
            return NGX_DECLINED;
        }
    }

    if (vlcf->limits == NULL) {
        return NGX_DECLINED;
    }

    if (ctx == NULL) {
        ctx = ngx_vantage_create_ctx(r);
        if (ctx == NULL) {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }
    }

    rl = &ctx->rl;
    rl->request = r;
    rl->conf = vlcf;

    rc = ngx_vantage_rl_keys(r, vlcf, rl);

    if (rc == NGX_DECLINED) {
        /* every key is empty: nothing limits this request */
        rl->state = NGX_VANTAGE_RL_APPLIED;
        rl->entries = NULL;
        return NGX_DECLINED;
    }

    if (rc != NGX_OK) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    rl->now = vc_rl_now();

    rc = ngx_vantage_rl_ask(r, rl);

    if (rc == NGX_AGAIN) {
        rl->state = NGX_VANTAGE_RL_PENDING;

        r->read_event_handler = ngx_http_test_reading;
        r->write_event_handler = ngx_http_request_empty_handler;

        return NGX_AGAIN;
    }

    ngx_vantage_rl_fallback(rl, r->connection->log);

    rl->state = NGX_VANTAGE_RL_APPLIED;

    return ngx_vantage_rl_apply(r, rl);
}


/*
 * The Redis key of each limit: the key's value is hashed, so that API keys
 * and claims used as limit keys never appear in Redis (nor in logs, which
 * name the hash), and the hash is the hash tag, so that the limits of one
 * value land in one Redis Cluster slot.
 */
static ngx_int_t
ngx_vantage_rl_keys(ngx_http_request_t *r, ngx_vantage_loc_conf_t *vlcf,
    ngx_vantage_rl_ctx_t *rl)
{
    u_char                  *p, md[EVP_MAX_MD_SIZE];
    unsigned int             mdlen;
    ngx_str_t                value;
    ngx_uint_t               i, active;
    ngx_vantage_rl_limit_t  *limit;
    ngx_vantage_rl_entry_t  *e;

    /* one context per process, reset by each EVP_DigestInit_ex() */
    static EVP_MD_CTX       *md_ctx;

    limit = vlcf->limits->elts;

    rl->entries = ngx_pcalloc(r->pool, vlcf->limits->nelts
                                       * sizeof(ngx_vantage_rl_entry_t));
    if (rl->entries == NULL) {
        return NGX_ERROR;
    }

    if (md_ctx == NULL) {
        md_ctx = EVP_MD_CTX_new();
        if (md_ctx == NULL) {
            return NGX_ERROR;
        }
    }

    active = 0;

    for (i = 0; i < vlcf->limits->nelts; i++) {

        if (ngx_http_complex_value(r, &limit[i].key, &value) != NGX_OK) {
            return NGX_ERROR;
        }

        if (value.len == 0) {
            continue;
        }

        if (EVP_DigestInit_ex(md_ctx, ngx_vantage_sha256(), NULL) != 1
            || EVP_DigestUpdate(md_ctx, value.data, value.len) != 1
            || EVP_DigestFinal_ex(md_ctx, md, &mdlen) != 1)
        {
            return NGX_ERROR;
        }

        e = &rl->entries[i];

        e->key.len = sizeof(NGX_VANTAGE_RL_KEY_PREFIX) - 1
                     + NGX_VANTAGE_RL_HASH_LEN + limit[i].suffix.len;
        e->key.data = ngx_pnalloc(r->pool, e->key.len);
        if (e->key.data == NULL) {
            return NGX_ERROR;
        }

        p = ngx_cpymem(e->key.data, NGX_VANTAGE_RL_KEY_PREFIX,
                       sizeof(NGX_VANTAGE_RL_KEY_PREFIX) - 1);
        p = ngx_hex_dump(p, md, NGX_VANTAGE_RL_HASH_LEN / 2);
        ngx_memcpy(p, limit[i].suffix.data, limit[i].suffix.len);

        /* the key is a hash already: its first bits order the local tree */
        e->hash = (((uint32_t) md[0] << 24) | ((uint32_t) md[1] << 16)
                   | ((uint32_t) md[2] << 8) | md[3])
                  ^ limit[i].suffix_hash;

        active++;
    }

    rl->nactive = active;

    return active ? NGX_OK : NGX_DECLINED;
}


/*
 * Sends the limits' commands; NGX_AGAIN when the answer will come to
 * ngx_vantage_rl_reply(), NGX_DECLINED when Redis cannot be asked.
 */
static ngx_int_t
ngx_vantage_rl_ask(ngx_http_request_t *r, ngx_vantage_rl_ctx_t *rl)
{
    u_char                   *now;
    size_t                   *lens, now_len;
    ngx_uint_t                i, j, n, ncmds, reply;
    const char              **args;
    ngx_vantage_rl_limit_t   *limit;
    ngx_vantage_rl_entry_t   *e;
    ngx_vantage_redis_cmd_t  *cmds, *cmd;

    static const char        *multi[] = { "MULTI" };
    static const char        *exec[] = { "EXEC" };
    static const size_t       multi_len[] = { 5 };
    static const size_t       exec_len[] = { 4 };

    if (ngx_vantage_redis_available() != NGX_OK) {
        return NGX_DECLINED;
    }

    limit = rl->conf->limits->elts;
    n = rl->nactive;

    ncmds = 2 * n + (n > 1 ? 2 : 0);

    cmds = ngx_palloc(r->pool, ncmds * sizeof(ngx_vantage_redis_cmd_t));
    args = ngx_palloc(r->pool, n * (NGX_VANTAGE_RL_ARGS + 3)
                               * sizeof(char *));
    lens = ngx_palloc(r->pool, n * (NGX_VANTAGE_RL_ARGS + 3)
                               * sizeof(size_t));
    /*
     * "-now" is the first increment and "now" the last; the others are the
     * limit's own, written at configuration time
     */
    now = ngx_pnalloc(r->pool, NGX_INT64_LEN + 1);

    if (cmds == NULL || args == NULL || lens == NULL || now == NULL) {
        return NGX_ERROR;
    }

    now_len = ngx_sprintf(now, "-%uL", rl->now) - now;

    cmd = cmds;

    if (n > 1) {
        cmd->argc = 1;
        cmd->argv = multi;
        cmd->argvlen = multi_len;
        cmd++;
    }

    for (i = 0; i < rl->conf->limits->nelts; i++) {
        e = &rl->entries[i];

        if (e->key.len == 0) {
            continue;
        }

        cmd->argc = NGX_VANTAGE_RL_ARGS;
        cmd->argv = args;
        cmd->argvlen = lens;

#define ngx_vantage_rl_arg(s, l)  *args++ = (const char *) (s); *lens++ = (l)
#define ngx_vantage_rl_lit(s)     ngx_vantage_rl_arg(s, sizeof(s) - 1)

        ngx_vantage_rl_lit("BITFIELD");
        ngx_vantage_rl_arg(e->key.data, e->key.len);

        for (j = 0; j < VC_RL_BITFIELD_OPS; j++) {
            if (j == 0 || j == 3) {
                ngx_vantage_rl_lit("OVERFLOW");
                ngx_vantage_rl_lit("SAT");

            } else if (j == 2) {
                ngx_vantage_rl_lit("OVERFLOW");
                ngx_vantage_rl_lit("FAIL");
            }

            ngx_vantage_rl_lit("INCRBY");
            ngx_vantage_rl_lit("u63");
            ngx_vantage_rl_lit("0");
            if (j == 0) {
                ngx_vantage_rl_arg(now, now_len);

            } else if (j == VC_RL_BITFIELD_OPS - 1) {
                ngx_vantage_rl_arg(now + 1, now_len - 1);

            } else {
                ngx_vantage_rl_arg(limit[i].ops[j - 1].data,
                                   limit[i].ops[j - 1].len);
            }
        }

        cmd++;

        cmd->argc = 3;
        cmd->argv = args;
        cmd->argvlen = lens;

        ngx_vantage_rl_lit("PEXPIRE");
        ngx_vantage_rl_arg(e->key.data, e->key.len);
        ngx_vantage_rl_arg(limit[i].ttl.data, limit[i].ttl.len);

#undef ngx_vantage_rl_arg
#undef ngx_vantage_rl_lit

        cmd++;
    }

    if (n > 1) {
        cmd->argc = 1;
        cmd->argv = exec;
        cmd->argvlen = exec_len;
    }

    /* the EXEC's reply, or the lone BITFIELD's */
    reply = (n > 1) ? ncmds - 1 : 0;

    rl->call = ngx_vantage_redis_send(cmds, ncmds, reply,
                                      ngx_vantage_rl_reply, rl);

    return rl->call ? NGX_AGAIN : NGX_DECLINED;
}


static void
ngx_vantage_rl_reply(void *data, redisReply *reply)
{
    ngx_vantage_rl_ctx_t  *rl = data;

    ngx_connection_t      *c;
    ngx_http_request_t    *r;

    r = rl->request;
    c = r->connection;

    rl->call = NULL;

    if (reply == NULL || ngx_vantage_rl_read_reply(rl, reply) != NGX_OK) {
        ngx_vantage_rl_fallback(rl, c->log);
    }

    rl->state = NGX_VANTAGE_RL_DECIDED;

    r->read_event_handler = ngx_http_block_reading;
    r->write_event_handler = ngx_http_core_run_phases;

    ngx_http_core_run_phases(r);
    ngx_http_run_posted_requests(c);
}


/* reads one BITFIELD reply per limit, and settles the request */

static ngx_int_t
ngx_vantage_rl_read_reply(ngx_vantage_rl_ctx_t *rl, redisReply *reply)
{
    ngx_uint_t               i, k, n;
    redisReply              *bf, *x, *cond;
    ngx_vantage_rl_limit_t  *limit;
    ngx_vantage_rl_entry_t  *e;

    limit = rl->conf->limits->elts;
    n = rl->nactive;

    if (n > 1 && (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 * n))
    {
        goto unexpected;
    }

    k = 0;

    for (i = 0; i < rl->conf->limits->nelts; i++) {
        e = &rl->entries[i];

        if (e->key.len == 0) {
            continue;
        }

        bf = (n > 1) ? reply->element[2 * k++] : reply;

        if (bf->type != REDIS_REPLY_ARRAY
            || bf->elements != VC_RL_BITFIELD_OPS)
        {
            goto unexpected;
        }

        x = bf->element[0];
        cond = bf->element[2];

        if (x->type != REDIS_REPLY_INTEGER || x->integer < 0
            || (cond->type != REDIS_REPLY_INTEGER
                && cond->type != REDIS_REPLY_NIL))
        {
            goto unexpected;
        }

        vc_rl_result(&limit[i].policy, limit[i].cost, (uint64_t) x->integer,
                     cond->type == REDIS_REPLY_NIL, &e->res);
    }

    ngx_vantage_rl_settle(rl, 1);

    return NGX_OK;

unexpected:

    ngx_log_error(NGX_LOG_ERR, rl->request->connection->log, 0,
                  "vantage ratelimit: unexpected reply from Redis "
                  "(type %d), deciding as on error", reply->type);

    return NGX_ERROR;
}


/*
 * The outcome from the limits' results: a refusal by any limit refuses the
 * request, and then the limits that admitted it get their units back: in
 * the results, and in Redis (in_redis) with an INCRBY nobody waits for;
 * the local buckets were restored under their lock.
 */
static void
ngx_vantage_rl_settle(ngx_vantage_rl_ctx_t *rl, ngx_uint_t in_redis)
{
    u_char                   *p;
    const char               *argv[10];
    size_t                    argvlen[10];
    ngx_uint_t                i;
    ngx_vantage_rl_limit_t   *limit;
    ngx_vantage_rl_entry_t   *e;
    ngx_vantage_redis_cmd_t   cmd;
    u_char                    back[NGX_INT64_LEN];

    limit = rl->conf->limits->elts;

    rl->outcome = NGX_VANTAGE_RL_ADMIT;

    for (i = 0; i < rl->conf->limits->nelts; i++) {
        e = &rl->entries[i];

        if (e->key.len && !e->res.admitted) {
            if (rl->outcome == NGX_VANTAGE_RL_ADMIT
                || e->res.retry_after
                   > rl->entries[rl->refused_by].res.retry_after)
            {
                rl->refused_by = i;
            }

            rl->outcome = NGX_VANTAGE_RL_REFUSE;
        }
    }

    if (rl->outcome == NGX_VANTAGE_RL_ADMIT) {
        return;
    }

    for (i = 0; i < rl->conf->limits->nelts; i++) {
        e = &rl->entries[i];

        if (e->key.len == 0 || !e->res.admitted) {
            continue;
        }

        vc_rl_uncharge(&limit[i].policy, limit[i].cost, &e->res);

        if (!in_redis) {
            continue;
        }

        /* nobody waits for this: if it is lost, the token is too */

        argv[0] = "BITFIELD";
        argvlen[0] = 8;
        argv[1] = (char *) e->key.data;
        argvlen[1] = e->key.len;
        argv[2] = "OVERFLOW";
        argvlen[2] = 8;
        argv[3] = "SAT";
        argvlen[3] = 3;
        argv[4] = "INCRBY";
        argvlen[4] = 6;
        argv[5] = "u63";
        argvlen[5] = 3;
        argv[6] = "0";
        argvlen[6] = 1;

        p = ngx_sprintf(back, "-%uL", limit[i].cost
                                      * limit[i].policy.interval);
        argv[7] = (char *) back;
        argvlen[7] = p - back;

        cmd.argc = 8;
        cmd.argv = argv;
        cmd.argvlen = argvlen;

        (void) ngx_vantage_redis_post(&cmd, 1);
    }
}


/* Redis could not decide: on_error does */

static void
ngx_vantage_rl_fallback(ngx_vantage_rl_ctx_t *rl, ngx_log_t *log)
{
    rl->fallback = 1;

    switch (rl->conf->rl_on_error) {

    case NGX_VANTAGE_RL_ON_ERROR_LOCAL:
        if (ngx_vantage_rl_local(rl, log) == NGX_OK) {
            return;
        }

        /* no shared memory left: as closed */
        /* fall through */

    case NGX_VANTAGE_RL_ON_ERROR_CLOSED:
        rl->outcome = NGX_VANTAGE_RL_UNAVAILABLE;
        return;

    default: /* NGX_VANTAGE_RL_ON_ERROR_OPEN */
        rl->outcome = NGX_VANTAGE_RL_UNLIMITED;
        return;
    }
}


/*
 * The same decision on this instance's buckets in shared memory, under one
 * lock for all the limits of the request, so that it is as atomic here as
 * the Redis one is fleet-wide.
 */
static ngx_int_t
ngx_vantage_rl_local(ngx_vantage_rl_ctx_t *rl, ngx_log_t *log)
{
    uint64_t                  *saved;
    ngx_uint_t                 i, refused;
    ngx_vantage_rl_node_t     *node, **nodes;
    ngx_vantage_rl_limit_t    *limit;
    ngx_vantage_rl_entry_t    *e;
    ngx_vantage_main_conf_t   *vmcf;
    ngx_vantage_rl_zone_ctx_t *zctx;

    vmcf = ngx_http_get_module_main_conf(rl->request, ngx_vantage_module);

    if (vmcf->rl_zone == NULL) {
        return NGX_ERROR;
    }

    zctx = vmcf->rl_zone->data;
    limit = rl->conf->limits->elts;

    nodes = ngx_pcalloc(rl->request->pool, rl->conf->limits->nelts
                                           * sizeof(void *));
    saved = ngx_pcalloc(rl->request->pool, rl->conf->limits->nelts
                                           * sizeof(uint64_t));
    if (nodes == NULL || saved == NULL) {
        return NGX_ERROR;
    }

    refused = 0;

    ngx_shmtx_lock(&zctx->shpool->mutex);

    for (i = 0; i < rl->conf->limits->nelts; i++) {
        e = &rl->entries[i];

        if (e->key.len == 0) {
            continue;
        }

        node = ngx_vantage_rl_lookup(zctx, &e->key, e->hash, rl->now);

        if (node == NULL) {
            /* undo what this request charged, and give up */
            while (i--) {
                if (nodes[i]) {
                    nodes[i]->tat = saved[i];
                }
            }

            ngx_shmtx_unlock(&zctx->shpool->mutex);

            ngx_log_error(NGX_LOG_ALERT, log, 0,
                          "vantage ratelimit: could not allocate a bucket "
                          "in zone \"%V\"", &vmcf->rl_zone->shm.name);
            return NGX_ERROR;
        }

        nodes[i] = node;
        saved[i] = node->tat;

        if (!vc_rl_decide(&limit[i].policy, limit[i].cost, rl->now,
                          &node->tat, &e->res))
        {
            refused = 1;
        }
    }

    if (refused) {
        for (i = 0; i < rl->conf->limits->nelts; i++) {
            if (nodes[i] && rl->entries[i].res.admitted) {
                nodes[i]->tat = saved[i];
            }
        }
    }

    ngx_shmtx_unlock(&zctx->shpool->mutex);

    ngx_vantage_rl_settle(rl, 0);

    return NGX_OK;
}


/*
 * Finds or makes the bucket of a key, most recently used last; makes room
 * by dropping the least recently used buckets, full ones first, as
 * limit_req does.  Called with the zone locked.
 */
static ngx_vantage_rl_node_t *
ngx_vantage_rl_lookup(ngx_vantage_rl_zone_ctx_t *zctx, ngx_str_t *key,
    uint32_t hash, uint64_t now)
{
    size_t                  size;
    ngx_int_t               rc;
    ngx_uint_t              n;
    ngx_queue_t            *q;
    ngx_rbtree_node_t      *node, *sentinel;
    ngx_vantage_rl_node_t  *rn;

    node = zctx->sh->rbtree.root;
    sentinel = zctx->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        rn = (ngx_vantage_rl_node_t *) &node->color;

        rc = ngx_memn2cmp(key->data, rn->data, key->len, (size_t) rn->len);

        if (rc == 0) {
            ngx_queue_remove(&rn->queue);
            ngx_queue_insert_head(&zctx->sh->queue, &rn->queue);
            return rn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    size = offsetof(ngx_rbtree_node_t, color)
           + offsetof(ngx_vantage_rl_node_t, data)
           + key->len;

    for (n = 0; n < 8; n++) {
        node = ngx_slab_alloc_locked(zctx->shpool, size);
        if (node != NULL) {
            break;
        }

        /* the least recently used bucket, full or not, after 4 tries */

        if (ngx_queue_empty(&zctx->sh->queue)) {
            return NULL;
        }

        q = ngx_queue_last(&zctx->sh->queue);
        rn = ngx_queue_data(q, ngx_vantage_rl_node_t, queue);

        if (rn->tat > now && n < 4) {
            continue;
        }

        ngx_queue_remove(q);
        node = (ngx_rbtree_node_t *)
                   ((u_char *) rn - offsetof(ngx_rbtree_node_t, color));
        ngx_rbtree_delete(&zctx->sh->rbtree, node);
        ngx_slab_free_locked(zctx->shpool, node);
        node = NULL;
    }

    if (node == NULL) {
        return NULL;
    }

    node->key = hash;

    rn = (ngx_vantage_rl_node_t *) &node->color;
    rn->len = (u_char) key->len;
    rn->tat = 0;
    ngx_memcpy(rn->data, key->data, key->len);

    ngx_rbtree_insert(&zctx->sh->rbtree, node);
    ngx_queue_insert_head(&zctx->sh->queue, &rn->queue);

    return rn;
}


static void
ngx_vantage_rl_rbtree_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t      **p;
    ngx_vantage_rl_node_t   *rn, *rnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            rn = (ngx_vantage_rl_node_t *) &node->color;
            rnt = (ngx_vantage_rl_node_t *) &temp->color;

            p = (ngx_memn2cmp(rn->data, rnt->data, rn->len, rnt->len) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


/* the decision, made known: a refusal, a 503, or on to the content phase */

static ngx_int_t
ngx_vantage_rl_apply(ngx_http_request_t *r, ngx_vantage_rl_ctx_t *rl)
{
    u_char                    *p;
    u_char                     desc[NGX_MAX_ERROR_STR];
    uint64_t                   retry;
    ngx_uint_t                 i, status;
    ngx_log_handler_pt         handler;
    ngx_vantage_ctx_t         *ctx;
    ngx_vantage_rl_limit_t    *limit;
    ngx_http_err_page_t       *err_page;
    ngx_vantage_loc_conf_t    *vlcf;
    ngx_vantage_main_conf_t   *vmcf;
    ngx_http_core_loc_conf_t  *clcf;
    u_char                    *buf;

    vlcf = rl->conf;

    /* for the metrics and $vantage_rate_limit: the context holds rl */

    ctx = ngx_vantage_get_ctx(r);

    if (rl->fallback) {
        ctx->rl_decision = 1 + NGX_VANTAGE_M_RL_FALLBACK;

    } else if (rl->outcome != NGX_VANTAGE_RL_REFUSE) {
        ctx->rl_decision = 1 + NGX_VANTAGE_M_RL_ADMITTED;

    } else {
        ctx->rl_decision = 1 + (vlcf->rl_dry_run ? NGX_VANTAGE_M_RL_DRY_RUN
                                                 : NGX_VANTAGE_M_RL_LIMITED);
    }

    if (rl->outcome != NGX_VANTAGE_RL_REFUSE
        && rl->outcome != NGX_VANTAGE_RL_UNAVAILABLE)
    {
        return NGX_DECLINED;
    }

    /* Retry-After may be sent after this returns: by an error_page */
    buf = ngx_pnalloc(r->pool, NGX_INT64_LEN);
    if (buf == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    switch (rl->outcome) {

    case NGX_VANTAGE_RL_REFUSE:
        break;

    case NGX_VANTAGE_RL_UNAVAILABLE:
        vmcf = ngx_http_get_module_main_conf(r, ngx_vantage_module);

        /* no request line: its query string may hold a token or a key */

        handler = r->connection->log->handler;
        r->connection->log->handler = NULL;

        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "vantage ratelimit: Redis unavailable and "
                      "\"vantage_rate_limit_on_error\" is closed, "
                      "client: %V, uri: \"%V\"",
                      &r->connection->addr_text, &r->uri);

        r->connection->log->handler = handler;

        retry = vmcf->redis ? vmcf->redis->breaker_cooldown : 1000;
        p = ngx_sprintf(buf, "%uL", (retry + 999) / 1000);

        if (ngx_vantage_add_header(r, "Retry-After", 11, buf, p - buf)
            != NGX_OK)
        {
            return NGX_HTTP_INTERNAL_SERVER_ERROR;
        }

        return ngx_vantage_send_json(r, NGX_HTTP_SERVICE_UNAVAILABLE,
                                     "rate_limit_unavailable",
                                     "the rate limiter cannot decide now");

    default:
        return NGX_DECLINED;
    }

    limit = vlcf->limits->elts;
    limit = &limit[rl->refused_by];
    retry = vc_rl_seconds(rl->entries[rl->refused_by].res.retry_after);

    /* no request line: its query string may hold a token */

    handler = r->connection->log->handler;
    r->connection->log->handler = NULL;

    ngx_log_error(vlcf->rl_log_level, r->connection->log, 0,
                  "vantage ratelimit: %slimit \"%V\" exceeded by key "
                  "\"%*s\", client: %V, uri: \"%V\"",
                  vlcf->rl_dry_run ? "dry run, " : "", &limit->name,
                  (size_t) NGX_VANTAGE_RL_HASH_LEN,
                  rl->entries[rl->refused_by].key.data
                  + sizeof(NGX_VANTAGE_RL_KEY_PREFIX) - 1,
                  &r->connection->addr_text, &r->uri);

    r->connection->log->handler = handler;

    if (vlcf->rl_dry_run) {
        return NGX_DECLINED;
    }

    p = ngx_sprintf(buf, "%uL", retry ? retry : 1);

    if (ngx_vantage_add_header(r, "Retry-After", 11, buf, p - buf)
        != NGX_OK)
    {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    status = vlcf->rl_status;

    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (clcf->error_pages) {
        err_page = clcf->error_pages->elts;

        for (i = 0; i < clcf->error_pages->nelts; i++) {
            if ((ngx_uint_t) err_page[i].status == status) {
                return status;
            }
        }
    }

    p = ngx_snprintf(desc, sizeof(desc) - 1,
                     "rate limit \"%V\" exceeded, retry in %uL s",
                     &limit->name, retry ? retry : 1);
    *p = '\0';

    return ngx_vantage_send_json(r, status, "rate_limited", (char *) desc);
}


/*
 * RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-10,
 * structured-field lists), and the X-RateLimit-* trio of the limit with the
 * least left, on every response of a limited main request.
 */
static ngx_int_t
ngx_vantage_rl_header_filter(ngx_http_request_t *r)
{
    u_char                  *p, *policy, *state;
    size_t                   len;
    ngx_int_t                rc;
    ngx_uint_t               i, least, known, mode, all;
    ngx_vantage_ctx_t       *ctx;
    ngx_vantage_rl_ctx_t    *rl;
    ngx_vantage_rl_limit_t  *limit;
    ngx_vantage_rl_entry_t  *e;

    if (r != r->main) {
        return ngx_http_next_header_filter(r);
    }

    ctx = ngx_vantage_get_ctx(r);

    if (ctx == NULL || ctx->rl.entries == NULL
        || ctx->rl.state < NGX_VANTAGE_RL_DECIDED)
    {
        return ngx_http_next_header_filter(r);
    }

    rl = &ctx->rl;
    mode = rl->conf->rl_headers;

    if (mode == NGX_VANTAGE_RL_HEADERS_OFF) {
        return ngx_http_next_header_filter(r);
    }

    limit = rl->conf->limits->elts;

    /* results are known unless Redis failed and on_error admitted all */
    known = (rl->outcome == NGX_VANTAGE_RL_ADMIT
             || rl->outcome == NGX_VANTAGE_RL_REFUSE);

    len = 0;
    all = 1;

    for (i = 0; i < rl->conf->limits->nelts; i++) {
        if (rl->entries[i].key.len) {
            len += limit[i].name.len + 2 * NGX_INT64_LEN
                   + sizeof("\"\";q=;w=, ");
        } else {
            all = 0;
        }
    }

    policy = ngx_pnalloc(r->pool, all ? len : 2 * len);
    if (policy == NULL) {
        return NGX_ERROR;
    }

    state = all ? policy : policy + len;

    p = policy;
    least = NGX_CONF_UNSET_UINT;

    for (i = 0; i < rl->conf->limits->nelts; i++) {
        e = &rl->entries[i];

        if (e->key.len == 0) {
            continue;
        }

        if (least == NGX_CONF_UNSET_UINT
            || e->res.remaining < rl->entries[least].res.remaining)
        {
            least = i;
        }

        if (all) {
            continue;
        }

        if (p != policy) {
            *p++ = ',';
            *p++ = ' ';
        }

        p = ngx_sprintf(p, "\"%V\";q=%uL;w=%ui", &limit[i].name,
                        limit[i].policy.burst, limit[i].window);
    }

    if (mode & NGX_VANTAGE_RL_HEADERS_IETF) {
        if (all) {
            rc = ngx_vantage_add_header(r, "RateLimit-Policy", 16,
                                           rl->conf->rl_policy.data,
                                           rl->conf->rl_policy.len);
        } else {
            rc = ngx_vantage_add_header(r, "RateLimit-Policy", 16, policy,
                                           p - policy);
        }

        if (rc != NGX_OK) {
            return NGX_ERROR;
        }
    }

    if (!known) {
        return ngx_http_next_header_filter(r);
    }

    p = state;

    for (i = 0; i < rl->conf->limits->nelts; i++) {
        e = &rl->entries[i];

        if (e->key.len == 0) {
            continue;
        }

        if (p != state) {
            *p++ = ',';
            *p++ = ' ';
        }

        p = ngx_sprintf(p, "\"%V\";r=%uL;t=%uL", &limit[i].name,
                        e->res.remaining, vc_rl_seconds(e->res.reset));
    }

    if (mode & NGX_VANTAGE_RL_HEADERS_IETF) {
        if (ngx_vantage_add_header(r, "RateLimit", 9, state, p - state)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    if (mode & NGX_VANTAGE_RL_HEADERS_LEGACY) {
        e = &rl->entries[least];

        p = ngx_pnalloc(r->pool, 3 * NGX_INT64_LEN);
        if (p == NULL) {
            return NGX_ERROR;
        }

        policy = p;
        p = ngx_sprintf(p, "%uL", limit[least].policy.burst);

        if (ngx_vantage_add_header(r, "X-RateLimit-Limit", 17, policy,
                                      p - policy)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        policy = p;
        p = ngx_sprintf(p, "%uL", e->res.remaining);

        if (ngx_vantage_add_header(r, "X-RateLimit-Remaining", 21, policy,
                                      p - policy)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        policy = p;
        p = ngx_sprintf(p, "%uL", vc_rl_seconds(e->res.reset));

        if (ngx_vantage_add_header(r, "X-RateLimit-Reset", 17, policy,
                                      p - policy)
            != NGX_OK)
        {
            return NGX_ERROR;
        }
    }

    return ngx_http_next_header_filter(r);
}




/* a request freed while Redis has its question: the reply goes nowhere */

void
ngx_vantage_rl_ctx_cleanup(ngx_vantage_ctx_t *ctx)
{
    if (ctx->rl.call) {
        ngx_vantage_redis_cancel(ctx->rl.call);
        ctx->rl.call = NULL;
    }
}


/*
 * vantage_rate_limit <key> rate=<n>r/s|r/m|r/h burst=<n> [cost=<n>]
 *     [name=<label>]
 */
char *
ngx_vantage_rl_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    u_char                            *p;
    const char                        *err;
    ngx_int_t                          n;
    ngx_str_t                         *value;
    ngx_uint_t                         i;
    int64_t                            op[VC_RL_BITFIELD_OPS];
    uint64_t                           tau;
    ngx_vantage_rl_limit_t            *limit, *other;
    ngx_vantage_main_conf_t           *vmcf;
    ngx_http_compile_complex_value_t   ccv;

    value = cf->args->elts;

    if (vlcf->limits == NGX_CONF_UNSET_PTR) {
        vlcf->limits = ngx_array_create(cf->pool, 2,
                                        sizeof(ngx_vantage_rl_limit_t));
        if (vlcf->limits == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    limit = ngx_array_push(vlcf->limits);
    if (limit == NULL) {
        return NGX_CONF_ERROR;
    }

    ngx_memzero(limit, sizeof(ngx_vantage_rl_limit_t));

    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));

    ccv.cf = cf;
    ccv.value = &value[1];
    ccv.complex_value = &limit->key;

    if (ngx_http_compile_complex_value(&ccv) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    limit->cost = 1;

    for (i = 2; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "rate=", 5) == 0) {
            if (vc_rl_parse_rate((char *) value[i].data + 5, value[i].len - 5,
                                 &limit->policy.interval, &err)
                != VC_OK)
            {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "\"vantage_rate_limit\": %s in \"%V\"",
                                   err, &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "burst=", 6) == 0) {
            n = ngx_atoi(value[i].data + 6, value[i].len - 6);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            limit->policy.burst = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "cost=", 5) == 0) {
            n = ngx_atoi(value[i].data + 5, value[i].len - 5);
            if (n == NGX_ERROR || n == 0) {
                goto invalid;
            }

            limit->cost = n;
            continue;
        }

        if (ngx_strncmp(value[i].data, "name=", 5) == 0) {
            limit->name.data = value[i].data + 5;
            limit->name.len = value[i].len - 5;

            /* an sf-string token of ours: printable, no quote or backslash */

            if (limit->name.len == 0 || limit->name.len > 64) {
                goto invalid;
            }

            for (p = limit->name.data;
                 p < limit->name.data + limit->name.len;
                 p++)
            {
                if (*p <= 0x20 || *p >= 0x7f || *p == '"' || *p == '\\'
                    || *p == '{' || *p == '}' || *p == ':')
                {
                    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                       "\"vantage_rate_limit\": name \"%V\" "
                                       "may only hold printable characters "
                                       "other than space, quotes, "
                                       "backslash, braces and colon",
                                       &limit->name);
                    return NGX_CONF_ERROR;
                }
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_rate_limit\": unknown parameter \"%V\"",
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (limit->policy.interval == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_rate_limit\": \"rate=\" is missing");
        return NGX_CONF_ERROR;
    }

    if (limit->policy.burst == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_rate_limit\": \"burst=\" is missing");
        return NGX_CONF_ERROR;
    }

    if (vc_rl_check(&limit->policy, limit->cost, &err) != VC_OK) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_rate_limit\": %s", err);
        return NGX_CONF_ERROR;
    }

    if (limit->name.len == 0) {
        if (vlcf->limits->nelts == 1) {
            ngx_str_set(&limit->name, "default");

        } else {
            limit->name.data = ngx_pnalloc(cf->pool, sizeof("default") - 1
                                                     + NGX_INT_T_LEN);
            if (limit->name.data == NULL) {
                return NGX_CONF_ERROR;
            }

            limit->name.len = ngx_sprintf(limit->name.data, "default%ui",
                                          vlcf->limits->nelts)
                              - limit->name.data;
        }
    }

    other = vlcf->limits->elts;

    for (i = 0; i < vlcf->limits->nelts - 1; i++) {
        if (other[i].name.len == limit->name.len
            && ngx_strncmp(other[i].name.data, limit->name.data,
                           limit->name.len) == 0)
        {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_rate_limit\": another limit here "
                               "is named \"%V\"", &limit->name);
            return NGX_CONF_ERROR;
        }
    }

    tau = limit->policy.burst * limit->policy.interval;

    limit->window = vc_rl_seconds(tau);

    /* the increments of the limit's BITFIELD that do not depend on now */

    vc_rl_bitfield_ops(&limit->policy, limit->cost, 0, op);

    for (i = 0; i < 3; i++) {
        limit->ops[i].data = ngx_pnalloc(cf->pool, NGX_INT64_LEN);
        if (limit->ops[i].data == NULL) {
            return NGX_CONF_ERROR;
        }

        limit->ops[i].len = ngx_sprintf(limit->ops[i].data, "%L", op[i + 1])
                            - limit->ops[i].data;
    }

    limit->ttl.data = ngx_pnalloc(cf->pool, NGX_INT64_LEN);
    if (limit->ttl.data == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the key is useless once the bucket is full again: tau from its TAT */
    limit->ttl.len = ngx_sprintf(limit->ttl.data, "%uL", (tau + 999) / 1000)
                     - limit->ttl.data;

    /* buckets are shared by limits of the same name, rate and burst */

    limit->suffix.data = ngx_pnalloc(cf->pool, limit->name.len
                                               + 2 * NGX_INT64_LEN + 4);
    if (limit->suffix.data == NULL) {
        return NGX_CONF_ERROR;
    }

    limit->suffix.len = ngx_sprintf(limit->suffix.data, "}:%V:%uL:%uL",
                                    &limit->name, limit->policy.interval,
                                    limit->policy.burst)
                        - limit->suffix.data;
    limit->suffix_hash = ngx_crc32_short(limit->suffix.data,
                                         limit->suffix.len);

    vmcf = ngx_http_conf_get_module_main_conf(cf, ngx_vantage_module);
    vmcf->rl_used = 1;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"vantage_rate_limit\": invalid parameter \"%V\"",
                       &value[i]);

    return NGX_CONF_ERROR;
}


/* vantage_rate_limit_zone <size>: the buckets of the local fallback */

char *
ngx_vantage_rl_zone_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_main_conf_t *vmcf = conf;

    ssize_t     size;
    ngx_str_t  *value;

    if (vmcf->rl_zone) {
        return "is duplicate";
    }

    value = cf->args->elts;

    size = ngx_parse_size(&value[1]);

    if (size == NGX_ERROR || size < (ssize_t) (8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"vantage_rate_limit_zone\": invalid size "
                           "\"%V\", at least %uz bytes", &value[1],
                           8 * ngx_pagesize);
        return NGX_CONF_ERROR;
    }

    return ngx_vantage_rl_zone_add(cf, vmcf, size);
}


char *
ngx_vantage_rl_init_main_conf(ngx_conf_t *cf, ngx_vantage_main_conf_t *vmcf)
{
    if (!vmcf->rl_used || vmcf->rl_zone) {
        return NGX_CONF_OK;
    }

    return ngx_vantage_rl_zone_add(cf, vmcf, 1024 * 1024);
}


static char *
ngx_vantage_rl_zone_add(ngx_conf_t *cf, ngx_vantage_main_conf_t *vmcf,
    size_t size)
{
    ngx_str_t  name;

    ngx_str_set(&name, "vantage_rate_limit");

    vmcf->rl_zone = ngx_shared_memory_add(cf, &name, size,
                                          &ngx_vantage_module);
    if (vmcf->rl_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    /* the context with the configuration: see ngx_vantage_rl_init_zone() */
    vmcf->rl_zone->init = ngx_vantage_rl_init_zone;
    vmcf->rl_zone->data = ngx_pcalloc(cf->pool,
                                      sizeof(ngx_vantage_rl_zone_ctx_t));
    if (vmcf->rl_zone->data == NULL) {
        return NGX_CONF_ERROR;
    }

    return NGX_CONF_OK;
}


static ngx_int_t
ngx_vantage_rl_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_vantage_rl_zone_ctx_t  *octx = data;

    size_t                      len;
    ngx_vantage_rl_zone_ctx_t  *zctx;

    /* allocated with the configuration: ngx_cycle is not the new cycle yet */
    zctx = shm_zone->data;

    if (octx) {
        /* a reload: the buckets stay */
        zctx->sh = octx->sh;
        zctx->shpool = octx->shpool;
        return NGX_OK;
    }

    zctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        zctx->sh = zctx->shpool->data;
        return NGX_OK;
    }

    zctx->sh = ngx_slab_alloc(zctx->shpool, sizeof(ngx_vantage_rl_shctx_t));
    if (zctx->sh == NULL) {
        return NGX_ERROR;
    }

    zctx->shpool->data = zctx->sh;

    ngx_rbtree_init(&zctx->sh->rbtree, &zctx->sh->sentinel,
                    ngx_vantage_rl_rbtree_insert_value);
    ngx_queue_init(&zctx->sh->queue);

    len = sizeof(" in vantage_rate_limit zone \"\"") + shm_zone->shm.name.len;

    zctx->shpool->log_ctx = ngx_slab_alloc(zctx->shpool, len);
    if (zctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(zctx->shpool->log_ctx, " in vantage_rate_limit zone \"%V\"%Z",
                &shm_zone->shm.name);

    zctx->shpool->log_nomem = 0;

    return NGX_OK;
}


char *
ngx_vantage_rl_merge(ngx_conf_t *cf, ngx_vantage_loc_conf_t *prev,
    ngx_vantage_loc_conf_t *conf)
{
    u_char                  *p;
    size_t                   len;
    ngx_uint_t               i;
    ngx_vantage_rl_limit_t  *limit;

    ngx_conf_merge_ptr_value(conf->limits, prev->limits, NULL);
    ngx_conf_merge_uint_value(conf->rl_status, prev->rl_status,
                              NGX_HTTP_TOO_MANY_REQUESTS);
    ngx_conf_merge_uint_value(conf->rl_headers, prev->rl_headers,
                              NGX_VANTAGE_RL_HEADERS_IETF);
    ngx_conf_merge_value(conf->rl_dry_run, prev->rl_dry_run, 0);
    ngx_conf_merge_uint_value(conf->rl_log_level, prev->rl_log_level,
                              NGX_LOG_ERR);
    ngx_conf_merge_uint_value(conf->rl_on_error, prev->rl_on_error,
                              NGX_VANTAGE_RL_ON_ERROR_LOCAL);

    if (conf->limits == NULL) {
        return NGX_CONF_OK;
    }

    if (conf->limits == prev->limits) {
        conf->rl_policy = prev->rl_policy;
        return NGX_CONF_OK;
    }

    /* the field when every limit applies, which is the usual case */

    len = 0;
    limit = conf->limits->elts;

    for (i = 0; i < conf->limits->nelts; i++) {
        len += limit[i].name.len + 2 * NGX_INT64_LEN + sizeof("\"\";q=;w=, ");
    }

    p = ngx_pnalloc(cf->pool, len);
    if (p == NULL) {
        return NGX_CONF_ERROR;
    }

    conf->rl_policy.data = p;

    for (i = 0; i < conf->limits->nelts; i++) {
        if (i) {
            *p++ = ',';
            *p++ = ' ';
        }

        p = ngx_sprintf(p, "\"%V\";q=%uL;w=%ui", &limit[i].name,
                        limit[i].policy.burst, limit[i].window);
    }

    conf->rl_policy.len = p - conf->rl_policy.data;

    return NGX_CONF_OK;
}
