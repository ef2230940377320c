/* main.c -- vantage-worker entry point: options, event loop, signals */

/*
 * The worker runs one libevent loop.  It serves the hand-off socket
 * (server.c: PING, DISPATCH and JOB_STATUS, jobs made durable in Redis
 * through queue.c), reads its configuration file (conf.c) at start and
 * again on SIGHUP, and, when started with a file, runs the jobs (engine.c:
 * the consumer group, retries, dead letters, ordering; http.c: deliveries
 * over curl's multi interface).  With a [metrics] section it serves
 * /metrics, /healthz and /readyz on the same loop (metrics_http.c).
 * With [alerting] it evaluates the [alert] rules there too (alert.c).
 * SIGINT and SIGTERM drain the engine, then end the loop.
 *
 * The configuration in force lives here alone (vw_conf_current()), so that
 * a reload is one pointer swap between two callbacks.
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event.h>

#include "vw_alert.h"
#include "vw_check_connection.h"
#include "vw_cometd.h"
#include "vw_conf.h"
#include "vw_core.h"
#include "vw_engine.h"
#include "vw_fetch.h"
#include "vw_metrics.h"
#include "vw_vault.h"


/* the long option without a short one */
#define VW_MAIN_OPT_CHECK  256
#define VW_MAIN_OPT_CHECK_CONNECTION  257


/* what the command line set: NULL or 0 where it did not */
typedef struct {
    const char                 *conf_file;   /* -c */
    const char                 *check_file;  /* --check */
    const char                 *connection;  /* --check-connection */
    const char                 *listen;      /* the socket's path */
    const char                 *redis;
    size_t                      max_frame;
    int                         help;
    int                         version;
} vw_main_args_t;


static void vw_main_usage(FILE *f);
static int vw_main_parse_args(int argc, char **argv, vw_main_args_t *args);
static int vw_main_check(const char *file);
static int vw_main_override(vw_conf_t *conf, const vw_main_args_t *args);
static void vw_main_count(const vw_conf_t *conf, char *jobs, char *targets);
static void vw_main_signal_handler(evutil_socket_t sig, short what, void *arg);
static void vw_main_reload(evutil_socket_t sig, short what, void *arg);
static void vw_main_drained(void *arg);
static int vw_main_consumer(const vw_conf_t *conf, char *buf, size_t len);


/* see vw_conf_current() in vw_conf.h; the engine asks, never keeps it */
static vw_conf_t    *vw_main_conf;
static vw_engine_t  *vw_main_engine;
static vw_cometd_t  *vw_main_cometd;
static vw_alert_t   *vw_main_alert;
static vw_fetch_t   *vw_main_fetch;


const vw_conf_t *
vw_conf_current(void)
{
    return vw_main_conf;
}


