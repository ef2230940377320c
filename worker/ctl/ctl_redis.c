/* ctl_redis.c -- vantagectl's blocking Redis connection, times and ids */

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "vantagectl.h"


#define VCTL_TIMEOUT_S      5
#define VCTL_SECRET_MAX     4096


static int vctl_redis_auth(vctl_t *ctl);
static redisReply *vctl_redis_check(vctl_t *ctl, redisReply *r,
    int allow_error);


/*
 * Connects to args->redis ("unix:<path>" or "<host>[:<port>]", as the
 * worker's --redis) and logs in when a password file was given.  Returns
 * VCTL_OK, or VCTL_ERROR with the reason in ctl->errstr (never holding
 * the password).
 */
int
vctl_redis_connect(vctl_t *ctl)
{
    int              port;
    char            *host, *colon;
    const char      *addr;
    struct timeval   tv = { VCTL_TIMEOUT_S, 0 };

    addr = ctl->args->redis;
    port = 6379;

    if (strncmp(addr, "unix:", 5) == 0) {
        ctl->c = redisConnectUnixWithTimeout(addr + 5, tv);

    } else {
        host = strdup(addr);
        if (host == NULL) {
            snprintf(ctl->errstr, VCTL_ERRSTR_LEN, "out of memory");
            return VCTL_ERROR;
        }

        colon = strrchr(host, ':');

        if (colon != NULL) {
            *colon = '\0';
            port = atoi(colon + 1);
        }

        if (port <= 0 || port > 65535 || host[0] == '\0') {
            free(host);
            snprintf(ctl->errstr, VCTL_ERRSTR_LEN,
                     "invalid Redis address \"%.100s\"", addr);
            return VCTL_ERROR;
        }

        ctl->c = redisConnectWithTimeout(host, port, tv);
        free(host);
    }

    if (ctl->c == NULL || ctl->c->err) {
        snprintf(ctl->errstr, VCTL_ERRSTR_LEN,
                 "Redis unreachable at %.100s: %s", addr,
                 ctl->c ? ctl->c->errstr : "out of memory");
        redisFree(ctl->c);
        ctl->c = NULL;
        return VCTL_ERROR;
    }

    (void) redisSetTimeout(ctl->c, tv);

    if (ctl->args->password_file != NULL && vctl_redis_auth(ctl) != VCTL_OK)
    {
        redisFree(ctl->c);
        ctl->c = NULL;
        return VCTL_ERROR;
    }

    return VCTL_OK;
}


/*
 * AUTH with the password read from the file, as ngx_vantage_redis.c reads
 * its password_file: one trailing newline is not part of it.  The buffer
 * is wiped afterwards; Redis's refusal (WRONGPASS, ...) never quotes it.
 */
static int
vctl_redis_auth(vctl_t *ctl)
{
    int          fd, rc;
    char         secret[VCTL_SECRET_MAX + 1];
    ssize_t      n;
    size_t       len;
    redisReply  *r;
    const char  *path;

    path = ctl->args->password_file;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        snprintf(ctl->errstr, VCTL_ERRSTR_LEN,
                 "cannot open password file \"%.100s\": %s", path,
                 strerror(errno));
        return VCTL_ERROR;
    }

    len = 0;

    do {
        n = read(fd, secret + len, VCTL_SECRET_MAX - len);
        if (n > 0) {
            len += n;
        }
    } while ((n > 0 || (n == -1 && errno == EINTR)) && len < VCTL_SECRET_MAX);

    close(fd);

    if (n == -1) {
        snprintf(ctl->errstr, VCTL_ERRSTR_LEN,
                 "cannot read password file \"%.100s\"", path);
        return VCTL_ERROR;
    }

    if (len > 0 && secret[len - 1] == '\n') {
        len--;
        if (len > 0 && secret[len - 1] == '\r') {
            len--;
        }
    }

    if (len == 0) {
        snprintf(ctl->errstr, VCTL_ERRSTR_LEN,
                 "password file \"%.100s\" is empty", path);
        return VCTL_ERROR;
    }

    if (ctl->args->user != NULL) {
        r = redisCommand(ctl->c, "AUTH %s %b", ctl->args->user, secret, len);

    } else {
        r = redisCommand(ctl->c, "AUTH %b", secret, len);
    }

    explicit_bzero(secret, sizeof(secret));

    rc = VCTL_OK;

    if (r == NULL) {
        snprintf(ctl->errstr, VCTL_ERRSTR_LEN, "Redis AUTH failed: %s",
                 ctl->c->errstr);
        rc = VCTL_ERROR;

    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(ctl->errstr, VCTL_ERRSTR_LEN, "Redis refused the password "
                 "from \"%.100s\": %.100s", path, r->str);
        rc = VCTL_ERROR;
    }

    if (r != NULL) {
        freeReplyObject(r);
    }

    return rc;
}


/*
 * Runs a command (redisCommand's format: %s and %b are binary-safe
 * arguments, never parsed).  Returns the reply, or NULL after printing why
 * on a lost connection or an error reply.
 */
redisReply *
vctl_redis(vctl_t *ctl, const char *fmt, ...)
{
    va_list      ap;
    redisReply  *r;

    va_start(ap, fmt);
    r = redisvCommand(ctl->c, fmt, ap);
    va_end(ap);

    return vctl_redis_check(ctl, r, 0);
}


/* the same, but an error reply is returned to the caller, not printed */
redisReply *
vctl_redis_try(vctl_t *ctl, const char *fmt, ...)
{
    va_list      ap;
    redisReply  *r;

    va_start(ap, fmt);
    r = redisvCommand(ctl->c, fmt, ap);
    va_end(ap);

    return vctl_redis_check(ctl, r, 1);
}


