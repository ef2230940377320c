/* ctl_health.c -- vantagectl health: Redis and the queue at a glance */

#include <stdlib.h>
#include <string.h>

#include "vantagectl.h"


typedef struct {
    char                        name[128];
    long long                   pending;
    long long                   idle_ms;
} vctl_consumer_t;


typedef struct {
    char                        version[32];
    char                        policy[32];
    char                        appendfsync[16];
    int                         aof;           /* -1: unknown */
    int                         policy_safe;
    long long                   stream;
    int                         group;         /* the group exists */
    long long                   pending;
    size_t                      nconsumers;
    vctl_consumer_t            *consumers;
    long long                   delayed;
    long long                   dead;
    long long                   done;
    long long                   inflight;
} vctl_health_t;


static void vctl_info_field(const char *info, const char *name, char *buf,
    size_t size);
static int vctl_health_read(vctl_t *ctl, vctl_health_t *h);
static int vctl_health_group(vctl_t *ctl, vctl_health_t *h);
static long long vctl_pairs_int(redisReply *r, const char *name);
static const char *vctl_pairs_str(redisReply *r, const char *name);
static int vctl_count(vctl_t *ctl, const char *cmd, const char *key,
    long long *n);


/*
 * Exits 0 when Redis answers and keeps every job, 1 when it is unreachable
 * (connected == 0: ctl->errstr says why) or its maxmemory-policy is one of
 * the allkeys-* ones, which may evict accepted jobs (WORKER.md, Keys).
 */
int
vctl_health(vctl_t *ctl, int connected)
{
    char            line[256], key[160], problem[VCTL_ERRSTR_LEN];
    size_t          i;
    json_t         *doc, *group, *cons;
    vctl_table_t    t;
    vctl_health_t   h;
    const char     *row[2];

    if (!connected) {
        if (ctl->args->json) {
            vctl_json_print(json_pack("{s:b,s:{s:s,s:b,s:s}}",
                                      "healthy", 0, "redis",
                                      "address", ctl->args->redis,
                                      "reachable", 0,
                                      "error", ctl->errstr));
        }

        vctl_error("unhealthy: %s", ctl->errstr);
        return VCTL_EXIT_FAIL;
    }

    memset(&h, 0, sizeof(vctl_health_t));

    if (vctl_health_read(ctl, &h) != VCTL_OK) {
        free(h.consumers);
        return VCTL_EXIT_FAIL;
    }

    problem[0] = '\0';

    if (!h.policy_safe) {
        snprintf(problem, sizeof(problem), "Redis's maxmemory-policy "
                 "\"%s\" may evict accepted jobs: set noeviction "
                 "(or a volatile-* policy)", h.policy);
    }

    if (ctl->args->json) {
        cons = json_array();

        for (i = 0; i < h.nconsumers; i++) {
            json_array_append_new(cons, json_pack("{s:o,s:I,s:I}",
                "name", vctl_json_text(h.consumers[i].name,
                                       strlen(h.consumers[i].name)),
                "pending", (json_int_t) h.consumers[i].pending,
                "idle_ms", (json_int_t) h.consumers[i].idle_ms));
        }

        if (h.group) {
            group = json_pack("{s:s,s:I,s:o}", "name", VCTL_GROUP,
                              "pending", (json_int_t) h.pending,
                              "consumers", cons);

        } else {
            json_decref(cons);
            group = json_null();
        }

        doc = json_pack("{s:b,s:o,s:{s:s,s:b,s:s},s:s,s:b,s:{s:o,s:s},"
                        "s:I,s:o,s:I,s:I,s:I,s:I}",
            "healthy", problem[0] == '\0',
            "problem", problem[0] ? json_string(problem) : json_null(),
            "redis", "address", ctl->args->redis, "reachable", 1,
                     "version", h.version,
            "maxmemory_policy", h.policy,
            "policy_safe", h.policy_safe,
            "aof", "enabled", h.aof < 0 ? json_null() : json_boolean(h.aof),
                   "appendfsync", h.appendfsync,
            "stream_length", (json_int_t) h.stream,
            "group", group,
            "delayed", (json_int_t) h.delayed,
            "dead", (json_int_t) h.dead,
            "done", (json_int_t) h.done,
            "inflight", (json_int_t) h.inflight);

        vctl_json_print(doc);

    } else {
        vctl_table_init(&t, 2);

#define vctl_row(k, ...)                                                     \
        snprintf(line, sizeof(line), __VA_ARGS__);                           \
        row[0] = k;                                                          \
        row[1] = line;                                                       \
        vctl_table_add(&t, row)

        vctl_row("redis", "%s, version %s", ctl->args->redis, h.version);
        vctl_row("maxmemory-policy", "%s (%s)", h.policy,
                 h.policy_safe ? "safe" : "UNSAFE: may evict jobs");
        vctl_row("aof", "%s, appendfsync %s",
                 h.aof < 0 ? "unknown" : (h.aof ? "on" : "off"),
                 h.appendfsync);
        vctl_row("stream " VCTL_KEY_JOBS, "%lld entries", h.stream);

        if (h.group) {
            vctl_row("group " VCTL_GROUP, "%lld pending, %zu consumer%s",
                     h.pending, h.nconsumers, h.nconsumers == 1 ? "" : "s");

            for (i = 0; i < h.nconsumers; i++) {
                snprintf(key, sizeof(key), "  %s", h.consumers[i].name);
                vctl_row(key,
                         "%lld pending, idle %lld ms",
                         h.consumers[i].pending, h.consumers[i].idle_ms);
            }

        } else {
            vctl_row("group " VCTL_GROUP, "none yet (no worker has started)");
        }

        vctl_row("delayed", "%lld", h.delayed);
        vctl_row("dead", "%lld", h.dead);
        vctl_row("done", "%lld", h.done);
        vctl_row("inflight", "%lld", h.inflight);
        vctl_row("health", "%s", h.policy_safe ? "ok" : "FAILED");

#undef vctl_row

        vctl_table_print(&t);
        vctl_table_free(&t);
    }

    free(h.consumers);

    if (!h.policy_safe) {
        vctl_error("unhealthy: Redis's maxmemory-policy \"%s\" may evict "
                   "accepted jobs: set noeviction (or a volatile-* policy)",
                   h.policy);
        return VCTL_EXIT_FAIL;
    }

    return VCTL_EXIT_OK;
}


