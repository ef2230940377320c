/* ctl_jobs.c -- vantagectl: listing and showing jobs and dead letters */

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "vantagectl.h"


/* read in one pipelined batch: enough to hide the round trips */
#define VCTL_BATCH  500


/* the order of vctl_job_t's f[], VCTL_F_* */
const char  *vctl_summary_fields[VCTL_F_N] = {
    "type", "tenant", "state", "attempts", "created_ms", "next_attempt_ms",
    "last_error", "last_status", "finished_ms", "replays"
};


/* the fields of a job in the order jobs show prints them; others follow */
static const char  *vctl_show_order[] = {
    "type", "tenant", "state", "attempts", "replays", "created_ms",
    "start_ms", "next_attempt_ms", "finished_ms", "last_status",
    "last_error", "result", "subject", "idempotency_key", "correlation_id",
    "ordering_key", "method", "uri", "headers", "body", NULL
};


/* the headers whose values are credentials */
static const char  *vctl_secret_headers[] = {
    "authorization", "proxy-authorization", "cookie", "x-api-key", NULL
};


typedef struct {
    const char                 *name;
    size_t                      name_len;
    const char                 *value;
    size_t                      value_len;
    int                         rank;
} vctl_field_t;


static int vctl_list_cmp(const void *a, const void *b);
static int vctl_dead_cmp(const void *a, const void *b);
static void vctl_list_print(vctl_t *ctl, vctl_job_t *jobs, size_t n,
    size_t matched, int dead);
static int vctl_show(vctl_t *ctl, int dead_only);
static int vctl_field_cmp(const void *a, const void *b);
static json_t *vctl_headers_masked(const char *s, size_t len);
static void vctl_sha256_hex(const char *s, size_t len, char *hex);
static int64_t vctl_field_int(const char *s);


/*
 * Reads the summary fields of n jobs (their ids set) in pipelined HMGETs.
 * A job whose hash is gone keeps every f[] NULL.  Returns VCTL_OK, or
 * VCTL_ERROR after printing why.
 */
int
vctl_jobs_fetch(vctl_t *ctl, vctl_job_t *jobs, size_t n)
{
    int          j;
    size_t       i;
    redisReply  *r, *e;
    const char  *argv[2 + VCTL_F_N];
    char         key[64];

    argv[0] = "HMGET";
    argv[1] = key;

    for (j = 0; j < VCTL_F_N; j++) {
        argv[2 + j] = vctl_summary_fields[j];
    }

    for (i = 0; i < n; i++) {
        snprintf(key, sizeof(key), VCTL_KEY_JOB "%s", jobs[i].id);

        if (redisAppendCommandArgv(ctl->c, 2 + VCTL_F_N, argv, NULL)
            != REDIS_OK)
        {
            vctl_error("redis: %s", ctl->c->errstr);
            return VCTL_ERROR;
        }
    }

    for (i = 0; i < n; i++) {
        r = vctl_redis_get(ctl);
        if (r == NULL) {
            return VCTL_ERROR;
        }

        if (r->type != REDIS_REPLY_ARRAY || r->elements != VCTL_F_N) {
            freeReplyObject(r);
            vctl_error("redis: unexpected reply to HMGET");
            return VCTL_ERROR;
        }

        for (j = 0; j < VCTL_F_N; j++) {
            e = r->element[j];
            jobs[i].f[j] = (e->type == REDIS_REPLY_STRING)
                           ? strndup(e->str, e->len) : NULL;
        }

        jobs[i].created_ms = vctl_field_int(jobs[i].f[VCTL_F_CREATED]);

        freeReplyObject(r);
    }

    return VCTL_OK;
}


void
vctl_job_clear(vctl_job_t *job)
{
    int  j;

    for (j = 0; j < VCTL_F_N; j++) {
        free(job->f[j]);
        job->f[j] = NULL;
    }
}


