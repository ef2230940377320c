/* ngx_vantage_jwt_cache.c -- verified tokens in shared memory, LRU, by hash */

#include "ngx_vantage_module.h"


typedef struct {
    ngx_rbtree_node_t           node;      /* key: first bytes of the hash */
    ngx_queue_t                 queue;     /* LRU, most recent first */
    time_t                      expires;
    u_char                      hash[32];
    uint32_t                    len;
    u_char                      data[1];
} ngx_vantage_jwt_cache_node_t;


typedef struct {
    ngx_rbtree_t                rbtree;
    ngx_rbtree_node_t           sentinel;
    ngx_queue_t                 queue;
} ngx_vantage_jwt_cache_sh_t;


typedef struct {
    ngx_vantage_jwt_cache_sh_t *sh;
    ngx_slab_pool_t            *shpool;
    time_t                      ttl;
} ngx_vantage_jwt_cache_t;


static ngx_int_t ngx_vantage_jwt_cache_init_zone(ngx_shm_zone_t *shm_zone,
    void *data);
static void ngx_vantage_jwt_cache_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel);
static ngx_vantage_jwt_cache_node_t *ngx_vantage_jwt_cache_lookup(
    ngx_vantage_jwt_cache_t *cache, u_char *key);
static void ngx_vantage_jwt_cache_expire(ngx_vantage_jwt_cache_t *cache,
    ngx_uint_t force);
static void ngx_vantage_jwt_cache_delete(ngx_vantage_jwt_cache_t *cache,
    ngx_vantage_jwt_cache_node_t *cn);


/* vantage_jwt_cache zone=name:size [ttl=time] | off */
char *
ngx_vantage_jwt_cache_conf(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_vantage_loc_conf_t *vlcf = conf;

    u_char                   *p;
    time_t                    ttl;
    ssize_t                   size;
    ngx_str_t                *value, name, s;
    ngx_uint_t                i;
    ngx_shm_zone_t           *shm_zone;

    if (vlcf->cache != NGX_CONF_UNSET_PTR) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        vlcf->cache = NULL;
        return NGX_CONF_OK;
    }

    ngx_str_null(&name);
    size = 0;
    ttl = 600;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {

            name.data = value[i].data + 5;
            p = (u_char *) ngx_strchr(name.data, ':');

            if (p == NULL) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%V: invalid zone size \"%V\"", &cmd->name,
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            name.len = p - name.data;

            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;

            size = ngx_parse_size(&s);

            if (size == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%V: invalid zone size \"%V\"", &cmd->name,
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%V: zone \"%V\" is too small",
                                   &cmd->name, &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        if (ngx_strncmp(value[i].data, "ttl=", 4) == 0) {

            s.data = value[i].data + 4;
            s.len = value[i].len - 4;

            ttl = ngx_parse_time(&s, 1);
            if (ttl == (time_t) NGX_ERROR || ttl == 0) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "%V: invalid ttl \"%V\"", &cmd->name,
                                   &value[i]);
                return NGX_CONF_ERROR;
            }

            continue;
        }

        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "%V: invalid parameter \"%V\"", &cmd->name,
                           &value[i]);
        return NGX_CONF_ERROR;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"%V\" must have \"zone\" parameter",
                           &cmd->name);
        return NGX_CONF_ERROR;
    }

    shm_zone = ngx_vantage_jwt_cache_zone(cf, &name, size, ttl);
    if (shm_zone == NULL) {
        return NGX_CONF_ERROR;
    }

    vlcf->cache = shm_zone;

    return NGX_CONF_OK;
}


/*
 * The cache zone of that name, made on first use; NULL when it is used
 * with another ttl (logged) or out of memory.  Introspection answers share
 * it with verified tokens, under keys of their own.
 */