/*
 * The policy and the AOF come from INFO, as the worker reads them: CONFIG
 * may be renamed away on managed services.  Only appendfsync is not in
 * INFO; when CONFIG is refused it shows as "unknown".
 */
static int
vctl_health_read(vctl_t *ctl, vctl_health_t *h)
{
    char         aof[8];
    redisReply  *r;

    r = vctl_redis(ctl, "PING");
    if (r == NULL) {
        return VCTL_ERROR;
    }

    freeReplyObject(r);

    r = vctl_redis(ctl, "INFO");
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        vctl_error("redis: unexpected reply to INFO");
        return VCTL_ERROR;
    }

    vctl_info_field(r->str, "redis_version", h->version,
                    sizeof(h->version));
    vctl_info_field(r->str, "maxmemory_policy", h->policy,
                    sizeof(h->policy));
    vctl_info_field(r->str, "aof_enabled", aof, sizeof(aof));
    freeReplyObject(r);

    h->aof = aof[0] ? (strcmp(aof, "1") == 0) : -1;

    /* an INFO that names no policy proves nothing: treat it as unsafe */
    h->policy_safe = h->policy[0] != '\0'
                     && strncmp(h->policy, "allkeys-", 8) != 0;

    if (h->policy[0] == '\0') {
        strcpy(h->policy, "unknown");
    }

    strcpy(h->appendfsync, "unknown");

    r = vctl_redis_try(ctl, "CONFIG GET appendfsync");
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2
        && r->element[1]->type == REDIS_REPLY_STRING)
    {
        snprintf(h->appendfsync, sizeof(h->appendfsync), "%s",
                 r->element[1]->str);
    }

    freeReplyObject(r);

    if (vctl_count(ctl, "XLEN", VCTL_KEY_JOBS, &h->stream) != VCTL_OK
        || vctl_health_group(ctl, h) != VCTL_OK
        || vctl_count(ctl, "ZCARD", VCTL_KEY_DELAYED, &h->delayed) != VCTL_OK
        || vctl_count(ctl, "ZCARD", VCTL_KEY_DEAD, &h->dead) != VCTL_OK
        || vctl_count(ctl, "ZCARD", VCTL_KEY_DONE, &h->done) != VCTL_OK
        || vctl_count(ctl, "GET", VCTL_KEY_INFLIGHT, &h->inflight) != VCTL_OK)
    {
        return VCTL_ERROR;
    }

    return VCTL_OK;
}


