/* ctl_dlq.c -- vantagectl: replay, purge and skip dead jobs */

/*
 * Every change here is one command or one MULTI/EXEC, as everywhere in
 * docs/WORKER.md: no Lua, no WATCH.  What stops two operators (or an
 * operator and the worker's retention) from acting twice on one job is
 * the ZREM of the job from {vq}:dead, sent alone before the transaction:
 * of any number of concurrent ZREMs of one member exactly one returns 1,
 * and only that caller goes on.  A ZREM inside the MULTI could not do
 * that, since a transaction cannot make its later commands depend on an
 * earlier reply.
 */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vantagectl.h"


/*
 * How long an explicit id that is dead but missing from {vq}:dead is
 * watched before it is taken for the leftover of a crashed replay: a live
 * replayer sends its transaction one round trip after its ZREM.
 */
#define VCTL_ORPHAN_WAIT_US  1000000


typedef struct {
    unsigned                    purge:1;
    const char                 *verb;        /* "replayed", "purged" */
    size_t                      acted;
    size_t                      failed;
    json_t                     *done;
    json_t                     *skipped;
    json_t                     *errors;
} vctl_dlq_run_t;


static int vctl_dlq_run(vctl_t *ctl, int purge);
static int vctl_dlq_select(vctl_t *ctl, vctl_job_t **jobs, size_t *n);
static int vctl_dlq_one(vctl_t *ctl, vctl_dlq_run_t *run, const char *id,
    int explicit);
static int vctl_dlq_claim(vctl_t *ctl, const char *id, int explicit,
    const char **reason);
static int vctl_dlq_delete(vctl_t *ctl, const char *id);
static int vctl_dlq_exec(vctl_t *ctl, int ncmds, redisReply **exec);
static void vctl_dlq_skipped(vctl_t *ctl, vctl_dlq_run_t *run,
    const char *id, const char *reason);
static void vctl_dlq_failed(vctl_t *ctl, vctl_dlq_run_t *run,
    const char *id, const char *fmt, const char *arg);


int
vctl_dlq_replay(vctl_t *ctl)
{
    return vctl_dlq_run(ctl, 0);
}


int
vctl_dlq_purge(vctl_t *ctl)
{
    return vctl_dlq_run(ctl, 1);
}


/*
 * replay and purge: the explicit ids in the order given, or the members
 * of {vq}:dead that the filters select, oldest death first.  A Redis
 * error stops the run; a job missing or not dead is reported and the run
 * goes on.  Exits 1 when an explicit id failed or Redis did.
 */
static int
vctl_dlq_run(vctl_t *ctl, int purge)
{
    int              i, rc, exit_code;
    json_t          *doc;
    size_t           k, n;
    vctl_job_t      *jobs;
    vctl_dlq_run_t   run;

    memset(&run, 0, sizeof(vctl_dlq_run_t));
    run.purge = purge;
    run.verb = purge ? "purged" : "replayed";
    run.done = json_array();
    run.skipped = json_array();
    run.errors = json_array();

    exit_code = VCTL_EXIT_OK;
    jobs = NULL;
    n = 0;

    if (ctl->args->npos > 2) {
        for (i = 2; i < ctl->args->npos; i++) {
            rc = vctl_dlq_one(ctl, &run, ctl->args->pos[i], 1);
            if (rc == VCTL_ERROR) {
                exit_code = VCTL_EXIT_FAIL;
                break;
            }
        }

    } else if (vctl_dlq_select(ctl, &jobs, &n) != VCTL_OK) {
        exit_code = VCTL_EXIT_FAIL;

    } else {
        for (k = 0; k < n; k++) {
            rc = vctl_dlq_one(ctl, &run, jobs[k].id, 0);
            if (rc == VCTL_ERROR) {
                exit_code = VCTL_EXIT_FAIL;
                break;
            }
        }
    }

    if (run.failed) {
        exit_code = VCTL_EXIT_FAIL;
    }

    if (ctl->args->json) {
        doc = json_object();
        json_object_set_new(doc, run.verb, run.done);
        json_object_set_new(doc, "count", json_integer(run.acted));
        json_object_set_new(doc, "skipped", run.skipped);
        json_object_set_new(doc, "failed", run.errors);
        vctl_json_print(doc);

    } else {
        printf("%zu %s\n", run.acted, run.verb);
        json_decref(run.done);
        json_decref(run.skipped);
        json_decref(run.errors);
    }

    for (k = 0; k < n; k++) {
        vctl_job_clear(&jobs[k]);
    }

    free(jobs);

    return exit_code;
}