/* queues a command for vctl_redis_get(): pipelined reads of many jobs */
int
vctl_redis_append(vctl_t *ctl, const char *fmt, ...)
{
    int      rc;
    va_list  ap;

    va_start(ap, fmt);
    rc = redisvAppendCommand(ctl->c, fmt, ap);
    va_end(ap);

    if (rc != REDIS_OK) {
        vctl_error("redis: %s", ctl->c->errstr);
        return VCTL_ERROR;
    }

    return VCTL_OK;
}


/* the next pipelined reply, or NULL after printing why */
redisReply *
vctl_redis_get(vctl_t *ctl)
{
    void  *r;

    if (redisGetReply(ctl->c, &r) != REDIS_OK) {
        r = NULL;
    }

    return vctl_redis_check(ctl, r, 0);
}


static redisReply *
vctl_redis_check(vctl_t *ctl, redisReply *r, int allow_error)
{
    if (r == NULL) {
        vctl_error("redis: %s", ctl->c->err ? ctl->c->errstr
                                            : "no reply");
        return NULL;
    }

    if (r->type == REDIS_REPLY_ERROR && !allow_error) {
        vctl_error("redis: %s", r->str);
        freeReplyObject(r);
        return NULL;
    }

    return r;
}


/* an integer reply, or a string holding one (GET, HGET) */
int
vctl_reply_int(redisReply *r, long long *n)
{
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type == REDIS_REPLY_INTEGER) {
        *n = r->integer;
        return VCTL_OK;
    }

    if (r->type == REDIS_REPLY_STRING) {
        return vctl_parse_int(r->str, n);
    }

    return VCTL_ERROR;
}


int64_t
vctl_now_ms(void)
{
    struct timeval  tv;

    gettimeofday(&tv, NULL);

    return (int64_t) tv.tv_sec * 1000 + tv.tv_usec / 1000;
}


/* "2025-01-31T08:00:00.123Z", as the worker's log lines write time */
void
vctl_iso(int64_t ms, char *buf, size_t size)
{
    time_t     t;
    struct tm  tm;

    t = (time_t) (ms / 1000);

    if (ms < 0 || gmtime_r(&t, &tm) == NULL) {
        snprintf(buf, size, "-");
        return;
    }

    snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, (int) (ms % 1000));
}


/* a whole decimal number, nothing around it */
int
vctl_parse_int(const char *s, long long *n)
{
    char  *end;

    if (s == NULL || s[0] == '\0' || isspace((unsigned char) s[0])) {
        return VCTL_ERROR;
    }

    errno = 0;
    *n = strtoll(s, &end, 10);

    if (errno != 0 || *end != '\0') {
        return VCTL_ERROR;
    }

    return VCTL_OK;
}


/*
 * --since: a time in ms since the epoch from "YYYY-MM-DD",
 * "YYYY-MM-DDTHH:MM[:SS[.mmm]][Z]" (UTC) or a duration before now with the
 * configuration file's units (ms, s, m, h, d).
 */
int
vctl_parse_since(const char *s, int64_t now, int64_t *ms)
{
    int         n, frac, len;
    char       *end;
    long long   v;
    struct tm   tm;
    const char *p;

    if (isdigit((unsigned char) s[0]) && strchr(s, '-') == NULL) {
        errno = 0;
        v = strtoll(s, &end, 10);

        if (errno != 0 || end == s || v < 0 || v > 100000LL * 86400000) {
            return VCTL_ERROR;
        }

        if (strcmp(end, "ms") == 0) {
            /* v as it is */
        } else if (strcmp(end, "s") == 0) {
            v *= 1000;
        } else if (strcmp(end, "m") == 0) {
            v *= 60 * 1000;
        } else if (strcmp(end, "h") == 0) {
            v *= 3600 * 1000;
        } else if (strcmp(end, "d") == 0) {
            v *= 86400 * 1000LL;
        } else {
            return VCTL_ERROR;
        }

        *ms = now - v;
        return VCTL_OK;
    }

    memset(&tm, 0, sizeof(struct tm));
    n = 0;

    if (sscanf(s, "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &n)
        != 3 || n != 10)
    {
        return VCTL_ERROR;
    }

    p = s + n;
    frac = 0;

    if (*p == 'T' || *p == ' ') {
        n = 0;

        if (sscanf(p + 1, "%2d:%2d%n", &tm.tm_hour, &tm.tm_min, &n) != 2
            || n != 5)
        {
            return VCTL_ERROR;
        }

        p += 1 + n;

        if (*p == ':') {
            n = 0;

            if (sscanf(p + 1, "%2d%n", &tm.tm_sec, &n) != 1 || n != 2) {
                return VCTL_ERROR;
            }

            p += 1 + n;

            if (*p == '.') {
                for (p++, len = 0; isdigit((unsigned char) *p); p++, len++) {
                    if (len < 3) {
                        frac = frac * 10 + (*p - '0');
                    }
                }

                for ( /* void */ ; len < 3; len++) {
                    frac *= 10;
                }
            }
        }

        if (*p == 'Z') {
            p++;
        }
    }

    if (*p != '\0' || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1
        || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59
        || tm.tm_sec > 60)
    {
        return VCTL_ERROR;
    }

    tm.tm_year -= 1900;
    tm.tm_mon -= 1;

    *ms = (int64_t) timegm(&tm) * 1000 + frac;

    return VCTL_OK;
}


/* 32 lowercase hex digits: the ids the worker makes (PROTOCOL.md) */
int
vctl_id_valid(const char *s)
{
    int  i;

    for (i = 0; i < VCTL_ID_LEN; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
        {
            return 0;
        }
    }

    return s[VCTL_ID_LEN] == '\0';
}
