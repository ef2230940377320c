/* vantagectl.h -- the operator's tool: what its files share */

#ifndef VANTAGECTL_H
#define VANTAGECTL_H


#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <hiredis/hiredis.h>
#include <jansson.h>


#define VCTL_NAME          "vantagectl"
#define VCTL_VERSION       "0.1.0"

/* exit codes: the contract with scripts that call the tool */
#define VCTL_EXIT_OK       0
#define VCTL_EXIT_FAIL     1
#define VCTL_EXIT_USAGE    2

/* return codes inside the tool: the worker's words (vw_core.h) */
#define VCTL_OK            0
#define VCTL_ERROR        -1
#define VCTL_DECLINED     -5

#define VCTL_ID_LEN        32
#define VCTL_ERRSTR_LEN    256

/* the options a command accepts, checked against what was given */
#define VCTL_OPT_STATE     0x01
#define VCTL_OPT_TYPE      0x02
#define VCTL_OPT_TENANT    0x04
#define VCTL_OPT_LIMIT     0x08
#define VCTL_OPT_SINCE     0x10
#define VCTL_OPT_BODY      0x20
#define VCTL_OPT_ALL       0x40
#define VCTL_OPT_FILE      0x80
#define VCTL_OPT_ID        0x100
#define VCTL_OPT_SCOPE     0x200
#define VCTL_OPT_EXPIRES   0x400
#define VCTL_OPT_KEY_FILE  0x800
#define VCTL_OPT_NEW_KEY   0x1000
#define VCTL_OPT_FROM_FILE 0x2000
#define VCTL_OPT_FORCE     0x4000
#define VCTL_OPT_REPLACE   0x8000
#define VCTL_OPT_RAW       0x10000

#define VCTL_KEY_JOB       "{vq}:job:"
#define VCTL_KEY_ATT       "{vq}:att:"
#define VCTL_KEY_ORD       "{vq}:ord:"
#define VCTL_KEY_JOBS      "{vq}:jobs"
#define VCTL_KEY_DELAYED   "{vq}:delayed"
#define VCTL_KEY_DEAD      "{vq}:dead"
#define VCTL_KEY_DONE      "{vq}:done"
#define VCTL_KEY_INFLIGHT  "{vq}:inflight"
#define VCTL_GROUP         "vantage"


typedef struct {
    const char                 *redis;
    const char                 *password_file;
    const char                 *user;
    const char                 *state;
    const char                 *type;
    const char                 *tenant;
    long                        limit;
    int64_t                     since_ms;
    const char                 *file;       /* apikey: the key file */
    const char                 *key_id;
    const char                 *expires;
    char                      **scopes;
    int                         nscopes;
    const char                 *key_file;     /* vault: the master key */
    const char                 *new_key_file; /* vault rotate-master */
    const char                 *from_file;    /* vault put: the value */
    unsigned                    given;      /* VCTL_OPT_* seen */
    unsigned                    json:1;
    unsigned                    help:1;
    unsigned                    version:1;
    char                      **pos;        /* the command and its operands */
    int                         npos;
} vctl_args_t;


typedef struct {
    redisContext               *c;
    const vctl_args_t          *args;
    char                        errstr[VCTL_ERRSTR_LEN];
} vctl_t;


/* the summary fields of a job, as HMGET returns them */
enum {
    VCTL_F_TYPE = 0,
    VCTL_F_TENANT,
    VCTL_F_STATE,
    VCTL_F_ATTEMPTS,
    VCTL_F_CREATED,
    VCTL_F_NEXT,
    VCTL_F_LAST_ERROR,
    VCTL_F_LAST_STATUS,
    VCTL_F_FINISHED,
    VCTL_F_REPLAYS,
    VCTL_F_N
};


typedef struct {
    char                        id[VCTL_ID_LEN + 1];
    char                       *f[VCTL_F_N];     /* malloc()ed, or NULL */
    int64_t                     created_ms;      /* -1 when absent */
    int64_t                     dead_ms;         /* its score in dead */
} vctl_job_t;


/* a table printed with aligned columns; cells are copied */
typedef struct {
    int                         ncols;
    size_t                      nrows;
    size_t                      nalloc;
    char                      **cells;
} vctl_table_t;


/* vantagectl.c */
void vctl_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
void vctl_json_print(json_t *doc);
json_t *vctl_json_text(const char *s, size_t len);
void vctl_print_safe(FILE *f, const char *s, size_t len);
int vctl_table_init(vctl_table_t *t, int ncols);
int vctl_table_add(vctl_table_t *t, const char **row);
void vctl_table_print(vctl_table_t *t);
void vctl_table_free(vctl_table_t *t);

/* ctl_redis.c */
int vctl_redis_connect(vctl_t *ctl);
redisReply *vctl_redis(vctl_t *ctl, const char *fmt, ...);
redisReply *vctl_redis_try(vctl_t *ctl, const char *fmt, ...);
int vctl_redis_append(vctl_t *ctl, const char *fmt, ...);
redisReply *vctl_redis_get(vctl_t *ctl);
int vctl_reply_int(redisReply *r, long long *n);
int64_t vctl_now_ms(void);
void vctl_iso(int64_t ms, char *buf, size_t size);
int vctl_parse_int(const char *s, long long *n);
int vctl_parse_since(const char *s, int64_t now, int64_t *ms);
int vctl_id_valid(const char *s);

/* ctl_jobs.c */
extern const char  *vctl_summary_fields[VCTL_F_N];
int vctl_jobs_fetch(vctl_t *ctl, vctl_job_t *jobs, size_t n);
void vctl_job_clear(vctl_job_t *job);
int vctl_jobs_list(vctl_t *ctl);
int vctl_jobs_show(vctl_t *ctl);
int vctl_dlq_list(vctl_t *ctl);
int vctl_dlq_show(vctl_t *ctl);

/* ctl_dlq.c */
int vctl_dlq_replay(vctl_t *ctl);
int vctl_dlq_purge(vctl_t *ctl);
int vctl_dlq_skip(vctl_t *ctl);

/* ctl_apikey.c: the key file of vantage_api_keys, no Redis */
int vctl_apikey_create(vctl_t *ctl);
int vctl_apikey_list(vctl_t *ctl);
int vctl_apikey_revoke(vctl_t *ctl);

/* ctl_vault.c: the credential vault, {vv}:vault (docs/VAULT.md) */
int vctl_vault_put(vctl_t *ctl);
int vctl_vault_get(vctl_t *ctl);
int vctl_vault_list(vctl_t *ctl);
int vctl_vault_delete(vctl_t *ctl);
int vctl_vault_rotate(vctl_t *ctl);

/* ctl_health.c */
int vctl_health(vctl_t *ctl, int connected);


#endif /* VANTAGECTL_H */
