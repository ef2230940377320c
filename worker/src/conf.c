/* conf.c -- a stand-in loader for the tests of the engine (see wt-conf) */

/*
 * The real loader is written on branch wt-conf; this one reads the same
 * INI shape with no validation, so that the engine's tests can run before
 * it lands.  The merge replaces this file with that one.
 */

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "vw_conf.h"


static char *
vw_conf_trim(char *s)
{
    char  *e;

    while (isspace((unsigned char) *s)) {
        s++;
    }

    e = s + strlen(s);

    while (e > s && isspace((unsigned char) e[-1])) {
        *--e = '\0';
    }

    return s;
}


static uint64_t
vw_conf_ms(const char *v)
{
    char     *end;
    double    n;

    n = strtod(v, &end);

    if (strcmp(end, "ms") == 0) {
        return (uint64_t) n;
    }

    switch (*end) {
    case 's': return (uint64_t) (n * 1000);
    case 'm': return (uint64_t) (n * 60000);
    case 'h': return (uint64_t) (n * 3600000);
    case 'd': return (uint64_t) (n * 86400000);
    default:  return (uint64_t) (n * 1000);
    }
}


static vw_conf_target_t *
vw_conf_target_new(vw_conf_t *conf, const char *name)
{
    vw_conf_target_t  *t;

    for (t = conf->targets; t != NULL; t = t->next) {
        if (strcmp(t->name, name) == 0) {
            return t;
        }
    }

    t = calloc(1, sizeof(vw_conf_target_t));
    t->name = strdup(name);
    t->max_concurrency = 8;
    t->breaker_failures = 5;
    t->breaker_error_rate = 50;
    t->breaker_window_ms = 30000;
    t->breaker_min_calls = 20;
    t->breaker_cooldown_ms = 30000;
    t->next = conf->targets;
    conf->targets = t;

    return t;
}