static int64_t
vctl_field_int(const char *s)
{
    long long  n;

    return (s != NULL && vctl_parse_int(s, &n) == VCTL_OK) ? n : -1;
}


/* whether a job read by vctl_jobs_fetch() passes --state/--type/--tenant */
static int
vctl_job_selected(const vctl_args_t *args, const vctl_job_t *job)
{
    const char  *want[3], *have[3];
    int          i;

    want[0] = args->state;
    have[0] = job->f[VCTL_F_STATE];
    want[1] = args->type;
    have[1] = job->f[VCTL_F_TYPE];
    want[2] = args->tenant;
    have[2] = job->f[VCTL_F_TENANT];

    for (i = 0; i < 3; i++) {
        if (want[i] != NULL && (have[i] == NULL || strcmp(want[i], have[i])))
        {
            return 0;
        }
    }

    return 1;
}


/*
 * jobs list: SCAN for {vq}:job:<32 hex> (the pattern alone would match
 * any suffix), read each job's summary, keep those the filters select,
 * newest first.  SCAN may return a key twice, so the sorted list drops
 * repeats.
 */
int
vctl_jobs_list(vctl_t *ctl)
{
    int          rc;
    char         cursor[32];
    size_t       i, k, n, nalloc, first, prefix;
    redisReply  *r, *keys, *e;
    vctl_job_t  *jobs, *p;

    prefix = sizeof(VCTL_KEY_JOB) - 1;
    jobs = NULL;
    n = 0;
    nalloc = 0;
    rc = VCTL_EXIT_FAIL;
    strcpy(cursor, "0");

    do {
        r = vctl_redis(ctl, "SCAN %s MATCH %s COUNT 1000", cursor,
                       VCTL_KEY_JOB "*");
        if (r == NULL) {
            goto done;
        }

        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
            || r->element[0]->type != REDIS_REPLY_STRING
            || r->element[1]->type != REDIS_REPLY_ARRAY)
        {
            freeReplyObject(r);
            vctl_error("redis: unexpected reply to SCAN");
            goto done;
        }

        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
        keys = r->element[1];
        first = n;

        for (k = 0; k < keys->elements; k++) {
            e = keys->element[k];

            if (e->type != REDIS_REPLY_STRING
                || e->len != prefix + VCTL_ID_LEN
                || !vctl_id_valid(e->str + prefix))
            {
                continue;
            }

            if (n == nalloc) {
                nalloc = nalloc ? nalloc * 2 : 256;
                p = realloc(jobs, nalloc * sizeof(vctl_job_t));
                if (p == NULL) {
                    freeReplyObject(r);
                    vctl_error("out of memory");
                    goto done;
                }

                jobs = p;
            }

            memset(&jobs[n], 0, sizeof(vctl_job_t));
            memcpy(jobs[n].id, e->str + prefix, VCTL_ID_LEN);
            n++;
        }

        freeReplyObject(r);

        if (vctl_jobs_fetch(ctl, jobs + first, n - first) != VCTL_OK) {
            goto done;
        }

        /* keep only what the filters select: memory stays at the matches */
        for (i = first, k = first; i < n; i++) {
            if (jobs[i].f[VCTL_F_STATE] != NULL
                && vctl_job_selected(ctl->args, &jobs[i]))
            {
                jobs[k++] = jobs[i];

            } else {
                vctl_job_clear(&jobs[i]);
            }
        }

        n = k;

    } while (strcmp(cursor, "0") != 0);

    if (n > 0) {
        qsort(jobs, n, sizeof(vctl_job_t), vctl_list_cmp);
    }

    for (i = 0, k = 0; i < n; i++) {
        if (k > 0 && strcmp(jobs[k - 1].id, jobs[i].id) == 0) {
            vctl_job_clear(&jobs[i]);
            continue;
        }

        jobs[k++] = jobs[i];
    }

    n = k;

    vctl_list_print(ctl, jobs, n < (size_t) ctl->args->limit
                                   ? n : (size_t) ctl->args->limit, n, 0);
    rc = VCTL_EXIT_OK;

