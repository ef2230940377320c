/* test_vw_conf.c -- the worker's configuration file: values and errors */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "vw_core.h"
#include "vw_conf.h"


/*
 * Every test writes its files into a fresh directory and runs there, so
 * that messages name "worker.conf" as it was given and the expected lines
 * are written out in full.  Expected values come from docs/WORKER.md and
 * the comments of vw_conf.h, never from conf.c.
 */

#define SEC   1000ULL
#define MIN   (60 * SEC)
#define HOUR  (60 * MIN)
#define DAY   (24 * HOUR)

/* lines 1-3 */
#define W  "[worker]\n" \
           "listen = unix:/run/vantage/worker.sock\n" \
           "redis = 127.0.0.1:6379\n"

/* three lines: a minimal job */
#define J  "[job a]\n" \
           "connector = http\n" \
           "url = https://hooks.example.com/in\n"


static char  dir[64];
static char  cwd[4096];


static int
setup(void **state)
{
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    strcpy(dir, "/tmp/test_vw_conf.XXXXXX");
    assert_non_null(mkdtemp(dir));
    assert_int_equal(chdir(dir), 0);
    return 0;
}


static int
teardown(void **state)
{
    char  cmd[128];

    assert_int_equal(chdir(cwd), 0);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}


static void
write_file(const char *name, const char *data, size_t len)
{
    FILE  *f;

    f = fopen(name, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}


static vw_conf_t *
load_ok(const char *text)
{
    char        err[VW_CONF_ERR_LEN];
    vw_conf_t  *conf;

    write_file("worker.conf", text, strlen(text));
    conf = vw_conf_load("worker.conf", err, sizeof(err));

    if (conf == NULL) {
        fail_msg("unexpected error: %s", err);
    }

    assert_string_equal(err, "");

    return conf;
}


static void
load_err_n(const char *text, size_t len, const char *expected)
{
    char        err[VW_CONF_ERR_LEN];
    vw_conf_t  *conf;

    write_file("worker.conf", text, len);
    memset(err, 'x', sizeof(err));
    conf = vw_conf_load("worker.conf", err, sizeof(err));

    if (conf != NULL) {
        vw_conf_free(conf);
        fail_msg("loaded, but expected: %s", expected);
    }

    assert_string_equal(err, expected);
    assert_null(strchr(err, '\n'));
}


static void
load_err(const char *text, const char *expected)
{
    load_err_n(text, strlen(text), expected);
}


static void
test_defaults(void **state)
{
    char                     host[256], consumer[300];
    vw_conf_t               *conf;
    const vw_conf_job_t     *job;
    const vw_conf_target_t  *t;

    conf = load_ok(W J);

    assert_string_equal(conf->file, "worker.conf");
    assert_string_equal(conf->listen, "/run/vantage/worker.sock");
    assert_int_equal(conf->listen_mode, 0660);
    assert_null(conf->listen_group);
    assert_int_equal(conf->listen_gid, (gid_t) -1);
    assert_string_equal(conf->redis, "127.0.0.1:6379");
    assert_null(conf->redis_password);

    assert_int_equal(gethostname(host, sizeof(host)), 0);
    snprintf(consumer, sizeof(consumer), "%s:%ld", host, (long) getpid());
    assert_string_equal(conf->consumer, consumer);

    assert_int_equal(conf->concurrency, 64);
    assert_int_equal(conf->visibility_timeout_ms, 60 * SEC);
    assert_int_equal(conf->inflight_cap, 100000);
    assert_int_equal(conf->idempotency_window_ms, 24 * HOUR);
    assert_int_equal(conf->done_retention_ms, 24 * HOUR);
    assert_int_equal(conf->dead_retention_ms, 14 * DAY);
    assert_int_equal(conf->ordering_recheck_ms, 1 * SEC);
    assert_int_equal(conf->shutdown_timeout_ms, 20 * SEC);
    assert_int_equal(conf->max_frame, 16 * 1024 * 1024 + 64 * 1024);

    job = vw_conf_job(conf, "a", 1);
    assert_non_null(job);
    assert_ptr_equal(job, conf->jobs);
    assert_null(job->next);
    assert_string_equal(job->type, "a");
    assert_string_equal(job->connector, "http");
    assert_string_equal(job->url, "https://hooks.example.com/in");
    assert_string_equal(job->method, "POST");
    assert_null(job->headers);
    assert_int_equal(job->timeout_ms, 10 * SEC);
    assert_int_equal(job->max_attempts, 8);
    assert_int_equal(job->max_age_ms, 24 * HOUR);
    assert_int_equal(job->backoff_base_ms, 1 * SEC);
    assert_int_equal(job->backoff_cap_ms, 5 * MIN);
    assert_int_equal(job->ordering, 0);
    assert_int_equal(job->on_dead, VW_ON_DEAD_PROCEED);

    /* the implicit target: the job's own, named after it, defaults */
    t = job->target;
    assert_non_null(t);
    assert_ptr_equal(t, conf->targets);
    assert_null(t->next);
    assert_ptr_equal(vw_conf_target(conf, "a"), t);
    assert_string_equal(t->name, "a");
    assert_int_equal(t->max_concurrency, 8);
    assert_int_equal(t->breaker_failures, 5);
    assert_int_equal(t->breaker_error_rate, 50);
    assert_int_equal(t->breaker_window_ms, 30 * SEC);
    assert_int_equal(t->breaker_min_calls, 20);
    assert_int_equal(t->breaker_cooldown_ms, 30 * SEC);

    vw_conf_free(conf);
}


static void
test_new_has_the_defaults(void **state)
{
    vw_conf_t  *conf;

    conf = vw_conf_new();
    assert_non_null(conf);
    assert_null(conf->file);
    assert_null(conf->listen);
    assert_int_equal(conf->listen_mode, 0660);
    assert_null(conf->listen_group);
    assert_int_equal(conf->listen_gid, (gid_t) -1);
    assert_null(conf->redis);
    assert_non_null(conf->consumer);
    assert_int_equal(conf->concurrency, 64);
    assert_int_equal(conf->max_frame, VW_CONF_MAX_FRAME_DEFAULT);
    assert_null(conf->jobs);
    assert_null(conf->targets);
    assert_null(vw_conf_job(conf, "a", 1));
    vw_conf_free(conf);

    vw_conf_free(NULL);
    assert_null(vw_conf_job(NULL, "a", 1));
}


static void
test_every_key(void **state)
{
    char                     text[4096];
    vw_conf_t               *conf;
    vw_conf_header_t        *h;
    const vw_conf_job_t     *job;
    const vw_conf_target_t  *t;

    write_file("redis.pw", "s3cret pass\n", 12);
    write_file("token", "Bearer abc.def\r\n", 16);

    snprintf(text, sizeof(text),
        "# a comment\n"
        "   # an indented comment\n"
        "\n"
        "[worker]\n"
        "listen=unix:/tmp/w.sock\n"
        "\tredis   =   unix:/run/redis/redis.sock   # trailing comment\n"
        "redis_password_file = %s/redis.pw\n"
        "consumer = worker-1\n"
        "concurrency = 128\n"
        "visibility_timeout = 2m\n"
        "inflight_cap = 5000\n"
        "idempotency_window = 2h\n"
        "done_retention = 3d\n"
        "dead_retention = 30d\n"
        "ordering_recheck = 250ms\n"
        "shutdown_timeout = 0\n"
        "max_frame = 1m\n"
        "listen_mode = 0600\n"
        "listen_group = root\n"
        "\n"
        "[target crm]\n"
        "max_concurrency = 2\n"
        "breaker_failures = 3\n"
        "breaker_error_rate = 100\n"
        "breaker_window = 1m\n"
        "breaker_min_calls = 1\n"
        "breaker_cooldown = 90\n"
        "\n"
        "[job crm.contact.upsert]\n"
        "connector = http\n"
        "target = crm\n"
        "url = http://crm.example.com:8443/api/v1/contacts?upsert=1#frag\n"
        "method = PUT\n"
        "header = X-Source: vantage\n"
        "header = X-Tag:a#b\n"
        "secret_header = Authorization   %s/token\n"
        "header = X-Empty:\n"
        "timeout = 30s\n"
        "max_attempts = 1\n"
        "max_age = 1d\n"
        "backoff_base = 500ms\n"
        "backoff_cap = 500ms\n"
        "ordering = on\n"
        "on_dead = block\n"
        "[job crm.note]\n"
        "url = https://crm.example.com/notes\n"
        "connector = http\n"
        "target = crm\n"
        "ordering = off\n", dir, dir);

    conf = load_ok(text);

    assert_string_equal(conf->listen, "/tmp/w.sock");
    assert_int_equal(conf->listen_mode, 0600);
    assert_string_equal(conf->listen_group, "root");
    assert_int_equal(conf->listen_gid, 0);
    assert_string_equal(conf->redis, "unix:/run/redis/redis.sock");
    assert_string_equal(conf->redis_password, "s3cret pass");
    assert_string_equal(conf->consumer, "worker-1");
    assert_int_equal(conf->concurrency, 128);
    assert_int_equal(conf->visibility_timeout_ms, 2 * MIN);
    assert_int_equal(conf->inflight_cap, 5000);
    assert_int_equal(conf->idempotency_window_ms, 2 * HOUR);
    assert_int_equal(conf->done_retention_ms, 3 * DAY);
    assert_int_equal(conf->dead_retention_ms, 30 * DAY);
    assert_int_equal(conf->ordering_recheck_ms, 250);
    assert_int_equal(conf->shutdown_timeout_ms, 0);
    assert_int_equal(conf->max_frame, 1024 * 1024);

    t = vw_conf_target(conf, "crm");
    assert_non_null(t);
    assert_ptr_equal(t, conf->targets);
    assert_null(t->next);            /* no implicit target: both name crm */
    assert_int_equal(t->max_concurrency, 2);
    assert_int_equal(t->breaker_failures, 3);
    assert_int_equal(t->breaker_error_rate, 100);
    assert_int_equal(t->breaker_window_ms, 1 * MIN);
    assert_int_equal(t->breaker_min_calls, 1);
    assert_int_equal(t->breaker_cooldown_ms, 90 * SEC);

    job = vw_conf_job(conf, "crm.contact.upsert.extra", 18);
    assert_non_null(job);
    assert_ptr_equal(job, conf->jobs);
    assert_null(vw_conf_job(conf, "crm.contact", 11));
    assert_null(vw_conf_job(conf, "crm.contact.upsertx", 19));
    assert_string_equal(job->type, "crm.contact.upsert");
    assert_ptr_equal(job->target, t);
    assert_string_equal(job->url,
        "http://crm.example.com:8443/api/v1/contacts?upsert=1#frag");
    assert_string_equal(job->method, "PUT");
    assert_int_equal(job->timeout_ms, 30 * SEC);
    assert_int_equal(job->max_attempts, 1);
    assert_int_equal(job->max_age_ms, 1 * DAY);
    assert_int_equal(job->backoff_base_ms, 500);
    assert_int_equal(job->backoff_cap_ms, 500);
    assert_int_equal(job->ordering, 1);
    assert_int_equal(job->on_dead, VW_ON_DEAD_BLOCK);

    /* in the file's order; the secret read, its CRLF cut */
    h = job->headers;
    assert_non_null(h);
    assert_string_equal(h->name, "X-Source");
    assert_string_equal(h->value, "vantage");
    assert_int_equal(h->secret, 0);
    h = h->next;
    assert_string_equal(h->name, "X-Tag");
    assert_string_equal(h->value, "a#b");
    h = h->next;
    assert_string_equal(h->name, "Authorization");
    assert_string_equal(h->value, "Bearer abc.def");
    assert_int_equal(h->secret, 1);
    h = h->next;
    assert_string_equal(h->name, "X-Empty");
    assert_string_equal(h->value, "");
    assert_null(h->next);

    job = job->next;
    assert_non_null(job);
    assert_ptr_equal(vw_conf_job(conf, "crm.note", 8), job);
    assert_ptr_equal(job->target, t);
    assert_int_equal(job->ordering, 0);
    assert_null(job->next);

    vw_conf_free(conf);
}


static void
test_units(void **state)
{
    static const struct {
        const char  *text;
        uint64_t     ms;
    } durations[] = {
        { "1", 1 * SEC }, { "45", 45 * SEC }, { "1ms", 1 }, { "1500ms", 1500 },
        { "2s", 2 * SEC }, { "3m", 3 * MIN }, { "4h", 4 * HOUR },
        { "5d", 5 * DAY }, { "3650d", 3650 * DAY }, { "007s", 7 * SEC }
    };

    static const struct {
        const char  *text;
        size_t       bytes;
    } sizes[] = {
        { "64", 64 }, { "1000", 1000 }, { "2k", 2048 },
        { "16448k", 16 * 1024 * 1024 + 64 * 1024 }, { "3m", 3 << 20 },
        { "2047m", 2047UL << 20 }, { "2147483647", 0x7fffffff }
    };

    char        text[512];
    size_t      i;
    vw_conf_t  *conf;

    for (i = 0; i < sizeof(durations) / sizeof(durations[0]); i++) {
        snprintf(text, sizeof(text), W "dead_retention = %s\n",
                 durations[i].text);
        conf = load_ok(text);
        assert_int_equal(conf->dead_retention_ms, durations[i].ms);
        vw_conf_free(conf);
    }

    for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        snprintf(text, sizeof(text), W "max_frame = %s\n", sizes[i].text);
        conf = load_ok(text);
        assert_int_equal(conf->max_frame, sizes[i].bytes);
        vw_conf_free(conf);
    }
}