/*
 * The members of {vq}:dead from --since on (all with --all), oldest
 * first, kept when their job passes --type and --tenant.
 */
static int
vctl_dlq_select(vctl_t *ctl, vctl_job_t **jobs, size_t *n)
{
    char         min[32];
    size_t       i, k;
    redisReply  *r;
    vctl_job_t  *j;

    if (ctl->args->given & VCTL_OPT_SINCE) {
        snprintf(min, sizeof(min), "%lld", (long long) ctl->args->since_ms);

    } else {
        strcpy(min, "-inf");
    }

    r = vctl_redis(ctl, "ZRANGEBYSCORE " VCTL_KEY_DEAD " %s +inf", min);
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        vctl_error("redis: unexpected reply to ZRANGEBYSCORE");
        return VCTL_ERROR;
    }

    j = calloc(r->elements + 1, sizeof(vctl_job_t));
    if (j == NULL) {
        freeReplyObject(r);
        vctl_error("out of memory");
        return VCTL_ERROR;
    }

    for (i = 0, k = 0; i < r->elements; i++) {
        if (r->element[i]->type == REDIS_REPLY_STRING
            && vctl_id_valid(r->element[i]->str))
        {
            memcpy(j[k++].id, r->element[i]->str, VCTL_ID_LEN);
        }
    }

    freeReplyObject(r);

    *jobs = j;
    *n = k;

    if (!(ctl->args->given & (VCTL_OPT_TYPE | VCTL_OPT_TENANT))) {
        return VCTL_OK;
    }

    if (vctl_jobs_fetch(ctl, j, k) != VCTL_OK) {
        return VCTL_ERROR;
    }

    for (i = 0, k = 0; i < *n; i++) {
        if ((ctl->args->type == NULL
             || (j[i].f[VCTL_F_TYPE] != NULL
                 && strcmp(j[i].f[VCTL_F_TYPE], ctl->args->type) == 0))
            && (ctl->args->tenant == NULL
                || (j[i].f[VCTL_F_TENANT] != NULL
                    && strcmp(j[i].f[VCTL_F_TENANT], ctl->args->tenant)
                       == 0)))
        {
            j[k++] = j[i];

        } else {
            vctl_job_clear(&j[i]);
        }
    }

    *n = k;

    return VCTL_OK;
}


/*
 * Replays or purges one job.  Returns VCTL_OK when it acted, VCTL_DECLINED
 * when it skipped or refused the job (recorded in run), VCTL_ERROR when
 * Redis failed (printed).
 */