done:

    for (i = 0; i < n; i++) {
        vctl_job_clear(&jobs[i]);
    }

    free(jobs);

    return rc;
}


/* newest first; the id breaks ties, so that repeats end up side by side */
static int
vctl_list_cmp(const void *a, const void *b)
{
    const vctl_job_t  *x = a, *y = b;

    if (x->created_ms != y->created_ms) {
        return x->created_ms > y->created_ms ? -1 : 1;
    }

    return strcmp(x->id, y->id);
}


static int
vctl_dead_cmp(const void *a, const void *b)
{
    const vctl_job_t  *x = a, *y = b;

    if (x->dead_ms != y->dead_ms) {
        return x->dead_ms > y->dead_ms ? -1 : 1;
    }

    return strcmp(x->id, y->id);
}


/*
 * dlq list: {vq}:dead from the most recent death back to --since, in
 * pages, until --limit jobs pass the filters (and one more, to tell
 * whether the list was cut).
 */
int
vctl_dlq_list(vctl_t *ctl)
{
    int          rc;
    char         min[32], off[32];
    size_t       i, k, n, want, offset, page, end;
    redisReply  *r;
    vctl_job_t  *jobs;

    want = (size_t) ctl->args->limit + 1;
    rc = VCTL_EXIT_FAIL;
    n = 0;
    offset = 0;

    jobs = calloc(want + VCTL_BATCH, sizeof(vctl_job_t));
    if (jobs == NULL) {
        vctl_error("out of memory");
        return rc;
    }

    if (ctl->args->given & VCTL_OPT_SINCE) {
        snprintf(min, sizeof(min), "%lld", (long long) ctl->args->since_ms);

    } else {
        strcpy(min, "-inf");
    }

    while (n < want) {
        /* hiredis's format knows no %zu */
        snprintf(off, sizeof(off), "%zu", offset);

        r = vctl_redis(ctl, "ZREVRANGEBYSCORE %s +inf %s WITHSCORES "
                       "LIMIT %s %d", VCTL_KEY_DEAD, min, off, VCTL_BATCH);
        if (r == NULL) {
            goto done;
        }

        if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
            freeReplyObject(r);
            vctl_error("redis: unexpected reply to ZREVRANGEBYSCORE");
            goto done;
        }

        page = 0;

        for (i = 0; i < r->elements; i += 2) {
            if (r->element[i]->type != REDIS_REPLY_STRING
                || !vctl_id_valid(r->element[i]->str))
            {
                continue;
            }

            memset(&jobs[n + page], 0, sizeof(vctl_job_t));
            memcpy(jobs[n + page].id, r->element[i]->str, VCTL_ID_LEN);
            jobs[n + page].dead_ms =
                (int64_t) strtod(r->element[i + 1]->str, NULL);
            page++;
        }

        offset += r->elements / 2;
        k = r->elements;
        freeReplyObject(r);

        if (vctl_jobs_fetch(ctl, jobs + n, page) != VCTL_OK) {
            n += page;
            goto done;
        }

        /*
         * a member whose hash is gone is shown (as "-") while no filter
         * asks for a type or a tenant: the DLQ should not hide it
         */
        end = n + page;

        for (i = n; i < end; i++) {
            if (n < want && vctl_job_selected(ctl->args, &jobs[i])) {
                jobs[n++] = jobs[i];

            } else {
                vctl_job_clear(&jobs[i]);
            }
        }

        if (k < 2 * VCTL_BATCH) {
            break;
        }
    }

    qsort(jobs, n, sizeof(vctl_job_t), vctl_dead_cmp);

    vctl_list_print(ctl, jobs, n < want ? n : want - 1, n, 1);
    rc = VCTL_EXIT_OK;