/* listen_mode is octal, with or without its leading 0 */
static void
test_listen_mode(void **state)
{
    static const struct {
        const char  *text;
        unsigned     mode;
    } modes[] = {
        { "0660", 0660 }, { "660", 0660 }, { "0666", 0666 }, { "0600", 0600 },
        { "0777", 0777 }, { "0", 0 }, { "0000", 0 }, { "70", 070 }
    };

    char        text[512];
    size_t      i;
    vw_conf_t  *conf;

    for (i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        snprintf(text, sizeof(text), W "listen_mode = %s\n", modes[i].text);
        conf = load_ok(text);
        assert_int_equal(conf->listen_mode, modes[i].mode);
        assert_null(conf->listen_group);
        vw_conf_free(conf);
    }
}


static void
test_targets(void **state)
{
    vw_conf_t            *conf;
    const vw_conf_job_t  *a, *b, *c;

    /* a target may follow its job; jobs without one get their own */
    conf = load_ok(W
                   "[job a]\nconnector = http\nurl = http://a\n"
                   "target = shared\n"
                   "[job b]\nconnector = http\nurl = http://b\n"
                   "[target shared]\nmax_concurrency = 1\n"
                   "[job c]\nconnector = http\nurl = http://c\n"
                   "target = shared\n");

    a = vw_conf_job(conf, "a", 1);
    b = vw_conf_job(conf, "b", 1);
    c = vw_conf_job(conf, "c", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);

    assert_string_equal(a->target->name, "shared");
    assert_int_equal(a->target->max_concurrency, 1);
    assert_ptr_equal(a->target, c->target);
    assert_ptr_equal(vw_conf_target(conf, "shared"), a->target);

    assert_string_equal(b->target->name, "b");
    assert_int_equal(b->target->max_concurrency, 8);
    assert_ptr_equal(vw_conf_target(conf, "b"), b->target);
    assert_null(vw_conf_target(conf, "a"));

    vw_conf_free(conf);
}