int
main(int argc, char **argv)
{
    int                    rc, curl;
    char                   err[VW_CONF_ERR_LEN], jobs[16], targets[16],
                           consumer[300];
    vw_conf_t             *conf;
    vw_queue_t            *queue;
    vw_server_t           *server;
    vw_fetch_t            *fetch;
    vw_metrics_http_t     *metrics;
    struct event          *sigint, *sigterm, *sighup;
    struct event_base     *base;
    static vw_main_args_t  args;   /* the reload reads it again */

    if (vw_main_parse_args(argc, argv, &args) != VW_OK) {
        fprintf(stderr, "Try '%s --help'.\n", VW_NAME);
        return 2;
    }

    if (args.help) {
        vw_main_usage(stdout);
        return 0;
    }

    if (args.version) {
        printf("%s %s (hand-off and queue; no connectors yet), libevent %s\n",
               VW_NAME, VW_VERSION, event_get_version());
        return 0;
    }

    if (args.check_file != NULL) {
        return vw_main_check(args.check_file);
    }

    if (args.conf_file == NULL
        && (args.listen == NULL || args.redis == NULL))
    {
        fprintf(stderr, "%s: --listen unix:<path> and --redis <address> "
                "are required without -c\nTry '%s --help'.\n",
                VW_NAME, VW_NAME);
        return 2;
    }

    if (args.conf_file != NULL) {
        conf = vw_conf_load(args.conf_file, err, sizeof(err));
        if (conf == NULL) {
            fprintf(stderr, "%s: %s\n", VW_NAME, err);
            return 1;
        }

    } else {
        conf = vw_conf_new();
    }

    if (conf == NULL || vw_main_override(conf, &args) != VW_OK) {
        fprintf(stderr, "%s: out of memory\n", VW_NAME);
        vw_conf_free(conf);
        return 1;
    }

    vw_main_conf = conf;

    if (args.connection != NULL) {
        rc = vw_check_connection(conf, args.connection);
        vw_conf_free(conf);
        return rc;
    }

    if (args.conf_file != NULL) {
        vw_main_count(conf, jobs, targets);
        vw_log("info", "configuration loaded", "file", conf->file,
               "jobs", jobs, "targets", targets, NULL);
    }

    /*
     * A peer that goes away mid-write must come back as EPIPE on the socket
     * that wrote, not kill the process; no socket exists yet, but every
     * later one relies on this.
     */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        fprintf(stderr, "%s: signal(SIGPIPE) failed: %s\n",
                VW_NAME, strerror(errno));
        vw_conf_free(conf);
        return 1;
    }

    base = event_base_new();
    if (base == NULL) {
        fprintf(stderr, "%s: event_base_new() failed\n", VW_NAME);
        vw_conf_free(conf);
        return 1;
    }

    rc = 1;
    curl = 0;
    sigterm = NULL;
    sighup = NULL;
    queue = NULL;
    server = NULL;
    fetch = NULL;
    metrics = NULL;

    sigint = evsignal_new(base, SIGINT, vw_main_signal_handler, base);
    if (sigint == NULL || evsignal_add(sigint, NULL) != 0) {
        fprintf(stderr, "%s: cannot handle SIGINT\n", VW_NAME);
        goto done;
    }

    sigterm = evsignal_new(base, SIGTERM, vw_main_signal_handler, base);
    if (sigterm == NULL || evsignal_add(sigterm, NULL) != 0) {
        fprintf(stderr, "%s: cannot handle SIGTERM\n", VW_NAME);
        goto done;
    }

    /* without -c there is nothing to reload, but HUP must not kill */
    sighup = evsignal_new(base, SIGHUP, vw_main_reload, &args);
    if (sighup == NULL || evsignal_add(sighup, NULL) != 0) {
        fprintf(stderr, "%s: cannot handle SIGHUP\n", VW_NAME);
        goto done;
    }

    if (vw_queue_check(conf->redis, conf->redis_password) == VW_DECLINED) {
        goto done;
    }

    /* the secrets [vault] requires must open before a job is taken */
    if (vw_vault_check(conf) == VW_DECLINED) {
        goto done;
    }

    queue = vw_queue_create(base, conf->redis, conf->redis_password);
    if (queue == NULL) {
        goto done;
    }

    server = vw_server_create(base, conf->listen, conf->listen_mode,
                              conf->listen_gid, conf->max_frame, queue);
    if (server == NULL) {
        goto done;
    }

    vw_server_set_conf(server, vw_conf_current);

    /* jobs run only where a file says how: without one, DISPATCH alone */
    if (args.conf_file != NULL) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        curl = 1;

        vw_main_consumer(conf, consumer, sizeof(consumer));

        vw_main_engine = vw_engine_create(base, conf->redis,
                                          conf->redis_password, consumer,
                                          vw_conf_current);
        if (vw_main_engine == NULL) {
            goto done;
        }

        /* [subscription]s: Salesforce's change events in, as jobs */
        vw_main_cometd = vw_cometd_create(base,
                                          vw_engine_services(vw_main_engine),
                                          queue, vw_conf_current);
        if (vw_main_cometd == NULL) {
            goto done;
        }

        /* FETCH: the [idp] sections; the set of them may change on reload */
        fetch = vw_fetch_create(base);
        if (fetch == NULL) {
            goto done;
        }

        vw_server_set_fetch(server, fetch);
        vw_main_fetch = fetch;

        /* [alerting]: it may come with a reload, so the timer always runs */
        vw_main_alert = vw_alert_create(base, queue, consumer);
        if (vw_main_alert == NULL) {
            goto done;
        }
    }

    /* [metrics]: its address is read at start only, as listen is */
    metrics = vw_metrics_http_create(base, conf, queue, vw_main_engine);
    if (metrics == NULL) {
        goto done;
    }

    /* the signal events stay pending, so the loop runs until one fires */
    if (event_base_dispatch(base) == -1) {
        fprintf(stderr, "%s: event loop failed\n", VW_NAME);
        goto done;
    }

    vw_log("info", "stopped", NULL);
    rc = 0;