static int
vctl_dlq_one(vctl_t *ctl, vctl_dlq_run_t *run, const char *id, int explicit)
{
    int           rc;
    char          n[32], state[32];
    json_t       *o;
    long long     attempts;
    redisReply   *r, *exec;
    const char   *reason;

    r = vctl_redis(ctl, "HMGET " VCTL_KEY_JOB "%s state attempts", id);
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        vctl_error("redis: unexpected reply to HMGET");
        return VCTL_ERROR;
    }

    if (r->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);

        if (explicit) {
            vctl_dlq_failed(ctl, run, id, "no job %s", id);
            return VCTL_DECLINED;
        }

        if (!run->purge) {
            vctl_dlq_skipped(ctl, run, id, "in the dead letters, but its "
                             "job hash is gone: only purge can remove it");
            return VCTL_DECLINED;
        }

        /* a member with no job: the purge tidies the zset and history */
        rc = vctl_dlq_claim(ctl, id, 0, &reason);

        if (rc != VCTL_OK) {
            if (rc == VCTL_DECLINED) {
                vctl_dlq_skipped(ctl, run, id, reason);
            }

            return rc;
        }

        if (vctl_dlq_delete(ctl, id) != VCTL_OK) {
            return VCTL_ERROR;
        }

        goto acted;
    }

    snprintf(state, sizeof(state), "%s", r->element[0]->str);

    if (vctl_reply_int(r->element[1], &attempts) != VCTL_OK
        || attempts < 0)
    {
        attempts = -1;
    }

    freeReplyObject(r);

    if (strcmp(state, "dead") != 0) {
        if (explicit) {
            vctl_dlq_failed(ctl, run, id, "job %s is not dead (state \"%s\")",
                            state);
            return VCTL_DECLINED;
        }

        vctl_dlq_skipped(ctl, run, id, "no longer dead: taken by someone "
                         "else meanwhile");
        return VCTL_DECLINED;
    }

    if (!run->purge && attempts < 0) {
        vctl_dlq_failed(ctl, run, id, "job %s has no readable attempts "
                        "field: not replayed", NULL);
        return VCTL_DECLINED;
    }

    rc = vctl_dlq_claim(ctl, id, explicit, &reason);

    if (rc == VCTL_ERROR) {
        return VCTL_ERROR;
    }

    if (rc == VCTL_DECLINED) {
        vctl_dlq_skipped(ctl, run, id, reason);
        return VCTL_DECLINED;
    }

    /*
     * The job is ours and out of {vq}:dead.  Should this process die
     * before EXEC, nothing is lost: the hash and its history are intact
     * and still say "dead"; only dlq list no longer shows the job (jobs
     * list --state dead does), and dlq replay or purge of its id finishes
     * the work, since an explicit id is taken when its hash says dead.
     */

    if (run->purge) {
        if (vctl_dlq_delete(ctl, id) != VCTL_OK) {
            return VCTL_ERROR;
        }

        goto acted;
    }

    snprintf(n, sizeof(n), "%lld", attempts + 1);

    (void) redisAppendCommand(ctl->c, "MULTI");
    (void) redisAppendCommand(ctl->c, "HSET " VCTL_KEY_JOB "%s state queued",
                              id);
    (void) redisAppendCommand(ctl->c, "HDEL " VCTL_KEY_JOB "%s "
                              "next_attempt_ms finished_ms", id);
    (void) redisAppendCommand(ctl->c, "HINCRBY " VCTL_KEY_JOB "%s replays 1",
                              id);
    (void) redisAppendCommand(ctl->c, "XADD " VCTL_KEY_JOBS " * job %s n %s",
                              id, n);
    (void) redisAppendCommand(ctl->c, "INCR " VCTL_KEY_INFLIGHT);

    if (vctl_dlq_exec(ctl, 5, &exec) != VCTL_OK) {
        vctl_error("job %s left out of %s and not replayed: dlq replay %s "
                   "finishes it", id, VCTL_KEY_DEAD, id);
        return VCTL_ERROR;
    }

    o = json_pack("{s:s,s:I,s:s}", "id", id, "attempt",
                  (json_int_t) (attempts + 1), "entry",
                  exec->element[3]->type == REDIS_REPLY_STRING
                  ? exec->element[3]->str : "");
    json_array_append_new(run->done, o);
    freeReplyObject(exec);

    run->acted++;

    if (!ctl->args->json) {
        printf("replayed %s as attempt %s\n", id, n);
    }

    return VCTL_OK;

acted:

    json_array_append_new(run->done, json_pack("{s:s}", "id", id));
    run->acted++;

    if (!ctl->args->json) {
        printf("purged %s\n", id);
    }

    return VCTL_OK;
}


/*
 * Takes the job out of {vq}:dead: VCTL_OK when this caller removed it and
 * so owns the replay or purge, VCTL_DECLINED with a reason when someone
 * else did, VCTL_ERROR when Redis failed.
 *
 * ZREM returning 0 for a job whose hash says dead means either that
 * another replayer or purger is between its ZREM and its EXEC, or that
 * one crashed there.  Ids from a filter came from the zset a moment ago,
 * so it is the former.  For an explicit id, the hash is read again after
 * a pause long enough for a live replayer to finish: still dead means the
 * leftover of a crash, which is then taken over.
 */
static int
vctl_dlq_claim(vctl_t *ctl, const char *id, int explicit,
    const char **reason)
{
    long long    removed;
    redisReply  *r;

    r = vctl_redis(ctl, "ZREM " VCTL_KEY_DEAD " %s", id);
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (vctl_reply_int(r, &removed) != VCTL_OK) {
        removed = 0;
    }

    freeReplyObject(r);

    if (removed == 1) {
        return VCTL_OK;
    }

    if (!explicit) {
        *reason = "replayed or purged by someone else concurrently";
        return VCTL_DECLINED;
    }

    usleep(VCTL_ORPHAN_WAIT_US);

    r = vctl_redis(ctl, "HGET " VCTL_KEY_JOB "%s state", id);
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type != REDIS_REPLY_STRING) {
        *reason = "purged by someone else concurrently";

    } else if (strcmp(r->str, "dead") != 0) {
        *reason = "replayed by someone else concurrently";

    } else {
        *reason = NULL;
    }

    freeReplyObject(r);

    return *reason ? VCTL_DECLINED : VCTL_OK;
}