/* a file saved with CRLF line ends reads as the same file with LF */
static void
test_crlf(void **state)
{
    vw_conf_t  *conf;

    conf = load_ok("[worker]\r\nlisten = unix:/w\r\nredis = r:1\r\n"
                   "[job a]\r\nconnector = http\r\nurl = http://a\r\n"
                   "header = X-A: b\r\n");
    assert_string_equal(conf->listen, "/w");
    assert_string_equal(conf->redis, "r:1");
    assert_string_equal(conf->jobs->url, "http://a");
    assert_string_equal(conf->jobs->headers->value, "b");
    vw_conf_free(conf);
}


/* values too long to quote whole are cut, so a message stays short */
static void
test_error_long_values(void **state)
{
    char  text[512], expected[512], a[200];

    memset(a, 'a', sizeof(a));

    snprintf(text, sizeof(text), W "[job %.129s]\n", a);
    snprintf(expected, sizeof(expected), "worker.conf:4: [job %.129s]: "
             "\"%.64s...\" is not a valid job type: use 1 to 128 of A-Z a-z "
             "0-9 . _ -", a, a);
    load_err(text, expected);

    /* 128 is fine */
    snprintf(text, sizeof(text), W "[job %.128s]\nconnector = http\n"
             "url = http://a\n", a);
    vw_conf_free(load_ok(text));

    snprintf(text, sizeof(text), "[worker]\nlisten = unix:/run/%.103s\n", a);
    snprintf(expected, sizeof(expected), "worker.conf:2: listen: "
             "\"unix:/run/%.54s...\": the path is longer than 107 bytes", a);
    load_err(text, expected);

    /* 107 bytes is fine */
    snprintf(text, sizeof(text), "[worker]\nlisten = unix:/run/%.102s\n"
             "redis = r:1\n", a);
    vw_conf_free(load_ok(text));
}


/* the table of errors: every message as it must read */

typedef struct {
    const char  *text;
    const char  *err;
} error_case_t;


