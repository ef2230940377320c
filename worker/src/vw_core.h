/* vw_core.h -- return codes, version and limits shared by the worker */

#ifndef VW_CORE_H
#define VW_CORE_H


#define VW_NAME       "vantage-worker"
#define VW_VERSION    "0.1.0"


/* the words nginx uses, so module and worker read alike (see vc_common.h) */
#define VW_OK         0
#define VW_ERROR     -1
#define VW_AGAIN     -2
#define VW_BUSY      -3
#define VW_DONE      -4
#define VW_DECLINED  -5


#define VW_ERRSTR_LEN  128


#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

struct event_base;
struct evconnlistener;
struct sockaddr;
struct redisAsyncContext;


typedef struct {
    const unsigned char        *data;      /* NULL when absent */
    size_t                      len;
} vw_str_t;


/* a job as the hand-off delivers it; the strings point into its frame */
typedef struct {
    char                        id[33];    /* 32 hex digits */
    vw_str_t                    type;
    vw_str_t                    tenant;
    vw_str_t                    subject;
    vw_str_t                    idempotency_key;
    vw_str_t                    correlation_id;
    vw_str_t                    method;
    vw_str_t                    uri;
    vw_str_t                    headers;   /* JSON [[name, value], ...] */
    vw_str_t                    body;
    vw_str_t                    ordering_key;
} vw_job_t;


/* what DISPATCH takes from the configuration in force, copied per job */
typedef struct {
    uint64_t                    inflight_cap;          /* 0: none */
    uint64_t                    idempotency_window_ms;
    unsigned                    ordered:1;  /* the job type has ordering */
} vw_queue_limits_t;


typedef struct vw_queue_s  vw_queue_t;
typedef struct vw_server_s  vw_server_t;

/* called once per push: see vw_queue_push() in queue.c */
typedef void (*vw_queue_push_pt)(void *data, int rc, const char *job_id,
    const char *state);

/* called once per status read; reply is a hiredis redisReply array */
typedef void (*vw_queue_status_pt)(void *data, int rc, void *reply);

#define VW_JOB_STATUS_FIELDS  8

extern const char  *vw_job_status_fields[VW_JOB_STATUS_FIELDS];


/* log.c: one JSON object per line on stderr; pairs of key, value, NULL */
void vw_log(const char *level, const char *msg, ...);

/* queue.c */
#define VW_STATE_STRING  0
#define VW_STATE_NUMBER  1
#define VW_STATE_JSON    2

void vw_job_state_set(json_t *o, const char *name, void *reply, int kind);
void vw_job_state_fill(json_t *o, void *elements);

vw_queue_t *vw_queue_create(struct event_base *base, const char *addr,
    const char *password);
void vw_queue_free(vw_queue_t *q);
int vw_queue_push(vw_queue_t *q, const vw_job_t *job,
    const vw_queue_limits_t *lim, vw_queue_push_pt handler, void *data);
int vw_queue_policy_safe(const char *info, const char **policy, size_t *len);
int vw_queue_ready(vw_queue_t *q, const char **reason);
int vw_queue_check(const char *addr, const char *password);
int vw_queue_status(vw_queue_t *q, const char *job_id,
    vw_queue_status_pt handler, void *data);

/*
 * The queue's Redis connection when it can take commands (connected, the
 * password accepted, the policy safe), for other readers on the loop such
 * as the metrics sampler; NULL otherwise.  Replies still pending when the
 * queue is freed come back NULL.
 */
struct redisAsyncContext *vw_queue_context(vw_queue_t *q);

/* server.c */
vw_server_t *vw_server_create(struct event_base *base, const char *path,
    unsigned mode, gid_t gid, size_t max_frame, vw_queue_t *queue);
void vw_server_free(vw_server_t *srv);

/*
 * Listens on the Unix socket path (a stale socket file there is removed),
 * then gives the file mode and gid (see [worker] listen_mode and
 * listen_group); cb(arg) takes the connections, or is set later when NULL.
 * Returns the listener, or NULL (logged).
 */
struct evconnlistener *vw_server_listen(struct event_base *base,
    const char *path, unsigned mode, gid_t gid,
    void (*cb)(struct evconnlistener *, int, struct sockaddr *, int, void *),
    void *arg);


#endif /* VW_CORE_H */