/* XINFO GROUPS and CONSUMERS; no stream or no group is not an error */
static int
vctl_health_group(vctl_t *ctl, vctl_health_t *h)
{
    size_t       i;
    redisReply  *r, *g;
    const char  *name;

    r = vctl_redis_try(ctl, "XINFO GROUPS " VCTL_KEY_JOBS);
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type == REDIS_REPLY_ERROR) {
        /* "ERR no such key": no worker and no job yet */
        freeReplyObject(r);
        return VCTL_OK;
    }

    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        g = r->element[i];
        name = vctl_pairs_str(g, "name");

        if (name != NULL && strcmp(name, VCTL_GROUP) == 0) {
            h->group = 1;
            h->pending = vctl_pairs_int(g, "pending");
        }
    }

    freeReplyObject(r);

    if (!h->group) {
        return VCTL_OK;
    }

    r = vctl_redis(ctl, "XINFO CONSUMERS " VCTL_KEY_JOBS " " VCTL_GROUP);
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
        h->consumers = calloc(r->elements, sizeof(vctl_consumer_t));
        if (h->consumers == NULL) {
            freeReplyObject(r);
            vctl_error("out of memory");
            return VCTL_ERROR;
        }

        for (i = 0; i < r->elements; i++) {
            name = vctl_pairs_str(r->element[i], "name");
            snprintf(h->consumers[i].name, sizeof(h->consumers[i].name),
                     "%s", name ? name : "?");
            h->consumers[i].pending = vctl_pairs_int(r->element[i],
                                                     "pending");
            h->consumers[i].idle_ms = vctl_pairs_int(r->element[i], "idle");
        }

        h->nconsumers = r->elements;
    }

    freeReplyObject(r);

    return VCTL_OK;
}


/* a size (XLEN, ZCARD) or a counter (GET: absent is 0) */
static int
vctl_count(vctl_t *ctl, const char *cmd, const char *key, long long *n)
{
    redisReply  *r;

    r = vctl_redis(ctl, "%s %s", cmd, key);
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type == REDIS_REPLY_NIL) {
        *n = 0;

    } else if (vctl_reply_int(r, n) != VCTL_OK) {
        vctl_error("redis: %s %s: not a number", cmd, key);
        freeReplyObject(r);
        return VCTL_ERROR;
    }

    freeReplyObject(r);

    return VCTL_OK;
}


/* a value of "name:value" lines of INFO, "" when absent */
static void
vctl_info_field(const char *info, const char *name, char *buf, size_t size)
{
    size_t       len;
    const char  *p;

    buf[0] = '\0';
    len = strlen(name);

    for (p = info; p != NULL && *p; p = strchr(p, '\n'), p = p ? p + 1 : p) {
        if (strncmp(p, name, len) == 0 && p[len] == ':') {
            p += len + 1;
            len = strcspn(p, "\r\n");
            snprintf(buf, size, "%.*s", (int) len, p);
            return;
        }
    }
}


/* XINFO replies are flat arrays of name, value pairs */
static const char *
vctl_pairs_str(redisReply *r, const char *name)
{
    size_t  i;

    for (i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
    {
        if (r->element[i]->type == REDIS_REPLY_STRING
            && strcmp(r->element[i]->str, name) == 0)
        {
            return r->element[i + 1]->type == REDIS_REPLY_STRING
                   ? r->element[i + 1]->str : NULL;
        }
    }

    return NULL;
}


static long long
vctl_pairs_int(redisReply *r, const char *name)
{
    size_t  i;

    for (i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2)
    {
        if (r->element[i]->type == REDIS_REPLY_STRING
            && strcmp(r->element[i]->str, name) == 0)
        {
            return r->element[i + 1]->type == REDIS_REPLY_INTEGER
                   ? r->element[i + 1]->integer : 0;
        }
    }

    return 0;
}