static const error_case_t  errors[] = {

    /* sections */
    { W "[jobs a]\n", "worker.conf:4: [jobs a]: unknown section" },
    { W "[]\n", "worker.conf:4: []: unknown section" },
    { W J "[job a]\n",
      "worker.conf:7: [job a]: duplicate section, first at line 4" },
    { W "[ worker ]\n",
      "worker.conf:4: [ worker ]: duplicate section, first at line 1" },
    { W "[target t]\n[target t]\n",
      "worker.conf:5: [target t]: duplicate section, first at line 4" },
    { "[worker x]\n", "worker.conf:1: [worker x]: [worker] takes no name" },
    { W "[target]\n",
      "worker.conf:4: [target]: needs a name: [target <name>]" },
    { W "[job]\n", "worker.conf:4: [job]: needs a name: [job <type>]" },
    { W "[target a/b]\n",
      "worker.conf:4: [target a/b]: \"a/b\" is not a valid target name: "
      "use 1 to 128 of A-Z a-z 0-9 . _ -" },
    { W "[job a b]\n",
      "worker.conf:4: [job a b]: \"a b\" is not a valid job type: "
      "use 1 to 128 of A-Z a-z 0-9 . _ -" },
    { "[worker\n", "worker.conf:1: [worker: expected \"[section]\"" },
    { "[job a]\nconnector = http\nurl = http://a\n",
      "worker.conf:1: [worker]: missing section" },
    { "", "worker.conf:1: [worker]: missing section" },

    /* lines and keys */
    { "listen = unix:/w\n",
      "worker.conf:1: listen: outside of any section (the file starts with "
      "[worker])" },
    { W "concurrency 5\n",
      "worker.conf:4: concurrency: expected \"key = value\"" },
    { W "= 5\n", "worker.conf:4: (no key): expected \"key = value\"" },
    { W "listn = unix:/w\n", "worker.conf:4: listn: unknown key in [worker]" },
    { W "url = http://a\n", "worker.conf:4: url: unknown key in [worker]" },
    { W J "max_concurrency = 1\n",
      "worker.conf:7: max_concurrency: unknown key in [job a]" },
    { W "[target t]\ntimeout = 1s\n",
      "worker.conf:5: timeout: unknown key in [target t]" },
    { W "listen = unix:/other\n",
      "worker.conf:4: listen: duplicate key, first at line 2" },
    { W J "url = http://b\n",
      "worker.conf:7: url: duplicate key, first at line 6" },
    { W "[target t]\nmax_concurrency = 1\nmax_concurrency = 2\n",
      "worker.conf:6: max_concurrency: duplicate key, first at line 5" },
    { W "concurrency =\n", "worker.conf:4: concurrency: missing value" },
    { W "concurrency = # none\n",
      "worker.conf:4: concurrency: missing value" },

    /* required keys */
    { "[worker]\nredis = r:1\n",
      "worker.conf:1: listen: missing in [worker]" },
    { "[worker]\nlisten = unix:/w\n",
      "worker.conf:1: redis: missing in [worker]" },
    { W "[job a]\nurl = http://a\n",
      "worker.conf:4: connector: missing in [job a]" },
    { W "[job a]\nconnector = http\n",
      "worker.conf:4: url: missing in [job a]" },

    /* durations */
    { W J "backoff_base = ten\n",
      "worker.conf:7: backoff_base: \"ten\" is not a duration" },
    { W J "timeout = 10 s\n",
      "worker.conf:7: timeout: \"10 s\" is not a duration" },
    { W J "timeout = 1.5s\n",
      "worker.conf:7: timeout: \"1.5s\" is not a duration" },
    { W J "timeout = -1s\n",
      "worker.conf:7: timeout: \"-1s\" is not a duration" },
    { W J "timeout = 10S\n",
      "worker.conf:7: timeout: \"10S\" is not a duration" },
    { W J "timeout = s\n", "worker.conf:7: timeout: \"s\" is not a duration" },
    { W J "timeout = 0\n", "worker.conf:7: timeout: \"0\" is less than 1ms" },
    { W "dead_retention = 3651d\n",
      "worker.conf:4: dead_retention: \"3651d\" is more than 3650d" },
    { W "dead_retention = 99999999999999999999999d\n",
      "worker.conf:4: dead_retention: \"99999999999999999999999d\" is more "
      "than 3650d" },
    { W "[target t]\nbreaker_window = 0ms\n",
      "worker.conf:5: breaker_window: \"0ms\" is less than 1ms" },

    /* numbers and sizes */
    { W "concurrency = lots\n",
      "worker.conf:4: concurrency: \"lots\" is not a number" },
    { W "concurrency = 0\n",
      "worker.conf:4: concurrency: \"0\" is less than 1" },
    { W "concurrency = 65536\n",
      "worker.conf:4: concurrency: \"65536\" is more than 65535" },
    { W "inflight_cap = 1k\n",
      "worker.conf:4: inflight_cap: \"1k\" is not a number" },
    { W J "max_attempts = 0\n",
      "worker.conf:7: max_attempts: \"0\" is less than 1" },
    { W "[target t]\nbreaker_error_rate = 101\n",
      "worker.conf:5: breaker_error_rate: \"101\" is more than 100" },
    { W "[target t]\nmax_concurrency = -1\n",
      "worker.conf:5: max_concurrency: \"-1\" is not a number" },
    { W "max_frame = 1g\n", "worker.conf:4: max_frame: \"1g\" is not a size" },
    { W "max_frame = 16M\n",
      "worker.conf:4: max_frame: \"16M\" is not a size" },
    { W "max_frame = 63\n",
      "worker.conf:4: max_frame: \"63\" is less than 64" },
    { W "max_frame = 2048m\n",
      "worker.conf:4: max_frame: \"2048m\" is more than 2147483647" },

    /* the socket's permissions */
    { W "listen_mode = 0o660\n",
      "worker.conf:4: listen_mode: \"0o660\" is not an octal mode from 0000 "
      "to 0777, e.g. 0660" },
    { W "listen_mode = 0680\n",
      "worker.conf:4: listen_mode: \"0680\" is not an octal mode from 0000 "
      "to 0777, e.g. 0660" },
    { W "listen_mode = 1777\n",
      "worker.conf:4: listen_mode: \"1777\" is not an octal mode from 0000 "
      "to 0777, e.g. 0660" },
    { W "listen_mode = 00660\n",
      "worker.conf:4: listen_mode: \"00660\" is not an octal mode from "
      "0000 to 0777, e.g. 0660" },
    { W "listen_mode = rw-rw----\n",
      "worker.conf:4: listen_mode: \"rw-rw----\" is not an octal mode from "
      "0000 to 0777, e.g. 0660" },
    { W "listen_mode = -660\n",
      "worker.conf:4: listen_mode: \"-660\" is not an octal mode from 0000 "
      "to 0777, e.g. 0660" },
    { W "listen_mode = 0660\nlisten_mode = 0666\n",
      "worker.conf:5: listen_mode: duplicate key, first at line 4" },
    { W "listen_group = no-such-group-vantage\n",
      "worker.conf:4: listen_group: \"no-such-group-vantage\" is not a group "
      "on this system" },
    { W "listen_group = www data\n",
      "worker.conf:4: listen_group: \"www data\" is not a group on this "
      "system" },

    /* words */
    { W J "ordering = yes\n",
      "worker.conf:7: ordering: \"yes\" is not on or off" },
    { W J "on_dead = stop\n",
      "worker.conf:7: on_dead: \"stop\" is not proceed or block" },
    { W J "method = post\n",
      "worker.conf:7: method: \"post\" is not a method in capitals, "
      "e.g. POST" },
    { W "[job a]\nconnector = soap\n",
      "worker.conf:5: connector: \"soap\" is not a known connector: http, "
      "salesforce or hubspot" },
    { W "consumer = a b\n",
      "worker.conf:4: consumer: \"a b\" is not 1 to 255 printable "
      "characters without blanks" },

    /* addresses */
    { "[worker]\nlisten = /run/w.sock\n",
      "worker.conf:2: listen: \"/run/w.sock\" is not unix:<path>" },
    { "[worker]\nlisten = unix:\n",
      "worker.conf:2: listen: \"unix:\" is not unix:<path>" },
    { "[worker]\nredis = localhost:0\n",
      "worker.conf:2: redis: \"localhost:0\" is not host:port or "
      "unix:<path>" },
    { "[worker]\nredis = localhost:65536\n",
      "worker.conf:2: redis: \"localhost:65536\" is not host:port or "
      "unix:<path>" },
    { "[worker]\nredis = :6379\n",
      "worker.conf:2: redis: \":6379\" is not host:port or unix:<path>" },
    { "[worker]\nredis = unix:\n",
      "worker.conf:2: redis: \"unix:\" is not host:port or unix:<path>" },
    { "[worker]\nredis = redis://localhost\n",
      "worker.conf:2: redis: \"redis://localhost\" is not host:port or "
      "unix:<path>" },
    { W "[job a]\nurl = ftp://x.example/\n",
      "worker.conf:5: url: \"ftp://x.example/\" is not an http:// or "
      "https:// URL" },
    { W "[job a]\nurl = https://\n",
      "worker.conf:5: url: \"https://\" is not an http:// or https:// URL" },
    { W "[job a]\nurl = http:///path\n",
      "worker.conf:5: url: \"http:///path\" is not an http:// or https:// "
      "URL" },
    { W "[job a]\nurl = http://a b\n",
      "worker.conf:5: url: \"http://a b\" is not an http:// or https:// URL" },
    { W "[job a]\nurl = HTTPS://a\n",
      "worker.conf:5: url: \"HTTPS://a\" is not an http:// or https:// URL" },

    /* targets */
    { W J "target = nope\n",
      "worker.conf:7: target: no section [target nope]" },
    { W J "target = a/b\n",
      "worker.conf:7: target: \"a/b\" is not a valid target name: use 1 to "
      "128 of A-Z a-z 0-9 . _ -" },
    { W "[target a]\n" J,
      "worker.conf:5: target: missing in [job a], and [target a] at line 4 "
      "has its name: add \"target = a\" to use it, or rename it" },

    /* headers */
    { W J "header = X-Source vantage\n",
      "worker.conf:7: header: expected \"Name: value\"" },
    { W J "header = X Source: vantage\n",
      "worker.conf:7: header: \"X Source\" is not a valid header name" },
    { W J "header = : vantage\n",
      "worker.conf:7: header: \"\" is not a valid header name" },
    { W J "header = X(1): v\n",
      "worker.conf:7: header: \"X(1)\" is not a valid header name" },
    { W J "header = X-A: a\rb\n",
      "worker.conf:7: header: the value of X-A holds CR, LF or another "
      "control character" },
    { W J "header = X-A: a\x01" "b\n",
      "worker.conf:7: header: the value of X-A holds CR, LF or another "
      "control character" },
    { W J "secret_header = Authorization\n",
      "worker.conf:7: secret_header: expected \"Name /path/to/file\" (the "
      "value is read from the file)" },
    { W J "secret_header = Authorization Bearer abc\n",
      "worker.conf:7: secret_header: expected \"Name /path/to/file\" (the "
      "value is read from the file)" },
    { W J "secret_header = Author:ization /etc/passwd\n",
      "worker.conf:7: secret_header: \"Author:ization\" is not a valid "
      "header name" },
    { W J "secret_header = Authorization /nonexistent/token\n",
      "worker.conf:7: secret_header: cannot read \"/nonexistent/token\": "
      "No such file or directory" },
    { W J "secret_header = Authorization /tmp\n",
      "worker.conf:7: secret_header: cannot read \"/tmp\": Is a directory" },
    { W "redis_password_file = redis.pw\n",
      "worker.conf:4: redis_password_file: expected the absolute path of a "
      "file holding the password" },
    { W "redis_password_file = /nonexistent/pw\n",
      "worker.conf:4: redis_password_file: cannot read \"/nonexistent/pw\": "
      "No such file or directory" },

    /* rules between values */
    { W J "backoff_base = 10m\n",
      "worker.conf:7: backoff_base: 10m is more than backoff_cap (5m)" },
    { W J "backoff_cap = 500ms\n",
      "worker.conf:7: backoff_cap: 500ms is less than backoff_base (1s)" },
    { W J "backoff_cap = 1s\nbackoff_base = 1001ms\n",
      "worker.conf:8: backoff_base: 1001ms is more than backoff_cap (1s)" },
    { W "done_retention = 1h\n",
      "worker.conf:4: done_retention: 1h is less than idempotency_window "
      "(1d): a retried request would find its claim but not the job" },
    { W "idempotency_window = 36h\n",
      "worker.conf:4: idempotency_window: 36h is more than done_retention "
      "(1d): a retried request would find its claim but not the job" },
    { W "visibility_timeout = 15s\n" J,
      "worker.conf:4: visibility_timeout: 15s must be more than the longest "
      "job timeout (10s, in [job a]) + 5s, or another worker takes over an "
      "attempt still running and runs the job twice" },
    { W J "timeout = 55s\n",
      "worker.conf:7: timeout: 55s must be less than visibility_timeout "
      "(1m) - 5s, or another worker takes over an attempt still running "
      "and runs the job twice" },
    { W J "[job b]\nconnector = http\nurl = http://b\ntimeout = 2m\n"
      "[worker2]\n",
      "worker.conf:11: [worker2]: unknown section" },
    { W J "[job b]\nconnector = http\nurl = http://b\ntimeout = 2m\n",
      "worker.conf:10: timeout: 2m must be less than visibility_timeout "
      "(1m) - 5s, or another worker takes over an attempt still running "
      "and runs the job twice" },
};


