/* main.c -- vantage-worker entry point: options, event loop, signals */

/*
 * The worker runs one libevent loop.  So far it serves the hand-off socket
 * (server.c: PING, and DISPATCH, which makes jobs durable in Redis through
 * queue.c) and stops cleanly on SIGINT and SIGTERM.  Running the jobs
 * (retry.c, http_client.c, connectors/<vendor>.c) and the configuration
 * file given with -c, which is not read yet, come next, each registering
 * its sockets and timers on the base created here.
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

#include "vw_conf.h"
#include "vw_core.h"
#include "vw_engine.h"


/* a frame holds a body of up to 16 MiB and its other fields */
#define VW_MAX_FRAME_DEFAULT  (16 * 1024 * 1024 + 64 * 1024)


typedef struct {
    const char                 *conf_file;   /* NULL when -c was not given */
    const char                 *listen;      /* the socket's path */
    const char                 *redis;
    size_t                      max_frame;
    int                         help;
    int                         version;
} vw_main_args_t;


static void vw_main_usage(FILE *f);
static int vw_main_parse_args(int argc, char **argv, vw_main_args_t *args);
static void vw_main_signal_handler(evutil_socket_t sig, short what, void *arg);
static void vw_main_drained(void *arg);


/* the configuration in force; the engine asks for it, never keeps it */
static vw_conf_t    *vw_main_conf;
static vw_engine_t  *vw_main_engine;


const vw_conf_t *
vw_conf_current(void)
{
    return vw_main_conf;
}


int
main(int argc, char **argv)
{
    int                 rc;
    vw_queue_t         *queue;
    vw_server_t        *server;
    struct event       *sigint, *sigterm;
    struct event_base  *base;
    vw_main_args_t      args;
    char                err[VW_CONF_ERR_LEN], consumer[300], host[256];

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

    if (args.conf_file != NULL) {
        vw_main_conf = vw_conf_load(args.conf_file, err, sizeof(err));
        if (vw_main_conf == NULL) {
            fprintf(stderr, "%s: %s\n", VW_NAME, err);
            return 1;
        }
    }

    if (args.listen == NULL || args.redis == NULL) {
        fprintf(stderr, "%s: --listen unix:<path> and --redis <address> "
                "are required\nTry '%s --help'.\n", VW_NAME, VW_NAME);
        return 2;
    }

    /*
     * A peer that goes away mid-write must come back as EPIPE on the socket
     * that wrote, not kill the process; no socket exists yet, but every
     * later one relies on this.
     */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) {
        fprintf(stderr, "%s: signal(SIGPIPE) failed: %s\n",
                VW_NAME, strerror(errno));
        return 1;
    }

    base = event_base_new();
    if (base == NULL) {
        fprintf(stderr, "%s: event_base_new() failed\n", VW_NAME);
        return 1;
    }

    rc = 1;
    sigterm = NULL;
    queue = NULL;
    server = NULL;

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

    if (vw_queue_check(args.redis) == VW_DECLINED) {
        goto done;
    }

    queue = vw_queue_create(base, args.redis);
    if (queue == NULL) {
        goto done;
    }

    server = vw_server_create(base, args.listen, args.max_frame, queue);
    if (server == NULL) {
        goto done;
    }

    vw_server_set_conf(server, vw_conf_current);

    /* jobs run only where a file says how: without one, DISPATCH alone */
    if (vw_main_conf != NULL) {
        curl_global_init(CURL_GLOBAL_DEFAULT);

        if (vw_main_conf->consumer != NULL) {
            snprintf(consumer, sizeof(consumer), "%s",
                     vw_main_conf->consumer);
        } else {
            if (gethostname(host, sizeof(host)) != 0) {
                snprintf(host, sizeof(host), "localhost");
            }

            host[sizeof(host) - 1] = '\0';
            snprintf(consumer, sizeof(consumer), "%s:%ld", host,
                     (long) getpid());
        }

        vw_main_engine = vw_engine_create(base, args.redis,
                                          vw_main_conf->redis_password,
                                          consumer, vw_conf_current);
        if (vw_main_engine == NULL) {
            goto done;
        }
    }

    /* the signal events stay pending, so the loop runs until one fires */
    if (event_base_dispatch(base) == -1) {
        fprintf(stderr, "%s: event loop failed\n", VW_NAME);
        goto done;
    }

    vw_log("info", "stopped", NULL);
    rc = 0;

done:

    vw_engine_free(vw_main_engine);
    vw_server_free(server);
    vw_queue_free(queue);

    if (sigterm != NULL) {
        event_free(sigterm);
    }

    if (sigint != NULL) {
        event_free(sigint);
    }

    event_base_free(base);

    if (vw_main_conf != NULL) {
        vw_conf_free(vw_main_conf);
        curl_global_cleanup();
    }

    return rc;
}


static void
vw_main_usage(FILE *f)
{
    fprintf(f,
        "Usage: %s --listen unix:<path> --redis <host:port|unix:path>\n"
        "\n"
        "The Vantage sidecar worker.  It takes jobs from ngx_vantage_module\n"
        "on a Unix socket (docs/PROTOCOL.md) and makes them durable in\n"
        "Redis before it acknowledges them.  It does not run them yet.\n"
        "\n"
        "Options:\n"
        "  -l, --listen unix:<path>  the socket to serve\n"
        "  -r, --redis <address>     Redis: host:port or unix:<path>\n"
        "  -m, --max-frame <bytes>   largest frame accepted (default %d)\n"
        "  -c, --config <file>  configuration file (accepted, not read yet)\n"
        "  -h, --help           show this help and exit\n"
        "  -v, --version        show the version and exit\n",
        VW_NAME, VW_MAX_FRAME_DEFAULT);
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
        { "listen",  required_argument, NULL, 'l' },
        { "redis",   required_argument, NULL, 'r' },
        { "max-frame", required_argument, NULL, 'm' },
        { "help",    no_argument,       NULL, 'h' },
        { "version", no_argument,       NULL, 'v' },
        { NULL, 0, NULL, 0 }
    };

    memset(args, 0, sizeof(vw_main_args_t));
    args->max_frame = VW_MAX_FRAME_DEFAULT;

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

    if (vw_main_engine != NULL) {
        vw_engine_drain(vw_main_engine, vw_main_drained, base);
        return;
    }

    event_base_loopbreak(base);
}


static void
vw_main_drained(void *arg)
{
    event_base_loopbreak(arg);
}