done:

    /* before the engine, whose HTTP client and token manager it uses */
    vw_cometd_free(vw_main_cometd);
    vw_engine_free(vw_main_engine);
    vw_server_free(server);
    /* after the server: it answers the FETCHes of closed connections */
    vw_main_fetch = NULL;
    vw_fetch_free(fetch);
    vw_queue_free(queue);
    /* after the queue, whose freeing answers the rules' and the
       sampler's commands */
    vw_alert_free(vw_main_alert);
    vw_metrics_http_free(metrics);

    if (sighup != NULL) {
        event_free(sighup);
    }

    if (sigterm != NULL) {
        event_free(sigterm);
    }

    if (sigint != NULL) {
        event_free(sigint);
    }

    event_base_free(base);

    vw_conf_free(vw_main_conf);
    vw_main_conf = NULL;

    if (curl) {
        curl_global_cleanup();
    }

    return rc;
}


static void
vw_main_usage(FILE *f)
{
    fprintf(f,
        "Usage: %s -c <file> [options]\n"
        "       %s --listen unix:<path> --redis <host:port|unix:path>\n"
        "       %s --check <file>\n"
        "\n"
        "The Vantage sidecar worker.  It takes jobs from ngx_vantage_module\n"
        "on a Unix socket (docs/PROTOCOL.md) and makes them durable in\n"
        "Redis before it acknowledges them.  It does not run them yet.\n"
        "SIGHUP re-reads the configuration file (docs/WORKER.md).\n"
        "\n"
        "Options:\n"
        "  -c, --config <file>       the configuration file\n"
        "      --check <file>        validate the file and exit (0: valid)\n"
        "      --check-connection <name>  get a token for that [connection]\n"
        "                            of the -c file, print the outcome as\n"
        "                            JSON (never the token) and exit\n"
        "  -l, --listen unix:<path>  the socket to serve (overrides listen)\n"
        "  -r, --redis <address>     Redis: host:port or unix:<path>\n"
        "                            (overrides redis)\n"
        "  -m, --max-frame <bytes>   largest frame accepted (default %d;\n"
        "                            overrides max_frame)\n"
        "  -h, --help                show this help and exit\n"
        "  -v, --version             show the version and exit\n",
        VW_NAME, VW_NAME, VW_NAME, VW_CONF_MAX_FRAME_DEFAULT);
}


/*
 * Fills args from the command line.  Returns VW_OK, or VW_ERROR on an
 * unknown option, a missing argument or a stray operand (getopt has then
 * already printed why, or this function has).
 */
static int
vw_main_parse_args(int argc, char **argv, vw_main_args_t *args)
{
    int                         c;
    char                       *end;
    static const struct option  longopts[] = {
        { "config",  required_argument, NULL, 'c' },
        { "check",   required_argument, NULL, VW_MAIN_OPT_CHECK },
        { "check-connection", required_argument, NULL,
          VW_MAIN_OPT_CHECK_CONNECTION },
        { "listen",  required_argument, NULL, 'l' },
        { "redis",   required_argument, NULL, 'r' },
        { "max-frame", required_argument, NULL, 'm' },
        { "help",    no_argument,       NULL, 'h' },
        { "version", no_argument,       NULL, 'v' },
        { NULL, 0, NULL, 0 }
    };

    memset(args, 0, sizeof(vw_main_args_t));

    while ((c = getopt_long(argc, argv, "c:l:r:m:hv", longopts, NULL))
           != -1)
    {
        switch (c) {

        case 'l':
            if (strncmp(optarg, "unix:", 5) != 0 || optarg[5] == '\0') {
                fprintf(stderr, "%s: --listen takes unix:<path>, not \"%s\"\n",
                        VW_NAME, optarg);
                return VW_ERROR;
            }

            args->listen = optarg + 5;
            break;

        case 'r':
            args->redis = optarg;
            break;

        case 'm':
            errno = 0;
            args->max_frame = strtoul(optarg, &end, 10);

            if (errno || *end != '\0' || args->max_frame < 64
                || args->max_frame > 0x7fffffff)
            {
                fprintf(stderr, "%s: --max-frame takes a number of bytes "
                        "from 64 to 2147483647, not \"%s\"\n",
                        VW_NAME, optarg);
                return VW_ERROR;
            }

            break;

        case 'c':
            args->conf_file = optarg;
            break;

        case VW_MAIN_OPT_CHECK:
            args->check_file = optarg;
            break;

        case VW_MAIN_OPT_CHECK_CONNECTION:
            args->connection = optarg;
            break;

        case 'h':
            args->help = 1;
            break;

        case 'v':
            args->version = 1;
            break;

        default:
            return VW_ERROR;
        }
    }

    if (optind < argc) {
        fprintf(stderr, "%s: unexpected argument \"%s\"\n",
                VW_NAME, argv[optind]);
        return VW_ERROR;
    }

    return VW_OK;
}