static void
test_errors(void **state)
{
    size_t  i;

    for (i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        print_message("case %zu: %s\n", i, errors[i].err);
        load_err(errors[i].text, errors[i].err);
    }
}


static void
test_error_odd_bytes(void **state)
{
    static const char  nul[] = W "concurrency = 1\0oops\n";

    /* a NUL in a line, a control byte in a key: still one line */
    load_err_n(nul, sizeof(nul) - 1, "worker.conf:4: (line): holds a NUL byte");
    load_err(W "con\x01" "currency = 1\n",
             "worker.conf:4: con?currency: unknown key in [worker]");
    load_err(W "[job \x1b[31m]\n",
             "worker.conf:4: [job ?[31m]: \"\\x1b[31m\" is not a valid job "
             "type: use 1 to 128 of A-Z a-z 0-9 . _ -");
}


static void
test_error_no_file(void **state)
{
    char        err[VW_CONF_ERR_LEN];
    vw_conf_t  *conf;

    conf = vw_conf_load("missing.conf", err, sizeof(err));
    assert_null(conf);
    assert_string_equal(err, "missing.conf: cannot open: No such file or "
                        "directory");
}


/* a file's secret never shows in a message, whatever is wrong with it */
static void
test_secret_files(void **state)
{
    char        text[1024], *big;
    size_t      n;
    vw_conf_t  *conf;

    write_file("empty", "", 0);
    write_file("newline", "\n", 1);
    write_file("inner", "Bearer SECRET-one\nSECRET-two\n", 29);
    write_file("cr", "SECRET-one\rx", 12);
    write_file("crlf", "SECRET-crlf\r\n", 13);
    write_file("twolf", "SECRET-two\n\n", 12);

    n = 64 * 1024 + 1;
    big = malloc(n);
    assert_non_null(big);
    memset(big, 'S', n);
    write_file("big", big, n);
    write_file("max", big, n - 1);
    free(big);

#define SH(file)                                                             \
    snprintf(text, sizeof(text),                                              \
             W J "secret_header = Authorization %s/%s\n", dir, file)

#define SH_ERR(file, what)                                                   \
    do {                                                                      \
        char  expected[512];                                                  \
        SH(file);                                                             \
        snprintf(expected, sizeof(expected),                                  \
                 "worker.conf:7: secret_header: \"%s/%s\" %s", dir, file,     \
                 what);                                                       \
        load_err(text, expected);                                             \
    } while (0)

    SH_ERR("empty", "is empty");
    SH_ERR("newline", "is empty");
    SH_ERR("inner", "holds CR, LF or another control character before its "
           "end");
    SH_ERR("cr", "holds CR, LF or another control character before its end");
    SH_ERR("twolf", "holds CR, LF or another control character before its "
           "end");
    SH_ERR("big", "is larger than 64k");

    SH("crlf");
    conf = load_ok(text);
    assert_string_equal(conf->jobs->headers->value, "SECRET-crlf");
    assert_int_equal(conf->jobs->headers->secret, 1);
    vw_conf_free(conf);

    SH("max");
    conf = load_ok(text);
    assert_int_equal(strlen(conf->jobs->headers->value), 64 * 1024);
    vw_conf_free(conf);

    /* the same reader for the Redis password */
    snprintf(text, sizeof(text), W "redis_password_file = %s/inner\n", dir);
    {
        char  expected[512];

        snprintf(expected, sizeof(expected),
                 "worker.conf:4: redis_password_file: \"%s/inner\" holds CR, "
                 "LF or another control character before its end", dir);
        load_err(text, expected);
    }

    snprintf(text, sizeof(text), W "redis_password_file = %s/crlf\n", dir);
    conf = load_ok(text);
    assert_string_equal(conf->redis_password, "SECRET-crlf");
    vw_conf_free(conf);

#undef SH_ERR
#undef SH
}


/* [idp <name>]: defaults, every key, the rules between them */
static void
test_idp(void **state)
{
    char                  cwdbuf[1024], text[8192], expected[2048];
    vw_conf_t            *conf;
    const vw_conf_idp_t  *idp;

    assert_non_null(getcwd(cwdbuf, sizeof(cwdbuf)));
    write_file("secret", "SECRET-client\n", 14);
    write_file("ca.pem", "not checked here\n", 17);

    conf = load_ok(W "[idp a]\ndiscovery = https://idp.example.com/\n");
    idp = vw_conf_idp(conf, "a", 1);
    assert_non_null(idp);
    assert_string_equal(idp->discovery, "https://idp.example.com/");
    assert_null(idp->jwks_url);
    assert_null(idp->introspection_url);
    assert_null(idp->ca_file);
    assert_null(idp->client_id);
    assert_null(idp->client_secret);
    assert_int_equal(idp->auth, VW_IDP_AUTH_BASIC);
    assert_int_equal(idp->min_refresh_ms, 60 * SEC);
    assert_int_equal(idp->max_age_cap_ms, 24 * HOUR);
    assert_int_equal(idp->timeout_ms, 5 * SEC);
    assert_null(vw_conf_idp(conf, "b", 1));
    assert_null(vw_conf_idp(conf, "aa", 2));
    vw_conf_free(conf);

    snprintf(text, sizeof(text), W "[idp corp.okta]\n"
             "jwks_url = https://idp.example.com/keys\n"
             "introspection_url = https://idp.example.com/introspect\n"
             "ca_file = %s/ca.pem\n"
             "client_id = vantage gateway\n"
             "client_secret_file = %s/secret\n"
             "auth = client_secret_post\n"
             "min_refresh = 30s\n"
             "max_age_cap = 1h\n"
             "timeout = 1500ms\n"
             "[idp b]\nintrospection_url = https://b.example.com/i\n"
             "client_id = b\nclient_secret_file = %s/secret\n",
             cwdbuf, cwdbuf, cwdbuf);
    conf = load_ok(text);
    idp = vw_conf_idp(conf, "corp.okta", 9);
    assert_non_null(idp);
    assert_string_equal(idp->jwks_url, "https://idp.example.com/keys");
    assert_string_equal(idp->introspection_url,
                        "https://idp.example.com/introspect");
    assert_string_equal(idp->client_id, "vantage gateway");
    assert_string_equal(idp->client_secret, "SECRET-client");
    assert_int_equal(idp->auth, VW_IDP_AUTH_POST);
    assert_int_equal(idp->min_refresh_ms, 30 * SEC);
    assert_int_equal(idp->max_age_cap_ms, HOUR);
    assert_int_equal(idp->timeout_ms, 1500);
    assert_non_null(strstr(idp->ca_file, "/ca.pem"));
    assert_non_null(vw_conf_idp(conf, "b", 1));
    vw_conf_free(conf);

    load_err(W "[idp]\n", "worker.conf:4: [idp]: needs a name: [idp <name>]");
    load_err(W "[idp a/b]\n", "worker.conf:4: [idp a/b]: \"a/b\" is not a "
             "valid idp name: use 1 to 128 of A-Z a-z 0-9 . _ -");
    load_err(W "[idp a]\n", "worker.conf:4: discovery: missing in [idp a]: "
             "it needs discovery, jwks_url or introspection_url");
    load_err(W "[idp a]\ndiscovery = http://idp.example.com\n",
             "worker.conf:5: discovery: \"http://idp.example.com\" is not "
             "an https:// URL");
    load_err(W "[idp a]\njwks_url = https:///keys\n",
             "worker.conf:5: jwks_url: \"https:///keys\" is not an https:// "
             "URL");
    load_err(W "[idp a]\ndiscovery = https://a\njwks_url = https://a/k\n",
             "worker.conf:6: jwks_url: [idp a] has discovery at line 5: "
             "give one of them, not both");
    load_err(W "[idp a]\nintrospection_url = https://a/i\n",
             "worker.conf:5: client_id: missing in [idp a]: "
             "introspection_url needs client_id and client_secret_file");
    load_err(W "[idp a]\nintrospection_url = https://a/i\nclient_id = x\n",
             "worker.conf:5: client_secret_file: missing in [idp a]: "
             "introspection_url needs client_id and client_secret_file");
    load_err(W "[idp a]\ndiscovery = https://a\nclient_id = x\n",
             "worker.conf:6: client_secret_file: missing in [idp a]: "
             "client_id and client_secret_file go together");
    /* the value is not quoted: it may be the secret itself */
    load_err(W "[idp a]\ndiscovery = https://a\n"
             "client_secret_file = SECRET-pasted\n",
             "worker.conf:6: client_secret_file: expected the absolute path "
             "of a file holding the client secret");
    load_err(W "[idp a]\ndiscovery = https://a\nca_file = ca.pem\n",
             "worker.conf:6: ca_file: \"ca.pem\" is not an absolute path");
    load_err(W "[idp a]\ndiscovery = https://a\nca_file = /nonexistent\n",
             "worker.conf:6: ca_file: cannot read \"/nonexistent\": No such "
             "file or directory");
    load_err(W "[idp a]\ndiscovery = https://a\nauth = basic\n",
             "worker.conf:6: auth: \"basic\" is not client_secret_basic or "
             "client_secret_post");
    load_err(W "[idp a]\ndiscovery = https://a\nmin_refresh = 500ms\n",
             "worker.conf:6: min_refresh: \"500ms\" is less than 1s");
    load_err(W "[idp a]\ndiscovery = https://a\ntimeout = 6m\n",
             "worker.conf:6: timeout: \"6m\" is more than 5m");
    load_err(W "[idp a]\ndiscovery = https://a\nmin_refresh = 2d\n",
             "worker.conf:6: min_refresh: 2d is more than max_age_cap (1d)");
    load_err(W "[idp a]\ndiscovery = https://a\nmax_age_cap = 10s\n",
             "worker.conf:6: max_age_cap: 10s is less than min_refresh "
             "(1m)");
    load_err(W "[idp a]\ndiscovery = https://a\n[idp a]\n",
             "worker.conf:6: [idp a]: duplicate section, first at line 4");
    load_err(W "[idp a]\ndiscovery = https://a\nurl = https://a\n",
             "worker.conf:6: url: unknown key in [idp a]");

    /* the secret file's content never shows */
    write_file("bad-secret", "SECRET-one\nSECRET-two\n", 22);
    snprintf(text, sizeof(text), W "[idp a]\ndiscovery = https://a\n"
             "client_secret_file = %s/bad-secret\n", cwdbuf);
    snprintf(expected, sizeof(expected), "worker.conf:6: client_secret_file: "
             "\"%s/bad-secret\" holds CR, LF or another control character "
             "before its end", cwdbuf);
    load_err(text, expected);
}