done:

    for (i = 0; i < n; i++) {
        vctl_job_clear(&jobs[i]);
    }

    free(jobs);

    return rc;
}


/*
 * Prints the first n jobs; matched is how many passed the filters (for
 * dlq list, limit + 1 when there were more).
 */
static void
vctl_list_print(vctl_t *ctl, vctl_job_t *jobs, size_t n, size_t matched,
    int dead)
{
    char            created[32], next[32], died[32], err[64];
    size_t          i;
    json_t         *doc, *arr, *o;
    int64_t         v;
    const char     *row[8], *e;
    vctl_table_t    t;
    vctl_job_t     *job;

    if (ctl->args->json) {
        doc = json_object();
        arr = json_array();

        for (i = 0; i < n; i++) {
            job = &jobs[i];
            o = json_object();

            json_object_set_new(o, "id", json_string(job->id));
            json_object_set_new(o, "type",
                vctl_json_text(job->f[VCTL_F_TYPE],
                    job->f[VCTL_F_TYPE] ? strlen(job->f[VCTL_F_TYPE]) : 0));
            json_object_set_new(o, "tenant",
                vctl_json_text(job->f[VCTL_F_TENANT],
                    job->f[VCTL_F_TENANT]
                    ? strlen(job->f[VCTL_F_TENANT]) : 0));
            json_object_set_new(o, "state",
                vctl_json_text(job->f[VCTL_F_STATE],
                    job->f[VCTL_F_STATE] ? strlen(job->f[VCTL_F_STATE]) : 0));

            v = vctl_field_int(job->f[VCTL_F_ATTEMPTS]);
            json_object_set_new(o, "attempts",
                                v >= 0 ? json_integer(v) : json_null());

            if (dead) {
                vctl_iso(job->dead_ms, died, sizeof(died));
                json_object_set_new(o, "died_ms", json_integer(job->dead_ms));
                json_object_set_new(o, "died", json_string(died));

                v = vctl_field_int(job->f[VCTL_F_REPLAYS]);
                json_object_set_new(o, "replays",
                                    json_integer(v >= 0 ? v : 0));
            }

            v = job->created_ms;
            vctl_iso(v, created, sizeof(created));
            json_object_set_new(o, "created_ms",
                                v >= 0 ? json_integer(v) : json_null());
            json_object_set_new(o, "created",
                                v >= 0 ? json_string(created) : json_null());

            if (!dead) {
                v = vctl_field_int(job->f[VCTL_F_NEXT]);
                vctl_iso(v, next, sizeof(next));
                json_object_set_new(o, "next_attempt_ms",
                                    v >= 0 ? json_integer(v) : json_null());
                json_object_set_new(o, "next_attempt",
                                    v >= 0 ? json_string(next) : json_null());
            }

            v = vctl_field_int(job->f[VCTL_F_LAST_STATUS]);
            json_object_set_new(o, "last_status",
                                v >= 0 ? json_integer(v) : json_null());

            e = job->f[VCTL_F_LAST_ERROR];
            json_object_set_new(o, "last_error",
                                vctl_json_text(e, e ? strlen(e) : 0));

            json_array_append_new(arr, o);
        }

        json_object_set_new(doc, dead ? "dead" : "jobs", arr);
        json_object_set_new(doc, "count", json_integer(n));
        json_object_set_new(doc, "truncated", json_boolean(matched > n));

        if (!dead) {
            json_object_set_new(doc, "matched", json_integer(matched));
        }

        vctl_json_print(doc);
        return;
    }

    vctl_table_init(&t, dead ? 7 : 8);

    row[0] = "ID";
    row[1] = "TYPE";
    row[2] = "TENANT";

    if (dead) {
        row[3] = "DIED";
        row[4] = "ATTEMPTS";
        row[5] = "LAST_STATUS";
        row[6] = "LAST_ERROR";

    } else {
        row[3] = "STATE";
        row[4] = "ATTEMPTS";
        row[5] = "CREATED";
        row[6] = "NEXT_ATTEMPT";
        row[7] = "LAST_ERROR";
    }

    vctl_table_add(&t, row);

    for (i = 0; i < n; i++) {
        job = &jobs[i];

        /* a vendor's error may be long: the table shows its start */
        e = job->f[VCTL_F_LAST_ERROR];

        if (e != NULL && strlen(e) > 60) {
            snprintf(err, sizeof(err), "%.57s...", e);
            e = err;
        }

        row[0] = job->id;
        row[1] = job->f[VCTL_F_TYPE];
        row[2] = job->f[VCTL_F_TENANT];
        row[4] = job->f[VCTL_F_ATTEMPTS];

        if (dead) {
            vctl_iso(job->dead_ms, died, sizeof(died));
            row[3] = died;
            row[5] = job->f[VCTL_F_LAST_STATUS];
            row[6] = e;

        } else {
            vctl_iso(job->created_ms, created, sizeof(created));
            vctl_iso(vctl_field_int(job->f[VCTL_F_NEXT]), next, sizeof(next));
            row[3] = job->f[VCTL_F_STATE];
            row[5] = created;
            row[6] = next;
            row[7] = e;
        }

        vctl_table_add(&t, row);
    }

    vctl_table_print(&t);
    vctl_table_free(&t);

    if (matched > n) {
        if (dead) {
            printf("(%zu shown, more match: raise --limit)\n", n);

        } else {
            printf("(%zu of %zu shown: raise --limit)\n", n, matched);
        }
    }
}