vw_conf_t *
vw_conf_load(const char *file, char *err, size_t errlen)
{
    FILE               *f;
    char                line[2048], *p, *k, *v, *c, tname[256];
    vw_conf_t          *conf;
    vw_conf_job_t      *job, *j;
    vw_conf_target_t   *target;
    vw_conf_header_t   *h, **hp;

    f = fopen(file, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: cannot open", file);
        return NULL;
    }

    conf = calloc(1, sizeof(vw_conf_t));
    conf->file = strdup(file);
    conf->concurrency = 64;
    conf->visibility_timeout_ms = 60000;
    conf->inflight_cap = 100000;
    conf->idempotency_window_ms = 86400000;
    conf->done_retention_ms = 86400000;
    conf->dead_retention_ms = 14 * 86400000ULL;
    conf->ordering_recheck_ms = 1000;
    conf->shutdown_timeout_ms = 20000;
    conf->max_frame = 16 * 1024 * 1024 + 64 * 1024;

    job = NULL;
    target = NULL;

    while (fgets(line, sizeof(line), f) != NULL) {
        c = strchr(line, '#');
        if (c != NULL) {
            *c = '\0';
        }

        p = vw_conf_trim(line);

        if (*p == '\0') {
            continue;
        }

        if (*p == '[') {
            job = NULL;
            target = NULL;
            p[strlen(p) - 1] = '\0';
            p = vw_conf_trim(p + 1);

            if (strncmp(p, "job ", 4) == 0) {
                job = calloc(1, sizeof(vw_conf_job_t));
                job->type = strdup(vw_conf_trim(p + 4));
                job->method = strdup("POST");
                job->timeout_ms = 10000;
                job->max_attempts = 8;
                job->max_age_ms = 86400000;
                job->backoff_base_ms = 1000;
                job->backoff_cap_ms = 300000;
                job->next = conf->jobs;
                conf->jobs = job;

            } else if (strncmp(p, "target ", 7) == 0) {
                target = vw_conf_target_new(conf, vw_conf_trim(p + 7));
            }

            continue;
        }

        v = strchr(p, '=');
        if (v == NULL) {
            continue;
        }

        *v++ = '\0';
        k = vw_conf_trim(p);
        v = vw_conf_trim(v);

        if (job != NULL) {
            if (strcmp(k, "connector") == 0) {
                job->connector = strdup(v);
            } else if (strcmp(k, "target") == 0) {
                snprintf(tname, sizeof(tname), "%s", v);
                job->target = vw_conf_target_new(conf, tname);
            } else if (strcmp(k, "url") == 0) {
                job->url = strdup(v);
            } else if (strcmp(k, "method") == 0) {
                free(job->method);
                job->method = strdup(v);
            } else if (strcmp(k, "header") == 0) {
                c = strchr(v, ':');
                if (c == NULL) {
                    continue;
                }
                *c = '\0';
                h = calloc(1, sizeof(vw_conf_header_t));
                h->name = strdup(vw_conf_trim(v));
                h->value = strdup(vw_conf_trim(c + 1));
                for (hp = &job->headers; *hp; hp = &(*hp)->next) { }
                *hp = h;
            } else if (strcmp(k, "timeout") == 0) {
                job->timeout_ms = vw_conf_ms(v);
            } else if (strcmp(k, "max_attempts") == 0) {
                job->max_attempts = atoi(v);
            } else if (strcmp(k, "max_age") == 0) {
                job->max_age_ms = vw_conf_ms(v);
            } else if (strcmp(k, "backoff_base") == 0) {
                job->backoff_base_ms = vw_conf_ms(v);
            } else if (strcmp(k, "backoff_cap") == 0) {
                job->backoff_cap_ms = vw_conf_ms(v);
            } else if (strcmp(k, "ordering") == 0) {
                job->ordering = strcmp(v, "on") == 0;
            } else if (strcmp(k, "on_dead") == 0) {
                job->on_dead = strcmp(v, "block") == 0 ? VW_ON_DEAD_BLOCK
                                                       : VW_ON_DEAD_PROCEED;
            }

        } else if (target != NULL) {
            if (strcmp(k, "max_concurrency") == 0) {
                target->max_concurrency = atoi(v);
            } else if (strcmp(k, "breaker_failures") == 0) {
                target->breaker_failures = atoi(v);
            } else if (strcmp(k, "breaker_error_rate") == 0) {
                target->breaker_error_rate = atoi(v);
            } else if (strcmp(k, "breaker_window") == 0) {
                target->breaker_window_ms = vw_conf_ms(v);
            } else if (strcmp(k, "breaker_min_calls") == 0) {
                target->breaker_min_calls = atoi(v);
            } else if (strcmp(k, "breaker_cooldown") == 0) {
                target->breaker_cooldown_ms = vw_conf_ms(v);
            }

        } else {
            if (strcmp(k, "listen") == 0) {
                conf->listen = strdup(strncmp(v, "unix:", 5) == 0 ? v + 5 : v);
            } else if (strcmp(k, "redis") == 0) {
                conf->redis = strdup(v);
            } else if (strcmp(k, "consumer") == 0) {
                conf->consumer = strdup(v);
            } else if (strcmp(k, "concurrency") == 0) {
                conf->concurrency = atoi(v);
            } else if (strcmp(k, "visibility_timeout") == 0) {
                conf->visibility_timeout_ms = vw_conf_ms(v);
            } else if (strcmp(k, "inflight_cap") == 0) {
                conf->inflight_cap = strtoull(v, NULL, 10);
            } else if (strcmp(k, "idempotency_window") == 0) {
                conf->idempotency_window_ms = vw_conf_ms(v);
            } else if (strcmp(k, "done_retention") == 0) {
                conf->done_retention_ms = vw_conf_ms(v);
            } else if (strcmp(k, "dead_retention") == 0) {
                conf->dead_retention_ms = vw_conf_ms(v);
            } else if (strcmp(k, "ordering_recheck") == 0) {
                conf->ordering_recheck_ms = vw_conf_ms(v);
            } else if (strcmp(k, "shutdown_timeout") == 0) {
                conf->shutdown_timeout_ms = vw_conf_ms(v);
            }
        }
    }

    fclose(f);

    /* a job without a target gets one of its own, named after it */
    for (j = conf->jobs; j != NULL; j = j->next) {
        if (j->target == NULL) {
            j->target = vw_conf_target_new(conf, j->type);
        }
    }

    return conf;
}


void
vw_conf_free(vw_conf_t *conf)
{
    vw_conf_job_t     *j, *jn;
    vw_conf_target_t  *t, *tn;
    vw_conf_header_t  *h, *hn;

    if (conf == NULL) {
        return;
    }

    for (j = conf->jobs; j != NULL; j = jn) {
        jn = j->next;

        for (h = j->headers; h != NULL; h = hn) {
            hn = h->next;
            free(h->name);
            free(h->value);
            free(h);
        }

        free(j->type);
        free(j->connector);
        free(j->url);
        free(j->method);
        free(j);
    }

    for (t = conf->targets; t != NULL; t = tn) {
        tn = t->next;
        free(t->name);
        free(t);
    }

    free(conf->file);
    free(conf->listen);
    free(conf->redis);
    free(conf->redis_password);
    free(conf->consumer);
    free(conf);
}


const vw_conf_job_t *
vw_conf_job(const vw_conf_t *conf, const char *type, size_t len)
{
    const vw_conf_job_t  *j;

    for (j = conf->jobs; j != NULL; j = j->next) {
        if (strlen(j->type) == len && memcmp(j->type, type, len) == 0) {
            return j;
        }
    }

    return NULL;
}