/*
 * [idp] by URL: the section whose key set URL (discovery or jwks_url) or
 * introspection_url a FETCH names; two sections may not share one
 */
static void
test_idp_url(void **state)
{
    char                  cwdbuf[1024], text[8192];
    vw_conf_t            *conf;
    const vw_conf_idp_t  *idp;

#define U(conf, url, keys)  vw_conf_idp_url(conf, url, strlen(url), keys)

    assert_non_null(getcwd(cwdbuf, sizeof(cwdbuf)));
    write_file("secret", "SECRET-client\n", 14);

    snprintf(text, sizeof(text), W
             "[idp a]\ndiscovery = https://idp.example.com/t1\n"
             "introspection_url = https://idp.example.com/introspect\n"
             "client_id = a\nclient_secret_file = %s/secret\n"
             "[idp b]\njwks_url = https://idp.example.com/keys\n"
             /* another kind's URL may be the same: the kind decides */
             "introspection_url = https://idp.example.com/t1\n"
             "client_id = b\nclient_secret_file = %s/secret\n",
             cwdbuf, cwdbuf);
    conf = load_ok(text);

    idp = U(conf, "https://idp.example.com/t1", 1);
    assert_non_null(idp);
    assert_string_equal(idp->name, "a");
    idp = U(conf, "https://idp.example.com/keys", 1);
    assert_non_null(idp);
    assert_string_equal(idp->name, "b");
    idp = U(conf, "https://idp.example.com/introspect", 0);
    assert_non_null(idp);
    assert_string_equal(idp->name, "a");
    idp = U(conf, "https://idp.example.com/t1", 0);
    assert_non_null(idp);
    assert_string_equal(idp->name, "b");

    /* exactly: no other kind, no prefix, no trailing slash, no case */
    assert_null(U(conf, "https://idp.example.com/introspect", 1));
    assert_null(U(conf, "https://idp.example.com/keys", 0));
    assert_null(U(conf, "https://idp.example.com/t", 1));
    assert_null(U(conf, "https://idp.example.com/t1/", 1));
    assert_null(U(conf, "https://IDP.example.com/t1", 1));
    assert_null(U(conf, "a", 1));
    assert_null(U(NULL, "https://idp.example.com/t1", 1));

    /* by its length: a frame's field is not NUL-terminated */
    idp = vw_conf_idp_url(conf, "https://idp.example.com/t1x", 26, 1);
    assert_non_null(idp);
    assert_string_equal(idp->name, "a");
    vw_conf_free(conf);

    load_err(W "[idp a]\ndiscovery = https://i/t\n"
             "[idp b]\ndiscovery = https://i/t\n",
             "worker.conf:7: discovery: the same URL as discovery in "
             "[idp a] at line 5: a URL names one [idp] only");
    load_err(W "[idp a]\njwks_url = https://i/k\n"
             "[idp b]\n\njwks_url = https://i/k\n",
             "worker.conf:8: jwks_url: the same URL as jwks_url in "
             "[idp a] at line 5: a URL names one [idp] only");
    /* across the two keys, either way round */
    load_err(W "[idp a]\ndiscovery = https://i/t\n"
             "[idp b]\njwks_url = https://i/t\n",
             "worker.conf:7: jwks_url: the same URL as discovery in "
             "[idp a] at line 5: a URL names one [idp] only");
    load_err(W "[idp a]\njwks_url = https://i/t\n"
             "[idp b]\ndiscovery = https://i/t\n",
             "worker.conf:7: discovery: the same URL as jwks_url in "
             "[idp a] at line 5: a URL names one [idp] only");

    snprintf(text, sizeof(text), W
             "[idp a]\ndiscovery = https://i/a\n"
             "introspection_url = https://i/in\n"
             "client_id = a\nclient_secret_file = %s/secret\n"
             "[idp b]\ndiscovery = https://i/b\n"
             "client_id = b\nclient_secret_file = %s/secret\n"
             "introspection_url = https://i/in\n",
             cwdbuf, cwdbuf);
    load_err(text, "worker.conf:13: introspection_url: the same URL as "
             "introspection_url in [idp a] at line 6: a URL names one "
             "[idp] only");

#undef U
}


/* key id of bytes(range(32)), from Python's hmac (test_vc_vault.c) */
#define VAULT_K1_ID  "53144f4a1b49a635"

