/* log.c -- JSON log lines on stderr */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "vw_core.h"


/*
 * Writes {"ts":..., "level":..., "msg":..., key: value, ...} on one line.
 * The arguments after msg are pairs of strings ended by NULL; values are
 * escaped by jansson, so that no value can forge another line.  Callers
 * pass no secret and no personal data.  Lines of level "debug" are written
 * only when the environment has VANTAGE_WORKER_DEBUG=1: one costs about
 * 12 us of CPU, and the engine writes one for every attempt it starts.
 */
void
vw_log(const char *level, const char *msg, ...)
{
    char            ts[64], *line;
    va_list         ap;
    json_t         *o;
    struct tm       tm;
    const char     *key, *value;
    struct timespec now;
    static int      debug = -1;

    if (strcmp(level, "debug") == 0) {
        if (debug == -1) {
            value = getenv("VANTAGE_WORKER_DEBUG");
            debug = (value != NULL && strcmp(value, "1") == 0);
        }

        if (!debug) {
            return;
        }
    }

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
             tm.tm_min, tm.tm_sec, now.tv_nsec / 1000000);

    o = json_object();
    if (o == NULL) {
        return;
    }

    json_object_set_new(o, "ts", json_string(ts));
    json_object_set_new(o, "level", json_string(level));
    json_object_set_new(o, "msg", json_string(msg));

    va_start(ap, msg);

    while ((key = va_arg(ap, const char *)) != NULL) {
        value = va_arg(ap, const char *);
        json_object_set_new(o, key, json_string(value ? value : ""));
    }

    va_end(ap);

    line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);

    if (line != NULL) {
        fprintf(stderr, "%s\n", line);
        free(line);
    }

    json_decref(o);
}