/*
 * SIGINT or SIGTERM: the engine, when there is one, stops taking work and
 * finishes or puts back what it holds within shutdown_timeout; then the
 * loop ends and main() frees everything.
 */
static void
vw_main_signal_handler(evutil_socket_t sig, short what, void *arg)
{
    struct event_base  *base = arg;

    vw_log("info", "exiting", "signal", sig == SIGINT ? "SIGINT" : "SIGTERM",
           NULL);

    /* no new event is taken: what is not checkpointed comes again */
    vw_cometd_free(vw_main_cometd);
    vw_main_cometd = NULL;

    if (vw_main_engine != NULL) {
        vw_engine_drain(vw_main_engine, vw_main_drained, base);
        return;
    }

    event_base_loopbreak(base);
}


/*
 * --check: loads the file as a start would, without Redis or the socket,
 * and says on stderr whether it is valid.  Returns the exit code.
 */
static int
vw_main_check(const char *file)
{
    char        err[VW_CONF_ERR_LEN];
    vw_conf_t  *conf;

    conf = vw_conf_load(file, err, sizeof(err));

    if (conf == NULL) {
        fprintf(stderr, "%s: %s\n", VW_NAME, err);
        return 1;
    }

    vw_conf_free(conf);

    fprintf(stderr, "%s: %s: configuration is valid\n", VW_NAME, file);

    return 0;
}


/*
 * --listen, --redis and --max-frame win over the file, at start and at
 * every reload.  Returns VW_OK, or VW_ERROR when out of memory.
 */
static int
vw_main_override(vw_conf_t *conf, const vw_main_args_t *args)
{
    char  *s;

    if (args->listen != NULL) {
        s = strdup(args->listen);
        if (s == NULL) {
            return VW_ERROR;
        }

        free(conf->listen);
        conf->listen = s;
    }

    if (args->redis != NULL) {
        s = strdup(args->redis);
        if (s == NULL) {
            return VW_ERROR;
        }

        free(conf->redis);
        conf->redis = s;
    }

    if (args->max_frame != 0) {
        conf->max_frame = args->max_frame;
    }

    return VW_OK;
}


/* the numbers of jobs and targets, for the log; 16 bytes each */
static void
vw_main_count(const vw_conf_t *conf, char *jobs, char *targets)
{
    unsigned                 n;
    const vw_conf_job_t     *job;
    const vw_conf_target_t  *t;

    n = 0;
    for (job = conf->jobs; job != NULL; job = job->next) {
        n++;
    }

    snprintf(jobs, 16, "%u", n);

    n = 0;
    for (t = conf->targets; t != NULL; t = t->next) {
        n++;
    }

    snprintf(targets, 16, "%u", n);
}


static int
vw_main_differ(const char *a, const char *b)
{
    if (a == NULL || b == NULL) {
        return a != b;
    }

    return strcmp(a, b) != 0;
}


/*
 * SIGHUP: reads the file again and, when it is valid, puts it in force.
 * Targets and job types change at once.  The socket, the Redis connection
 * and the consumer name were set up from the old values, so those stay in
 * force until a restart, and the log says which of them changed.  A bad
 * file is logged and changes nothing.
 */