int
vctl_jobs_show(vctl_t *ctl)
{
    return vctl_show(ctl, 0);
}


int
vctl_dlq_show(vctl_t *ctl)
{
    return vctl_show(ctl, 1);
}


/*
 * jobs show / dlq show: the job hash, every field, in a fixed order; the
 * body as its length and sha256 unless --body; credentials in headers
 * masked; then the attempt history, one JSON object per element.
 */
static int
vctl_show(vctl_t *ctl, int dead_only)
{
    int              rc, i, raw;
    char             sha[65], iso[32], *s;
    size_t           k, n, width;
    json_t          *doc, *fields, *hist, *h, *j;
    int64_t          v;
    const char      *id, *state;
    redisReply      *r, *att, *score;
    vctl_field_t    *f;
    json_error_t     jerr;

    id = ctl->args->pos[2];
    raw = (ctl->args->given & VCTL_OPT_BODY) != 0;
    rc = VCTL_EXIT_FAIL;
    att = NULL;
    score = NULL;
    f = NULL;

    r = vctl_redis(ctl, "HGETALL " VCTL_KEY_JOB "%s", id);
    if (r == NULL) {
        return rc;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
        vctl_error("redis: unexpected reply to HGETALL");
        goto done;
    }

    if (r->elements == 0) {
        vctl_error("no job %s", id);
        goto done;
    }

    n = r->elements / 2;
    f = calloc(n, sizeof(vctl_field_t));
    if (f == NULL) {
        vctl_error("out of memory");
        goto done;
    }

    state = "";

    for (k = 0; k < n; k++) {
        f[k].name = r->element[2 * k]->str;
        f[k].name_len = r->element[2 * k]->len;
        f[k].value = r->element[2 * k + 1]->str;
        f[k].value_len = r->element[2 * k + 1]->len;

        for (i = 0; vctl_show_order[i] != NULL; i++) {
            if (strcmp(f[k].name, vctl_show_order[i]) == 0) {
                break;
            }
        }

        f[k].rank = i;

        if (strcmp(f[k].name, "state") == 0) {
            state = f[k].value;
        }
    }

    qsort(f, n, sizeof(vctl_field_t), vctl_field_cmp);

    if (dead_only && strcmp(state, "dead") != 0) {
        vctl_error("job %s is not dead (state \"%.32s\")", id, state);
        goto done;
    }

    att = vctl_redis(ctl, "LRANGE " VCTL_KEY_ATT "%s 0 -1", id);
    if (att == NULL) {
        goto done;
    }

    if (att->type != REDIS_REPLY_ARRAY) {
        vctl_error("redis: %s%s is not a list", VCTL_KEY_ATT, id);
        goto done;
    }

    if (dead_only) {
        score = vctl_redis(ctl, "ZSCORE " VCTL_KEY_DEAD " %s", id);
        if (score == NULL) {
            goto done;
        }
    }

    if (ctl->args->json) {
        doc = json_object();
        fields = json_object();

        json_object_set_new(doc, "id", json_string(id));

        for (k = 0; k < n; k++) {
            s = strndup(f[k].name, f[k].name_len);
            if (s == NULL) {
                continue;
            }

            if (strcmp(s, "headers") == 0) {
                j = vctl_headers_masked(f[k].value, f[k].value_len);
                if (j == NULL) {
                    j = json_pack("{s:s,s:i}", "unparsed", "not shown",
                                  "length", (json_int_t) f[k].value_len);
                }

            } else if (strcmp(s, "body") == 0 && !raw) {
                vctl_sha256_hex(f[k].value, f[k].value_len, sha);
                j = json_pack("{s:I,s:s}", "length",
                              (json_int_t) f[k].value_len, "sha256", sha);

            } else {
                j = json_stringn(f[k].value, f[k].value_len);

                if (j == NULL && strcmp(s, "body") == 0) {
                    /* a raw body that is not UTF-8 travels as base64 */
                    char  *b64 = malloc(4 * (f[k].value_len / 3 + 1) + 1);

                    if (b64 != NULL) {
                        EVP_EncodeBlock((unsigned char *) b64,
                                        (const unsigned char *) f[k].value,
                                        (int) f[k].value_len);
                        j = json_pack("{s:s}", "base64", b64);
                        free(b64);
                    }
                }

                if (j == NULL) {
                    j = vctl_json_text(f[k].value, f[k].value_len);
                }
            }

            json_object_set_new(fields, s, j);
            free(s);
        }

        json_object_set_new(doc, "fields", fields);

        if (dead_only) {
            json_object_set_new(doc, "in_dead_letters",
                                json_boolean(score->type
                                             == REDIS_REPLY_STRING));
            json_object_set_new(doc, "died_ms",
                score->type == REDIS_REPLY_STRING
                ? json_integer((json_int_t) strtod(score->str, NULL))
                : json_null());
        }

        hist = json_array();

        for (k = 0; k < att->elements; k++) {
            h = json_loadb(att->element[k]->str, att->element[k]->len, 0,
                           &jerr);
            if (h == NULL) {
                h = vctl_json_text(att->element[k]->str,
                                   att->element[k]->len);
            }

            json_array_append_new(hist, h);
        }

        json_object_set_new(doc, "history", hist);
        vctl_json_print(doc);

        rc = VCTL_EXIT_OK;
        goto done;
    }

    printf("job %s\n", id);

    width = 0;
    for (k = 0; k < n; k++) {
        width = f[k].name_len > width ? f[k].name_len : width;
    }

    for (k = 0; k < n; k++) {
        if (strcmp(f[k].name, "body") == 0 && raw) {
            continue;
        }

        printf("  ");
        vctl_print_safe(stdout, f[k].name, f[k].name_len);
        printf("%*s", (int) (width - f[k].name_len + 2), "");

        if (strcmp(f[k].name, "body") == 0) {
            vctl_sha256_hex(f[k].value, f[k].value_len, sha);
            printf("%zu bytes, sha256 %s\n", f[k].value_len, sha);
            continue;
        }

        if (strcmp(f[k].name, "headers") == 0) {
            j = vctl_headers_masked(f[k].value, f[k].value_len);

            if (j == NULL) {
                printf("(not a JSON list of pairs: %zu bytes, not shown)\n",
                       f[k].value_len);
                continue;
            }

            s = json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII);
            json_decref(j);

            if (s != NULL) {
                vctl_print_safe(stdout, s, strlen(s));
                free(s);
            }

            fputc('\n', stdout);
            continue;
        }

        vctl_print_safe(stdout, f[k].value, f[k].value_len);

        /* times are stored as ms since the epoch: show them readable too */
        if (f[k].name_len > 3
            && strcmp(f[k].name + f[k].name_len - 3, "_ms") == 0
            && (v = vctl_field_int(f[k].value)) > 0)
        {
            vctl_iso(v, iso, sizeof(iso));
            printf(" (%s)", iso);
        }

        fputc('\n', stdout);
    }

    if (dead_only) {
        if (score->type == REDIS_REPLY_STRING) {
            vctl_iso((int64_t) strtod(score->str, NULL), iso, sizeof(iso));
            printf("died %s\n", iso);

        } else {
            printf("not in %s: a replay or purge stopped half-way; "
                   "dlq replay %s finishes it\n", VCTL_KEY_DEAD, id);
        }
    }

    printf("history (%zu attempt%s)\n", att->elements,
           att->elements == 1 ? "" : "s");

    for (k = 0; k < att->elements; k++) {
        printf("  ");
        vctl_print_safe(stdout, att->element[k]->str, att->element[k]->len);
        fputc('\n', stdout);
    }

    if (raw) {
        for (k = 0; k < n; k++) {
            if (strcmp(f[k].name, "body") == 0) {
                /* asked for explicitly: the bytes as stored, unmasked */
                printf("body (%zu bytes, raw)\n", f[k].value_len);
                fwrite(f[k].value, 1, f[k].value_len, stdout);
                fputc('\n', stdout);
            }
        }
    }

    rc = VCTL_EXIT_OK;