static void
test_vault(void **state)
{
    int             i;
    char            text[1024], expected[1024];
    unsigned char   raw[32];
    vw_conf_t      *conf;

    for (i = 0; i < 32; i++) {
        raw[i] = (unsigned char) i;
    }

    write_file("vault.key", (char *) raw, 32);
    assert_int_equal(chmod("vault.key", 0600), 0);
    write_file("open.key", (char *) raw, 32);
    assert_int_equal(chmod("open.key", 0644), 0);
    write_file("text.key", "0123456789abcdef0123456789abcdef", 32);
    assert_int_equal(chmod("text.key", 0600), 0);

    /* none: no key, nothing required */
    conf = load_ok(W J);
    assert_null(conf->vault.key_file);
    assert_null(conf->vault.require);
    assert_int_equal(conf->vault.nrequire, 0);
    vw_conf_free(conf);

    snprintf(text, sizeof(text), W J "[vault]\nkey_file = %s/vault.key\n"
             "require = salesforce.client_secret  docusign.key\n"
             "require = hubspot/token@v2\n", dir);
    conf = load_ok(text);
    snprintf(expected, sizeof(expected), "%s/vault.key", dir);
    assert_string_equal(conf->vault.key_file, expected);
    assert_string_equal(conf->vault.key.id_hex, VAULT_K1_ID);
    assert_memory_equal(conf->vault.key.key, raw, 32);
    assert_int_equal(conf->vault.nrequire, 3);
    assert_string_equal(conf->vault.require[0], "salesforce.client_secret");
    assert_string_equal(conf->vault.require[1], "docusign.key");
    assert_string_equal(conf->vault.require[2], "hubspot/token@v2");
    assert_null(conf->vault.require[3]);
    vw_conf_free(conf);

    /* anywhere in the file, without require */
    snprintf(text, sizeof(text), "[vault]\nkey_file = %s/vault.key\n" W J,
             dir);
    conf = load_ok(text);
    assert_string_equal(conf->vault.key.id_hex, VAULT_K1_ID);
    assert_int_equal(conf->vault.nrequire, 0);
    vw_conf_free(conf);

    /* each message names dir, or swallows it with "%.0s" */
#define VAULT_ERR(body, line_and_message)                                    \
    do {                                                                      \
        snprintf(text, sizeof(text), W J "[vault]\n" body, dir);              \
        snprintf(expected, sizeof(expected), "worker.conf:"                   \
                 line_and_message, dir);                                      \
        load_err(text, expected);                                             \
    } while (0)

    VAULT_ERR("require = a\n%.0s", "7: key_file: missing in [vault]%.0s");
    VAULT_ERR("key_file = vault.key\n%.0s", "8: key_file: expected the "
              "absolute path of a file holding the master key%.0s");
    VAULT_ERR("key_file = %s/open.key\n", "8: key_file: \"%s/open.key\": "
              "permissions 0644 are too open: a master key must be readable "
              "by its owner alone (chmod 600)");
    VAULT_ERR("key_file = %s/text.key\n", "8: key_file: \"%s/text.key\": "
              "not a master key: 32 random bytes, 64 hex digits or the "
              "base64 of 32 bytes expected");
    VAULT_ERR("key_file = %s/none.key\n", "8: key_file: \"%s/none.key\": "
              "cannot open: No such file or directory");
    VAULT_ERR("key_file = %s/vault.key\nkey_file = /x\n",
              "9: key_file: duplicate key, first at line 8%.0s");
    VAULT_ERR("key_file = %s/vault.key\nrequire = a a\n",
              "9: require: \"a\" is named twice%.0s");
    VAULT_ERR("key_file = %s/vault.key\nrequire = a\nrequire = b a\n",
              "10: require: \"a\" is named twice%.0s");
    VAULT_ERR("key_file = %s/vault.key\nrequire = a\"b\n",
              "9: require: \"a\\\"b\" is not a secret name: 1 to 128 "
              "printable ASCII characters without space, '\"' or '\\'%.0s");
    VAULT_ERR("key_file = %s/vault.key\nkeyfile = x\n",
              "9: keyfile: unknown key in [vault]%.0s");
    VAULT_ERR("key_file = %s/vault.key\n[vault]\n",
              "9: [vault]: duplicate section, first at line 7%.0s");

    load_err(W J "[vault main]\n",
             "worker.conf:7: [vault main]: [vault] takes no name");

#undef VAULT_ERR
}