static void
vw_main_reload(evutil_socket_t sig, short what, void *arg)
{
    char                     err[VW_CONF_ERR_LEN], restart[128], jobs[16],
                             targets[16], *tmp;
    size_t                   tmp_frame;
    vw_conf_t               *conf, *old;
    vw_conf_metrics_t        metrics;
    const vw_main_args_t    *args = arg;

    if (args->conf_file == NULL) {
        vw_log("warn", "SIGHUP ignored: no configuration file (-c) to "
               "reload", NULL);
        return;
    }

    conf = vw_conf_load(args->conf_file, err, sizeof(err));

    if (conf == NULL) {
        vw_log("error", "configuration not reloaded: the old one stays in "
               "force", "reason", err, NULL);
        return;
    }

    if (vw_main_override(conf, args) != VW_OK) {
        vw_log("error", "configuration not reloaded: the old one stays in "
               "force", "reason", "out of memory", NULL);
        vw_conf_free(conf);
        return;
    }

    old = vw_main_conf;
    restart[0] = '\0';

#define vw_restart(name)                                                     \
    snprintf(restart + strlen(restart), sizeof(restart) - strlen(restart),   \
             "%s%s", restart[0] ? " " : "", name)

    /* values swapped, so the new conf holds what the worker still uses */
#define vw_keep(field, name)                                                 \
    if (vw_main_differ(conf->field, old->field)) {                          \
        vw_restart(name);                                                    \
    }                                                                        \
    tmp = conf->field;                                                       \
    conf->field = old->field;                                                \
    old->field = tmp

    vw_keep(listen, "listen");
    vw_keep(listen_group, "listen_group");
    vw_keep(redis, "redis");
    vw_keep(redis_password, "redis_password_file");
    vw_keep(consumer, "consumer");

    /* [metrics] listen: an address and port, or a path; bound at start */
    if (vw_main_differ(conf->metrics.host, old->metrics.host)
        || vw_main_differ(conf->metrics.path, old->metrics.path)
        || conf->metrics.port != old->metrics.port)
    {
        vw_restart("metrics.listen");
    }

    if (conf->metrics.admin != old->metrics.admin) {
        vw_restart("metrics.admin");
    }

    metrics = conf->metrics;
    conf->metrics = old->metrics;
    old->metrics = metrics;

    if (conf->max_frame != old->max_frame) {
        vw_restart("max_frame");
    }

    tmp_frame = conf->max_frame;
    conf->max_frame = old->max_frame;
    old->max_frame = tmp_frame;

    if (conf->listen_mode != old->listen_mode) {
        vw_restart("listen_mode");
    }

    conf->listen_mode = old->listen_mode;
    conf->listen_gid = old->listen_gid;

#undef vw_keep
#undef vw_restart

    /* a new key is in force at once: a rotation ends with a reload */
    if (conf->vault.key_file != NULL
        && (old->vault.key_file == NULL
            || strcmp(conf->vault.key.id_hex, old->vault.key.id_hex) != 0))
    {
        vw_log("info", "vault key loaded", "file", conf->vault.key_file,
               "key_id", conf->vault.key.id_hex, NULL);
    }

    vw_main_conf = conf;
    vw_conf_free(old);

    vw_cometd_reload(vw_main_cometd);

    /* providers gone or moved: no refresh of theirs, no gauge left */
    if (vw_main_fetch != NULL) {
        vw_fetch_reload(vw_main_fetch);
    }

    vw_main_count(conf, jobs, targets);

    vw_log("info", "configuration reloaded", "file", conf->file,
           "jobs", jobs, "targets", targets,
           restart[0] ? "restart_needed" : NULL, restart, NULL);
}


static void
vw_main_drained(void *arg)
{
    event_base_loopbreak(arg);
}


/* the consumer name in the group: as configured, else <hostname>:<pid> */
static int
vw_main_consumer(const vw_conf_t *conf, char *buf, size_t len)
{
    char  host[256];

    if (conf->consumer != NULL) {
        snprintf(buf, len, "%s", conf->consumer);
        return VW_OK;
    }

    if (gethostname(host, sizeof(host)) != 0) {
        snprintf(host, sizeof(host), "localhost");
    }

    host[sizeof(host) - 1] = '\0';
    snprintf(buf, len, "%s:%ld", host, (long) getpid());

    return VW_OK;
}