/*
 * The purge proper, once the claim is ours: the transaction of the
 * worker's retention (WORKER.md), whose ZREM finds nothing after a claim
 * but keeps the two ways of removing a dead job one and the same.
 */
static int
vctl_dlq_delete(vctl_t *ctl, const char *id)
{
    redisReply  *exec;

    (void) redisAppendCommand(ctl->c, "MULTI");
    (void) redisAppendCommand(ctl->c, "DEL " VCTL_KEY_JOB "%s " VCTL_KEY_ATT
                              "%s", id, id);
    (void) redisAppendCommand(ctl->c, "ZREM " VCTL_KEY_DEAD " %s", id);

    if (vctl_dlq_exec(ctl, 2, &exec) != VCTL_OK) {
        vctl_error("job %s left out of %s and not purged: dlq purge %s "
                   "finishes it", id, VCTL_KEY_DEAD, id);
        return VCTL_ERROR;
    }

    freeReplyObject(exec);

    return VCTL_OK;
}


/*
 * Sends EXEC after MULTI and ncmds commands appended by the caller, and
 * reads every reply.  Returns VCTL_OK with *exec, EXEC's array (to be
 * freed), holding no error; VCTL_ERROR after printing why.
 */
static int
vctl_dlq_exec(vctl_t *ctl, int ncmds, redisReply **exec)
{
    int          i, rc;
    size_t       k;
    redisReply  *r;

    *exec = NULL;
    rc = VCTL_OK;

    if (redisAppendCommand(ctl->c, "EXEC") != REDIS_OK) {
        vctl_error("redis: %s", ctl->c->errstr);
        return VCTL_ERROR;
    }

    /* +OK for MULTI, +QUEUED for each command, then EXEC's array */
    for (i = 0; i < ncmds + 2; i++) {
        r = vctl_redis_get(ctl);

        if (r == NULL) {
            if (ctl->c->err) {
                return VCTL_ERROR;
            }

            rc = VCTL_ERROR;
            continue;
        }

        if (i == ncmds + 1) {
            *exec = r;

        } else {
            freeReplyObject(r);
        }
    }

    if (rc != VCTL_OK || *exec == NULL) {
        if (*exec != NULL) {
            freeReplyObject(*exec);
            *exec = NULL;
        }

        return VCTL_ERROR;
    }

    r = *exec;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t) ncmds) {
        vctl_error("redis: the transaction was not run");
        freeReplyObject(r);
        *exec = NULL;
        return VCTL_ERROR;
    }

    for (k = 0; k < r->elements; k++) {
        if (r->element[k]->type == REDIS_REPLY_ERROR) {
            vctl_error("redis: %s", r->element[k]->str);
            freeReplyObject(r);
            *exec = NULL;
            return VCTL_ERROR;
        }
    }

    return VCTL_OK;
}


static void
vctl_dlq_skipped(vctl_t *ctl, vctl_dlq_run_t *run, const char *id,
    const char *reason)
{
    json_array_append_new(run->skipped,
                          json_pack("{s:s,s:s}", "id", id, "reason", reason));

    vctl_error("skipped %s: %s", id, reason);
}


/* fmt holds the id's %s first, then at most one more %s: arg */
static void
vctl_dlq_failed(vctl_t *ctl, vctl_dlq_run_t *run, const char *id,
    const char *fmt, const char *arg)
{
    char  msg[VCTL_ERRSTR_LEN];

    snprintf(msg, sizeof(msg), fmt, id, arg ? arg : "");

    json_array_append_new(run->errors,
                          json_pack("{s:s,s:s}", "id", id, "error", msg));
    run->failed++;

    vctl_error("%s", msg);
}


