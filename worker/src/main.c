/* main.c -- vantage-worker entry point: options, event loop, signals */

/*
 * This is a skeleton.  It parses the command line, sets up the one libevent
 * loop the worker will run on, stops that loop cleanly on SIGINT and SIGTERM,
 * and does nothing else: there is no Unix socket server, no Redis queue and
 * no connector yet, and the configuration file given with -c is not read.
 * Later issues add those as their own files (server.c, queue.c, retry.c,
 * http_client.c, connectors/<vendor>.c), each registering its sockets and
 * timers on the base created here.
 */

#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "vw_core.h"


typedef struct {
    const char                 *conf_file;   /* NULL when -c was not given */
    int                         help;
    int                         version;
} vw_main_args_t;


static void vw_main_usage(FILE *f);
static int vw_main_parse_args(int argc, char **argv, vw_main_args_t *args);
static void vw_main_signal_handler(evutil_socket_t sig, short what, void *arg);


int
main(int argc, char **argv)
{
    int                 rc;
    struct event       *sigint, *sigterm;
    struct event_base  *base;
    vw_main_args_t      args;

    if (vw_main_parse_args(argc, argv, &args) != VW_OK) {
        fprintf(stderr, "Try '%s --help'.\n", VW_NAME);
        return 2;
    }

    if (args.help) {
        vw_main_usage(stdout);
        return 0;
    }

    if (args.version) {
        printf("%s %s (skeleton: no connectors yet), libevent %s\n",
               VW_NAME, VW_VERSION, event_get_version());
        return 0;
    }

    if (args.conf_file != NULL) {
        fprintf(stderr, "%s: config file \"%s\" accepted but not read: "
                "this skeleton has nothing to configure yet\n",
                VW_NAME, args.conf_file);
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

    fprintf(stderr, "%s: started (skeleton: no connectors yet)\n", VW_NAME);

    /* the signal events stay pending, so the loop runs until one fires */
    if (event_base_dispatch(base) == -1) {
        fprintf(stderr, "%s: event loop failed\n", VW_NAME);
        goto done;
    }

    fprintf(stderr, "%s: stopped\n", VW_NAME);
    rc = 0;

done:

    if (sigterm != NULL) {
        event_free(sigterm);
    }

    if (sigint != NULL) {
        event_free(sigint);
    }

    event_base_free(base);

    return rc;
}


static void
vw_main_usage(FILE *f)
{
    fprintf(f,
        "Usage: %s [-c <config>]\n"
        "\n"
        "The Vantage sidecar worker.  This build is a skeleton: it runs an\n"
        "empty event loop until SIGINT or SIGTERM and has no socket server,\n"
        "queue or connector yet.\n"
        "\n"
        "Options:\n"
        "  -c, --config <file>  configuration file (accepted, not read yet)\n"
        "  -h, --help           show this help and exit\n"
        "  -v, --version        show the version and exit\n",
        VW_NAME);
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
    static const struct option  longopts[] = {
        { "config",  required_argument, NULL, 'c' },
        { "help",    no_argument,       NULL, 'h' },
        { "version", no_argument,       NULL, 'v' },
        { NULL, 0, NULL, 0 }
    };

    memset(args, 0, sizeof(vw_main_args_t));

    while ((c = getopt_long(argc, argv, "c:hv", longopts, NULL)) != -1) {
        switch (c) {

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


/* SIGINT or SIGTERM: leave the loop; main() frees everything and returns */
static void
vw_main_signal_handler(evutil_socket_t sig, short what, void *arg)
{
    struct event_base  *base = arg;

    fprintf(stderr, "%s: %s received, exiting\n",
            VW_NAME, sig == SIGINT ? "SIGINT" : "SIGTERM");

    event_base_loopbreak(base);
}