done:

    free(f);
    freeReplyObject(r);

    if (att != NULL) {
        freeReplyObject(att);
    }

    if (score != NULL) {
        freeReplyObject(score);
    }

    return rc;
}


static int
vctl_field_cmp(const void *a, const void *b)
{
    const vctl_field_t  *x = a, *y = b;

    if (x->rank != y->rank) {
        return x->rank - y->rank;
    }

    return strcmp(x->name, y->name);
}


/*
 * The headers field ([[name, value], ...]) with the values of credential
 * headers replaced by "***"; NULL when it is not that shape, so that the
 * caller shows nothing of it rather than a secret.
 */
static json_t *
vctl_headers_masked(const char *s, size_t len)
{
    int            i;
    size_t         k;
    json_t        *a, *pair, *name;
    json_error_t   err;

    a = json_loadb(s, len, 0, &err);
    if (a == NULL) {
        return NULL;
    }

    if (!json_is_array(a)) {
        json_decref(a);
        return NULL;
    }

    json_array_foreach(a, k, pair) {
        name = json_array_get(pair, 0);

        if (!json_is_array(pair) || json_array_size(pair) != 2
            || !json_is_string(name))
        {
            json_decref(a);
            return NULL;
        }

        for (i = 0; vctl_secret_headers[i] != NULL; i++) {
            if (strcasecmp(json_string_value(name), vctl_secret_headers[i])
                == 0)
            {
                json_array_set_new(pair, 1, json_string("***"));
                break;
            }
        }
    }

    return a;
}


static void
vctl_sha256_hex(const char *s, size_t len, char *hex)
{
    unsigned       i, n;
    unsigned char  md[EVP_MAX_MD_SIZE];

    n = 0;

    if (EVP_Digest(s, len, md, &n, EVP_sha256(), NULL) != 1) {
        n = 0;
    }

    for (i = 0; i < n; i++) {
        sprintf(hex + 2 * i, "%02x", md[i]);
    }

    hex[2 * n] = '\0';
}