ngx_shm_zone_t *
ngx_vantage_jwt_cache_zone(ngx_conf_t *cf, ngx_str_t *name, ssize_t size,
    time_t ttl)
{
    ngx_shm_zone_t           *shm_zone;
    ngx_vantage_jwt_cache_t  *cache;

    shm_zone = ngx_shared_memory_add(cf, name, size, &ngx_vantage_module);
    if (shm_zone == NULL) {
        return NULL;
    }

    if (shm_zone->data) {
        cache = shm_zone->data;

        if (cache->ttl != ttl) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "\"vantage_jwt_cache\" zone \"%V\" is already "
                               "used with another ttl", name);
            return NULL;
        }

        return shm_zone;
    }

    cache = ngx_pcalloc(cf->pool, sizeof(ngx_vantage_jwt_cache_t));
    if (cache == NULL) {
        return NULL;
    }

    cache->ttl = ttl;

    shm_zone->init = ngx_vantage_jwt_cache_init_zone;
    shm_zone->data = cache;

    return shm_zone;
}


/* a reload keeps the zone, and with it the tokens verified before */
static ngx_int_t
ngx_vantage_jwt_cache_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_vantage_jwt_cache_t  *ocache = data;

    size_t                    len;
    ngx_vantage_jwt_cache_t  *cache;

    cache = shm_zone->data;

    if (ocache) {
        cache->sh = ocache->sh;
        cache->shpool = ocache->shpool;
        return NGX_OK;
    }

    cache->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        cache->sh = cache->shpool->data;
        return NGX_OK;
    }

    cache->sh = ngx_slab_alloc(cache->shpool,
                               sizeof(ngx_vantage_jwt_cache_sh_t));
    if (cache->sh == NULL) {
        return NGX_ERROR;
    }

    cache->shpool->data = cache->sh;

    ngx_rbtree_init(&cache->sh->rbtree, &cache->sh->sentinel,
                    ngx_vantage_jwt_cache_insert_value);

    ngx_queue_init(&cache->sh->queue);

    len = sizeof(" in vantage_jwt_cache zone \"\"") + shm_zone->shm.name.len;

    cache->shpool->log_ctx = ngx_slab_alloc(cache->shpool, len);
    if (cache->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(cache->shpool->log_ctx, " in vantage_jwt_cache zone \"%V\"%Z",
                &shm_zone->shm.name);

    /* a full cache evicts; it is not an error worth a log line */
    cache->shpool->log_nomem = 0;

    return NGX_OK;
}