/* [connection] and the connector jobs that use one (docs/CONNECTORS.md) */
static void
test_connection(void **state)
{
    char                         text[2048], head[512];
    unsigned char                raw[32];
    vw_conf_t                   *conf;
    vw_conf_connection_t        *copy;
    const vw_conf_job_t         *job;
    const vw_conf_connection_t  *sf, *hs;

    memset(raw, 7, sizeof(raw));
    write_file("vault.key", (char *) raw, 32);
    assert_int_equal(chmod("vault.key", 0600), 0);

    /* lines 1-5: [worker] and [vault] */
    snprintf(head, sizeof(head), W "[vault]\nkey_file = %s/vault.key\n", dir);

#define SF  "[connection sf]\nvendor = salesforce\nauth = jwt_bearer\n"     \
            "client_id = 3MVG9x\nusername = u@acme.example\n"              \
            "private_key = sf.key\n"
#define HS  "[connection hs]\nvendor = hubspot\nauth = private_app\n"        \
            "token = hs.pat\n"

    snprintf(text, sizeof(text), "%s" SF HS
             "[job s]\nconnector = salesforce\nconnection = sf\n"
             "operation = upsert\nobject = Contact\n"
             "external_id = Vantage_Id__c\n"
             "[job h]\nconnector = hubspot\nconnection = hs\n"
             "operation = batch_create\nobject = contacts\n", head);
    conf = load_ok(text);

    sf = vw_conf_connection(conf, "sf");
    assert_non_null(sf);
    assert_int_equal(sf->vendor, VW_VENDOR_SALESFORCE);
    assert_int_equal(sf->auth, VW_OAUTH_JWT_BEARER);
    assert_string_equal(sf->login_url, "https://login.salesforce.com");
    assert_string_equal(sf->token_url,
                        "https://login.salesforce.com/services/oauth2/token");
    assert_string_equal(sf->audience, "https://login.salesforce.com");
    assert_string_equal(sf->api_version, "62.0");
    assert_string_equal(sf->private_key, "sf.key");
    assert_null(sf->base_url);
    assert_int_equal(sf->limit_share, 90);
    assert_int_equal(sf->limit_recheck_ms, 60000);
    assert_int_equal(sf->token_lifetime_ms, 3600000);
    assert_string_equal(sf->target->name, "connection.sf");

    hs = vw_conf_connection(conf, "hs");
    assert_non_null(hs);
    assert_string_equal(hs->base_url, "https://api.hubapi.com");
    assert_string_equal(hs->token_url,
                        "https://api.hubapi.com/oauth/v1/token");
    assert_string_equal(hs->token, "hs.pat");
    assert_null(vw_conf_connection(conf, "nope"));

    job = vw_conf_job(conf, "s", 1);
    assert_ptr_equal(job->connection, sf);
    assert_ptr_equal(job->target, sf->target);
    assert_string_equal(job->operation, "upsert");
    assert_string_equal(job->object, "Contact");
    assert_string_equal(job->id_field, "Vantage_Id__c");
    assert_null(job->url);

    job = vw_conf_job(conf, "h", 1);
    assert_ptr_equal(job->connection, hs);
    assert_null(job->id_field);

    copy = vw_conf_connection_copy(sf);
    assert_non_null(copy);
    assert_string_equal(copy->name, "sf");
    assert_string_equal(copy->token_url, sf->token_url);
    assert_ptr_not_equal(copy->token_url, sf->token_url);
    assert_null(copy->target);
    assert_null(copy->next);
    vw_conf_connection_free(copy);

    vw_conf_free(conf);

#define CONN_ERR(body, message)                                               \
    do {                                                                      \
        snprintf(text, sizeof(text), "%s" body, head);                       \
        load_err(text, "worker.conf:" message);                              \
    } while (0)

    CONN_ERR("[connection sf]\nauth = jwt_bearer\n",
             "6: vendor: missing in [connection sf]");
    CONN_ERR("[connection sf]\nvendor = oracle\n",
             "7: vendor: \"oracle\" is not salesforce or hubspot");
    CONN_ERR("[connection sf]\nvendor = salesforce\nauth = jwt_bearer\n"
             "client_id = x\nprivate_key = k\n",
             "6: username: missing in [connection sf]: auth jwt_bearer "
             "needs it");
    CONN_ERR(SF "client_secret = s\n",
             "12: client_secret: auth jwt_bearer does not use it");
    CONN_ERR("[connection sf]\nvendor = salesforce\nauth = private_app\n",
             "8: auth: private_app is HubSpot's: a Salesforce connection "
             "takes jwt_bearer, client_credentials or refresh_token");
    CONN_ERR("[connection h]\nvendor = hubspot\nauth = refresh_token\n"
             "client_id = c\nrefresh_token = r\n",
             "6: client_secret: missing in [connection h]: auth "
             "refresh_token needs it");
    CONN_ERR(SF "token = -----BEGIN PRIVATE KEY-----\n",
             "12: token: expected the name of a vault record (vantagectl "
             "vault list), not a value: the secret itself never goes in "
             "this file");
    CONN_ERR(SF "api_version = sixty\n",
             "12: api_version: \"sixty\" is not a Salesforce API version, "
             "e.g. 62.0");
    CONN_ERR(SF "base_url = https://x.example\n",
             "12: base_url: a Salesforce connection takes its instance_url "
             "from the token");
    CONN_ERR(HS "limit_share = 80\n",
             "10: limit_share: is Salesforce's: [connection hs] is a "
             "HubSpot connection");
    CONN_ERR(SF "login_url = http://login.example\n",
             "12: login_url: \"http://login.example\" is not an https:// "
             "URL");
    CONN_ERR(SF "target = t\n", "12: target: no section [target t]");
    CONN_ERR(SF "[job j]\nconnector = salesforce\noperation = create\n"
             "object = Contact\n",
             "12: connection: missing in [job j]");
    CONN_ERR(SF "[job j]\nconnector = salesforce\nconnection = nope\n",
             "14: connection: no section [connection nope]");
    CONN_ERR(SF HS "[job j]\nconnector = hubspot\nconnection = sf\n"
             "operation = create\nobject = contacts\n",
             "18: connection: [connection sf] is a Salesforce account, and "
             "[job j] uses the hubspot connector");
    CONN_ERR(SF "[job j]\nconnector = salesforce\nconnection = sf\n"
             "operation = merge\nobject = Contact\n",
             "15: operation: \"merge\" is not an operation of the "
             "salesforce connector (docs/CONNECTORS.md)");
    CONN_ERR(SF "[job j]\nconnector = salesforce\nconnection = sf\n"
             "operation = upsert\nobject = Contact\n",
             "12: external_id: missing in [job j]: upsert needs the field "
             "that identifies a record");
    CONN_ERR(SF "[job j]\nconnector = salesforce\nconnection = sf\n"
             "operation = create\nobject = Contact\nid_property = email\n",
             "17: id_property: is HubSpot's: [job j] uses the salesforce "
             "connector");
    CONN_ERR(SF "[job j]\nconnector = salesforce\nconnection = sf\n"
             "operation = create\nobject = Contact\nurl = https://x.example\n",
             "17: url: belongs to the http connector: the salesforce "
             "connector builds its own requests");
    CONN_ERR(SF "[job j]\nconnector = http\nurl = https://x.example\n"
             "operation = create\n",
             "15: connector: [job j] is an http job: connection, operation, "
             "object, external_id, id_property and mapping belong to the "
             "salesforce and hubspot connectors");

    /* [subscription]: a Salesforce channel whose events become jobs */
    snprintf(text, sizeof(text), "%s" SF HS
             "[job h]\nconnector = hubspot\nconnection = hs\n"
             "operation = create\nobject = contacts\n"
             "[subscription c]\nconnection = sf\n"
             "channel = /data/ContactChangeEvent\njob = h\ntenant = acme\n",
             head);
    conf = load_ok(text);
    assert_non_null(vw_conf_subscription(conf, "c"));
    assert_ptr_equal(vw_conf_subscription(conf, "c")->connection,
                     vw_conf_connection(conf, "sf"));
    assert_string_equal(conf->subscriptions->channel,
                        "/data/ContactChangeEvent");
    assert_string_equal(conf->subscriptions->job, "h");
    assert_string_equal(conf->subscriptions->tenant, "acme");
    assert_int_equal(conf->subscriptions->replay, VW_REPLAY_LATEST);
    vw_conf_free(conf);

    CONN_ERR(SF "[subscription c]\nconnection = sf\nchannel = /topic/x\n",
             "14: channel: \"/topic/x\" is not a Streaming API channel: "
             "/data/<Object>ChangeEvent, /data/ChangeEvents or "
             "/event/<Name>__e");
    CONN_ERR(HS "[subscription c]\nconnection = hs\n"
             "channel = /event/Sync__e\njob = j\ntenant = t\n",
             "11: connection: [connection hs] is not a Salesforce account: "
             "only Salesforce has the Streaming API");
    CONN_ERR(SF "[subscription c]\nconnection = sf\n"
             "channel = /event/Sync__e\njob = j\ntenant = t\n",
             "15: job: no section [job j]: each event becomes a job of that "
             "type");
    CONN_ERR(SF "[subscription c]\nconnection = sf\n"
             "channel = /event/Sync__e\njob = j\nreplay = all\n",
             "16: replay: \"all\" is not latest or earliest");

    /* then: a read's record becomes a job of another type */
    snprintf(text, sizeof(text), "%s" SF HS
             "[job r]\nconnector = salesforce\nconnection = sf\n"
             "operation = read\nobject = Contact\nthen = h\n"
             "[job h]\nconnector = hubspot\nconnection = hs\n"
             "operation = upsert\nobject = contacts\nid_property = email\n",
             head);
    conf = load_ok(text);
    assert_string_equal(vw_conf_job(conf, "r", 1)->then, "h");
    assert_null(vw_conf_job(conf, "h", 1)->then);
    vw_conf_free(conf);

    CONN_ERR(SF "[job r]\nconnector = salesforce\nconnection = sf\n"
             "operation = read\nobject = Contact\nthen = x\n",
             "17: then: no section [job x]");
    CONN_ERR(SF "[job r]\nconnector = salesforce\nconnection = sf\n"
             "operation = read\nobject = Contact\nthen = r\n",
             "17: then: [job r] names itself: its output would become its "
             "own input");
    CONN_ERR(SF "[job r]\nconnector = salesforce\nconnection = sf\n"
             "operation = create\nobject = Contact\nthen = r2\n"
             "[job r2]\nconnector = salesforce\nconnection = sf\n"
             "operation = read\nobject = Contact\n",
             "17: then: a create has no record to pass on: only read "
             "operations (read) have an output");

    /* a connection's secrets are vault names: the file needs [vault] */
    load_err(W SF, "worker.conf:4: vendor: [connection sf] names vault "
             "records, and the file has no [vault] with its key_file");

#undef CONN_ERR
#undef SF
#undef HS
}


int
main(void)
{
    const struct CMUnitTest  tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_has_the_defaults, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_every_key, setup, teardown),
        cmocka_unit_test_setup_teardown(test_units, setup, teardown),
        cmocka_unit_test_setup_teardown(test_listen_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_targets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crlf, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_long_values, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_odd_bytes, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_error_no_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_secret_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idp_url, setup, teardown),
        cmocka_unit_test_setup_teardown(test_vault, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