/*
 * dlq skip: a dead ordered job under on_dead=block stays the head of its
 * ordering list and holds up every job behind it.  LREM takes it out (it
 * stays in the dead letters), then the new head is woken as the worker
 * wakes it after an LPOP: its member <id>:<attempts+1> in {vq}:delayed,
 * due now.  ZADD of a member already there only moves it.
 */
int
vctl_dlq_skip(vctl_t *ctl)
{
    int           rc;
    char          ord[128], head[VCTL_ID_LEN + 1], member[64], iso[32];
    json_t       *doc;
    int64_t       now;
    long long     attempts;
    redisReply   *r;
    const char   *id, *woke_state;

    id = ctl->args->pos[2];
    rc = VCTL_EXIT_FAIL;
    head[0] = '\0';
    member[0] = '\0';
    woke_state = NULL;

    r = vctl_redis(ctl, "HMGET " VCTL_KEY_JOB "%s state ordering_key", id);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        freeReplyObject(r);
        vctl_error("redis: unexpected reply to HMGET");
        return rc;
    }

    if (r->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        vctl_error("no job %s", id);
        return rc;
    }

    if (strcmp(r->element[0]->str, "dead") != 0) {
        vctl_error("job %s is not dead (state \"%.32s\"): only a dead job "
                   "can be skipped", id, r->element[0]->str);
        freeReplyObject(r);
        return rc;
    }

    if (r->element[1]->type != REDIS_REPLY_STRING
        || r->element[1]->len == 0 || r->element[1]->len > 64)
    {
        freeReplyObject(r);
        vctl_error("job %s has no ordering key: nothing waits behind it", id);
        return rc;
    }

    snprintf(ord, sizeof(ord), VCTL_KEY_ORD "%s", r->element[1]->str);
    freeReplyObject(r);

    r = vctl_redis(ctl, "LREM %s 1 %s", ord, id);
    if (r == NULL) {
        return rc;
    }

    if (vctl_reply_int(r, &attempts) != VCTL_OK || attempts != 1) {
        freeReplyObject(r);
        vctl_error("job %s is not in %s: skipped already, or its type "
                   "proceeds on death", id, ord);
        return rc;
    }

    freeReplyObject(r);

    if (!ctl->args->json) {
        printf("skipped %s in %s (it stays in the dead letters)\n", id, ord);
    }

    r = vctl_redis(ctl, "LINDEX %s 0", ord);
    if (r == NULL) {
        return rc;
    }

    if (r->type == REDIS_REPLY_STRING && vctl_id_valid(r->str)) {
        memcpy(head, r->str, VCTL_ID_LEN + 1);
    }

    freeReplyObject(r);

    if (head[0] != '\0') {
        r = vctl_redis(ctl, "HMGET " VCTL_KEY_JOB "%s state attempts", head);
        if (r == NULL) {
            return rc;
        }

        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
            || r->element[0]->type != REDIS_REPLY_STRING)
        {
            woke_state = "gone";

        } else if (strcmp(r->element[0]->str, "dead") == 0) {
            /* a dead head holds the list up as well: it needs a skip too */
            woke_state = "dead";

        } else if (vctl_reply_int(r->element[1], &attempts) != VCTL_OK) {
            woke_state = "unreadable";

        } else {
            snprintf(member, sizeof(member), "%s:%lld", head, attempts + 1);
        }

        freeReplyObject(r);
    }

    now = vctl_now_ms();

    if (member[0] != '\0') {
        r = vctl_redis(ctl, "ZADD " VCTL_KEY_DELAYED " %lld %s",
                       (long long) now, member);
        if (r == NULL) {
            return rc;
        }

        freeReplyObject(r);
    }

    if (ctl->args->json) {
        doc = json_pack("{s:s,s:s,s:o,s:o}", "skipped", id, "list", ord,
                        "head", head[0] ? json_string(head) : json_null(),
                        "woke", member[0] ? json_string(member)
                                          : json_null());
        vctl_json_print(doc);

    } else if (member[0] != '\0') {
        vctl_iso(now, iso, sizeof(iso));
        printf("woke %s: %s due %s\n", head, member, iso);

    } else if (head[0] == '\0') {
        printf("no job waits in %s\n", ord);

    } else {
        printf("woke nothing: the new head %s is %s%s\n", head, woke_state,
               strcmp(woke_state, "dead") == 0 ? " (skip it too)" : "");
    }

    return VCTL_EXIT_OK;
}