static void
ngx_vantage_jwt_cache_insert_value(ngx_rbtree_node_t *temp,
    ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t             **p;
    ngx_vantage_jwt_cache_node_t   *cn, *cnt;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else { /* node->key == temp->key */

            cn = (ngx_vantage_jwt_cache_node_t *) node;
            cnt = (ngx_vantage_jwt_cache_node_t *) temp;

            p = (ngx_memcmp(cn->hash, cnt->hash, 32) < 0)
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


static ngx_vantage_jwt_cache_node_t *
ngx_vantage_jwt_cache_lookup(ngx_vantage_jwt_cache_t *cache, u_char *key)
{
    ngx_int_t                      rc;
    ngx_rbtree_key_t               hash;
    ngx_rbtree_node_t             *node, *sentinel;
    ngx_vantage_jwt_cache_node_t  *cn;

    ngx_memcpy(&hash, key, sizeof(ngx_rbtree_key_t));

    node = cache->sh->rbtree.root;
    sentinel = cache->sh->rbtree.sentinel;

    while (node != sentinel) {

        if (hash < node->key) {
            node = node->left;
            continue;
        }

        if (hash > node->key) {
            node = node->right;
            continue;
        }

        cn = (ngx_vantage_jwt_cache_node_t *) node;

        rc = ngx_memcmp(key, cn->hash, 32);

        if (rc == 0) {
            return cn;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


/*
 * Copies the entry for key into the pool.  Returns NGX_OK, or NGX_DECLINED
 * when there is none or it has expired.
 */
ngx_int_t
ngx_vantage_jwt_cache_get(ngx_shm_zone_t *zone, u_char *key, ngx_pool_t *pool,
    ngx_str_t *value)
{
    ngx_vantage_jwt_cache_t       *cache;
    ngx_vantage_jwt_cache_node_t  *cn;

    cache = zone->data;

    ngx_shmtx_lock(&cache->shpool->mutex);

    cn = ngx_vantage_jwt_cache_lookup(cache, key);

    if (cn == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    if (cn->expires <= ngx_time()) {
        ngx_vantage_jwt_cache_delete(cache, cn);
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    value->data = ngx_pnalloc(pool, cn->len + 1);
    if (value->data == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return NGX_DECLINED;
    }

    ngx_memcpy(value->data, cn->data, cn->len);
    value->len = cn->len;

    ngx_queue_remove(&cn->queue);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);

    return NGX_OK;
}


/* when an entry put now expires at the latest */
time_t
ngx_vantage_jwt_cache_expires(ngx_shm_zone_t *zone)
{
    ngx_vantage_jwt_cache_t  *cache = zone->data;

    return ngx_time() + cache->ttl;
}


/*
 * Stores a verified token's values until expires.  A full zone evicts the
 * least recently used entries; a put that still does not fit is dropped,
 * which costs a later request a signature check and nothing else.
 */
void
ngx_vantage_jwt_cache_put(ngx_shm_zone_t *zone, u_char *key, time_t expires,
    u_char *value, size_t len)
{
    size_t                         size;
    ngx_uint_t                     tries;
    ngx_vantage_jwt_cache_t       *cache;
    ngx_vantage_jwt_cache_node_t  *cn;

    cache = zone->data;

    if (expires <= ngx_time()) {
        return;
    }

    size = offsetof(ngx_vantage_jwt_cache_node_t, data) + len;

    ngx_shmtx_lock(&cache->shpool->mutex);

    ngx_vantage_jwt_cache_expire(cache, 0);

    cn = ngx_vantage_jwt_cache_lookup(cache, key);

    if (cn) {
        /* another worker process stored it meanwhile */
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return;
    }

    for (tries = 0; tries < 8; tries++) {
        cn = ngx_slab_alloc_locked(cache->shpool, size);
        if (cn) {
            break;
        }

        ngx_vantage_jwt_cache_expire(cache, 1);
    }

    if (cn == NULL) {
        ngx_shmtx_unlock(&cache->shpool->mutex);
        return;
    }

    ngx_memcpy(&cn->node.key, key, sizeof(ngx_rbtree_key_t));
    ngx_memcpy(cn->hash, key, 32);
    cn->expires = expires;
    cn->len = (uint32_t) len;
    ngx_memcpy(cn->data, value, len);

    ngx_rbtree_insert(&cache->sh->rbtree, &cn->node);
    ngx_queue_insert_head(&cache->sh->queue, &cn->queue);

    ngx_shmtx_unlock(&cache->shpool->mutex);
}


/*
 * Removes up to two expired entries from the LRU end, or with force the
 * least recently used one (and any expired one behind it).
 */
static void
ngx_vantage_jwt_cache_expire(ngx_vantage_jwt_cache_t *cache,
    ngx_uint_t force)
{
    ngx_uint_t                     n;
    ngx_queue_t                   *q;
    ngx_vantage_jwt_cache_node_t  *cn;

    for (n = 0; n < 3; n++) {

        if (ngx_queue_empty(&cache->sh->queue)) {
            return;
        }

        q = ngx_queue_last(&cache->sh->queue);
        cn = ngx_queue_data(q, ngx_vantage_jwt_cache_node_t, queue);

        if (!force && cn->expires > ngx_time()) {
            return;
        }

        force = 0;

        ngx_vantage_jwt_cache_delete(cache, cn);
    }
}


static void
ngx_vantage_jwt_cache_delete(ngx_vantage_jwt_cache_t *cache,
    ngx_vantage_jwt_cache_node_t *cn)
{
    ngx_queue_remove(&cn->queue);
    ngx_rbtree_delete(&cache->sh->rbtree, &cn->node);
    ngx_slab_free_locked(cache->shpool, cn);
}
