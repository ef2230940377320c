/* vantagectl.c -- the operator's tool: options, commands, output */

/*
 * vantagectl reads and repairs the worker's jobs in Redis, following the
 * layout of docs/WORKER.md, which is the contract between the two, and
 * keeps the credential vault (docs/VAULT.md, ctl_vault.c).  It is
 * a command-line tool, so it uses hiredis's blocking API: one connection,
 * one command at a time, pipelined only where it reads many jobs.
 *
 * Output is aligned text for people, or with --json one JSON document on
 * stdout for scripts.  Errors go to stderr, one line each, and never hold
 * the Redis password.  Exit codes: 0 done, 1 an operational failure (Redis
 * unreachable, a job missing or in the wrong state), 2 a usage error.
 */

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "vantagectl.h"
#include "vc_vault.h"


typedef int (*vctl_handler_pt)(vctl_t *ctl);


typedef struct {
    const char                 *word;
    const char                 *sub;       /* NULL: a one-word command */
    vctl_handler_pt             handler;
    unsigned                    opts;      /* VCTL_OPT_* it accepts */
    int                         min;       /* operands after the words */
    int                         max;       /* -1: any number */
    unsigned                    flags;     /* VCTL_CMD_* */
} vctl_command_t;


/* main() connects to no Redis: the handler does, when it needs one */
#define VCTL_CMD_LOCAL     0x01
/* the operands are secret names, not job ids */
#define VCTL_CMD_NAMES     0x02


/* the selectors of replay and purge */
#define VCTL_SELECT                                                          \
    (VCTL_OPT_TYPE|VCTL_OPT_TENANT|VCTL_OPT_SINCE|VCTL_OPT_ALL)

static const vctl_command_t  vctl_commands[] = {
    { "health", NULL, NULL, 0, 0, 0, 0 },
    { "jobs", "list", vctl_jobs_list,
      VCTL_OPT_STATE|VCTL_OPT_TYPE|VCTL_OPT_TENANT|VCTL_OPT_LIMIT, 0, 0, 0 },
    { "jobs", "show", vctl_jobs_show, VCTL_OPT_BODY, 1, 1, 0 },
    { "dlq", "list", vctl_dlq_list,
      VCTL_OPT_TYPE|VCTL_OPT_TENANT|VCTL_OPT_SINCE|VCTL_OPT_LIMIT, 0, 0, 0 },
    { "dlq", "show", vctl_dlq_show, VCTL_OPT_BODY, 1, 1, 0 },
    { "dlq", "replay", vctl_dlq_replay, VCTL_SELECT, 0, -1, 0 },
    { "dlq", "purge", vctl_dlq_purge, VCTL_SELECT, 0, -1, 0 },
    { "dlq", "skip", vctl_dlq_skip, 0, 1, 1, 0 },
    { "apikey", "create", vctl_apikey_create,
      VCTL_OPT_FILE|VCTL_OPT_ID|VCTL_OPT_TENANT|VCTL_OPT_SCOPE
      |VCTL_OPT_EXPIRES, 0, 0, VCTL_CMD_LOCAL },
    { "apikey", "list", vctl_apikey_list, VCTL_OPT_FILE, 0, 0,
      VCTL_CMD_LOCAL },
    { "apikey", "revoke", vctl_apikey_revoke, VCTL_OPT_FILE|VCTL_OPT_ID,
      0, 0, VCTL_CMD_LOCAL },
    { "apikey", "disable", vctl_apikey_revoke, VCTL_OPT_FILE|VCTL_OPT_ID,
      0, 0, VCTL_CMD_LOCAL },
    /* put, get and rotate-master read the master key before Redis */
    { "vault", "put", vctl_vault_put,
      VCTL_OPT_KEY_FILE|VCTL_OPT_FROM_FILE|VCTL_OPT_REPLACE|VCTL_OPT_RAW,
      1, 1, VCTL_CMD_LOCAL|VCTL_CMD_NAMES },
    { "vault", "get", vctl_vault_get, VCTL_OPT_KEY_FILE|VCTL_OPT_FORCE,
      1, 1, VCTL_CMD_LOCAL|VCTL_CMD_NAMES },
    { "vault", "list", vctl_vault_list, 0, 0, 0, 0 },
    { "vault", "delete", vctl_vault_delete, 0, 1, 1, VCTL_CMD_NAMES },
    { "vault", "rotate-master", vctl_vault_rotate,
      VCTL_OPT_KEY_FILE|VCTL_OPT_NEW_KEY, 0, 0, VCTL_CMD_LOCAL },
    { NULL, NULL, NULL, 0, 0, 0, 0 }
};


static const struct {
    unsigned                    opt;
    const char                 *name;
} vctl_opt_names[] = {
    { VCTL_OPT_STATE, "--state" },
    { VCTL_OPT_TYPE, "--type" },
    { VCTL_OPT_TENANT, "--tenant" },
    { VCTL_OPT_LIMIT, "--limit" },
    { VCTL_OPT_SINCE, "--since" },
    { VCTL_OPT_BODY, "--body" },
    { VCTL_OPT_ALL, "--all" },
    { VCTL_OPT_FILE, "--file" },
    { VCTL_OPT_ID, "--id" },
    { VCTL_OPT_SCOPE, "--scope" },
    { VCTL_OPT_EXPIRES, "--expires" },
    { VCTL_OPT_KEY_FILE, "--key-file" },
    { VCTL_OPT_NEW_KEY, "--new-key-file" },
    { VCTL_OPT_FROM_FILE, "--from-file" },
    { VCTL_OPT_FORCE, "--force" },
    { VCTL_OPT_REPLACE, "--replace" },
    { VCTL_OPT_RAW, "--raw" },
    { 0, NULL }
};


static const char  *vctl_states[] = {
    "queued", "running", "retrying", "succeeded", "dead", NULL
};


static void vctl_usage(FILE *f);
static int vctl_parse_args(int argc, char **argv, vctl_args_t *args);
static int vctl_check_command(const vctl_command_t *cmd, vctl_args_t *args);


int
main(int argc, char **argv)
{
    int                    rc, i;
    vctl_t                 ctl;
    vctl_args_t            args;
    const vctl_command_t  *cmd;

    if (vctl_parse_args(argc, argv, &args) != VCTL_OK) {
        return VCTL_EXIT_USAGE;
    }

    if (args.help) {
        vctl_usage(stdout);
        return VCTL_EXIT_OK;
    }

    if (args.version) {
        printf("%s %s (hiredis %d.%d.%d, jansson %s)\n", VCTL_NAME,
               VCTL_VERSION, HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH,
               JANSSON_VERSION);
        return VCTL_EXIT_OK;
    }

    if (args.npos == 0) {
        vctl_error("no command given (try %s --help)", VCTL_NAME);
        return VCTL_EXIT_USAGE;
    }

    for (cmd = vctl_commands; cmd->word != NULL; cmd++) {
        if (strcmp(cmd->word, args.pos[0]) != 0) {
            continue;
        }

        if (cmd->sub == NULL
            || (args.npos > 1 && strcmp(cmd->sub, args.pos[1]) == 0))
        {
            break;
        }
    }

    if (cmd->word == NULL) {
        for (i = 0; vctl_commands[i].word != NULL; i++) {
            if (strcmp(vctl_commands[i].word, args.pos[0]) == 0) {
                break;
            }
        }

        if (vctl_commands[i].word != NULL) {
            vctl_error("\"%s\" needs a subcommand: see %s --help",
                       args.pos[0], VCTL_NAME);

        } else {
            vctl_error("unknown command (try %s --help)", VCTL_NAME);
        }

        return VCTL_EXIT_USAGE;
    }

    if (vctl_check_command(cmd, &args) != VCTL_OK) {
        return VCTL_EXIT_USAGE;
    }

    memset(&ctl, 0, sizeof(vctl_t));
    ctl.args = &args;

    if (cmd->flags & VCTL_CMD_LOCAL) {
        rc = cmd->handler(&ctl);
        free(args.scopes);
        return rc;
    }

    if (vctl_redis_connect(&ctl) != VCTL_OK) {
        if (cmd->handler == NULL) {
            /* health reports an unreachable Redis as its own result */
            rc = vctl_health(&ctl, 0);

        } else {
            vctl_error("%s", ctl.errstr);
            rc = VCTL_EXIT_FAIL;
        }

        free(args.scopes);
        return rc;
    }

    rc = cmd->handler ? cmd->handler(&ctl) : vctl_health(&ctl, 1);

    redisFree(ctl.c);
    free(args.scopes);

    return rc;
}


static void
vctl_usage(FILE *f)
{
    fprintf(f,
"Usage: %s [options] <command> [arguments]\n"
"\n"
"Reads and repairs the jobs of vantage-worker in Redis (docs/WORKER.md),\n"
"and keeps its credential vault (docs/VAULT.md).\n"
"\n"
"Commands:\n"
"  health                     Redis, its eviction and AOF settings, the\n"
"                             queue's sizes and consumers; exits 1 when\n"
"                             Redis is unreachable or may evict jobs\n"
"  jobs list [--state S] [--type T] [--tenant X] [--limit N]\n"
"                             jobs, newest first (default limit 50)\n"
"  jobs show <id> [--body]    one job: its fields (secret headers masked)\n"
"                             and its attempt history\n"
"  dlq list [--type T] [--tenant X] [--since T] [--limit N]\n"
"                             dead jobs, most recent death first; T is an\n"
"                             ISO-8601 UTC time or a duration (30m, 2h, 7d)\n"
"  dlq show <id> [--body]     like jobs show, for a dead job only\n"
"  dlq replay <id>... | [--type T] [--tenant X] [--since T] | --all\n"
"                             queue dead jobs again, keeping their ids and\n"
"                             history; an explicit id may be a dead job\n"
"                             that a crashed replay left out of the DLQ\n"
"  dlq purge <id>... | [--type T] [--tenant X] [--since T] | --all\n"
"                             delete dead jobs and their history (asks\n"
"                             nothing: --all is needed for all of them)\n"
"  dlq skip <id>              take a dead ordered job (on_dead=block) out\n"
"                             of its ordering list and wake the next one\n"
"\n"
"API keys (the file of vantage_api_keys; no Redis):\n"
"  apikey create --file F --id ID --tenant T [--scope S]... [--expires E]\n"
"                             add a key and print it, once, on stdout;\n"
"                             E is an RFC 3339 time or a duration (90d)\n"
"  apikey list --file F       ids, tenants, scopes, expiry, status\n"
"  apikey revoke --file F --id ID   remove a key\n"
"  apikey disable --file F --id ID  keep a key but refuse it\n"
"\n"
"Credential vault ({vv}:vault in Redis; docs/VAULT.md):\n"
"  vault put <name> [--from-file F] [--replace] [--raw]\n"
"                             seal a secret read from F, or from stdin\n"
"                             (asked for without echo on a terminal); one\n"
"                             trailing newline is cut unless --raw\n"
"  vault get <name> [--force] print the secret's bytes on stdout; refused\n"
"                             when stdout is a terminal, unless --force\n"
"  vault list                 names, key ids and sizes, never values\n"
"  vault delete <name>        remove a secret\n"
"  vault rotate-master --new-key-file F\n"
"                             re-seal every secret under the key in F, in\n"
"                             one transaction, or change nothing\n"
"\n"
"Options:\n"
"  --redis <host:port|unix:path>  Redis (default $VANTAGE_REDIS, else\n"
"                             127.0.0.1:6379)\n"
"  --password-file <file>     Redis password (a trailing newline is\n"
"                             ignored); --user <name> for an ACL user\n"
"  --json                     one JSON document on stdout\n"
"  --key-file <file>          the vault's master key (default\n"
"                             $VANTAGE_VAULT_KEY_FILE, else the key in\n"
"                             $VANTAGE_VAULT_KEY): 32 raw bytes, 64 hex\n"
"                             digits or base64; mode 0600 or 0400\n"
"  --body                     show the body raw, exactly as stored: it is\n"
"                             not masked, so it may hold personal data\n"
"                             (without it: its length and sha256)\n"
"  -h, --help                 this help\n"
"  --version                  the version\n"
"\n"
"Exit status: 0 done, 1 failed (Redis, a job missing or not dead, a\n"
"secret missing or not opened), 2 usage error.\n",
        VCTL_NAME);
}


/*
 * Fills args from the command line.  Options may come anywhere: getopt
 * moves the operands to the end.  Returns VCTL_OK, or VCTL_ERROR after
 * printing why.
 */
static int
vctl_parse_args(int argc, char **argv, vctl_args_t *args)
{
    int                          c, i;
    long long                    n;
    const char                  *env;
    static const struct option   longopts[] = {
        { "redis",         required_argument, NULL, 'r' },
        { "password-file", required_argument, NULL, 'p' },
        { "user",          required_argument, NULL, 'u' },
        { "json",          no_argument,       NULL, 'j' },
        { "state",         required_argument, NULL, 's' },
        { "type",          required_argument, NULL, 't' },
        { "tenant",        required_argument, NULL, 'T' },
        { "limit",         required_argument, NULL, 'l' },
        { "since",         required_argument, NULL, 'S' },
        { "body",          no_argument,       NULL, 'b' },
        { "all",           no_argument,       NULL, 'a' },
        { "file",          required_argument, NULL, 'f' },
        { "id",            required_argument, NULL, 'i' },
        { "scope",         required_argument, NULL, 'c' },
        { "expires",       required_argument, NULL, 'e' },
        { "key-file",      required_argument, NULL, 'k' },
        { "new-key-file",  required_argument, NULL, 'K' },
        { "from-file",     required_argument, NULL, 'F' },
        { "force",         no_argument,       NULL, 'O' },
        { "replace",       no_argument,       NULL, 'R' },
        { "raw",           no_argument,       NULL, 'w' },
        { "help",          no_argument,       NULL, 'h' },
        { "version",       no_argument,       NULL, 'V' },
        { NULL, 0, NULL, 0 }
    };

    memset(args, 0, sizeof(vctl_args_t));
    args->limit = 50;

    /* at most one --scope an argument */
    args->scopes = calloc(argc + 1, sizeof(char *));
    if (args->scopes == NULL) {
        vctl_error("out of memory");
        return VCTL_ERROR;
    }

    env = getenv("VANTAGE_REDIS");
    args->redis = (env != NULL && env[0] != '\0') ? env : "127.0.0.1:6379";

    /* errors are reported here, on one line */
    opterr = 0;

    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {

        switch (c) {

        case 'r':
            args->redis = optarg;
            break;

        case 'p':
            args->password_file = optarg;
            break;

        case 'u':
            args->user = optarg;
            break;

        case 'j':
            args->json = 1;
            break;

        case 's':
            for (i = 0; vctl_states[i] != NULL; i++) {
                if (strcmp(optarg, vctl_states[i]) == 0) {
                    break;
                }
            }

            if (vctl_states[i] == NULL) {
                vctl_error("--state: not one of queued, running, retrying, "
                           "succeeded, dead");
                return VCTL_ERROR;
            }

            args->state = optarg;
            args->given |= VCTL_OPT_STATE;
            break;

        case 't':
            args->type = optarg;
            args->given |= VCTL_OPT_TYPE;
            break;

        case 'T':
            args->tenant = optarg;
            args->given |= VCTL_OPT_TENANT;
            break;

        case 'l':
            if (vctl_parse_int(optarg, &n) != VCTL_OK
                || n < 1 || n > 1000000)
            {
                vctl_error("--limit: a number from 1 to 1000000 expected");
                return VCTL_ERROR;
            }

            args->limit = (long) n;
            args->given |= VCTL_OPT_LIMIT;
            break;

        case 'S':
            if (vctl_parse_since(optarg, vctl_now_ms(), &args->since_ms)
                != VCTL_OK)
            {
                vctl_error("--since: an ISO-8601 UTC time "
                           "(2025-01-31T08:00:00Z) or a duration (90s, 30m, "
                           "2h, 7d) expected");
                return VCTL_ERROR;
            }

            args->given |= VCTL_OPT_SINCE;
            break;

        case 'b':
            args->given |= VCTL_OPT_BODY;
            break;

        case 'a':
            args->given |= VCTL_OPT_ALL;
            break;

        case 'f':
            args->file = optarg;
            args->given |= VCTL_OPT_FILE;
            break;

        case 'i':
            args->key_id = optarg;
            args->given |= VCTL_OPT_ID;
            break;

        case 'c':
            args->scopes[args->nscopes++] = optarg;
            args->given |= VCTL_OPT_SCOPE;
            break;

        case 'e':
            args->expires = optarg;
            args->given |= VCTL_OPT_EXPIRES;
            break;

        case 'k':
            args->key_file = optarg;
            args->given |= VCTL_OPT_KEY_FILE;
            break;

        case 'K':
            args->new_key_file = optarg;
            args->given |= VCTL_OPT_NEW_KEY;
            break;

        case 'F':
            args->from_file = optarg;
            args->given |= VCTL_OPT_FROM_FILE;
            break;

        case 'O':
            args->given |= VCTL_OPT_FORCE;
            break;

        case 'R':
            args->given |= VCTL_OPT_REPLACE;
            break;

        case 'w':
            args->given |= VCTL_OPT_RAW;
            break;

        case 'h':
            args->help = 1;
            break;

        case 'V':
            args->version = 1;
            break;

        case ':':
            vctl_error("%s needs a value", argv[optind - 1]);
            return VCTL_ERROR;

        default:
            vctl_error("unknown option \"%s\" (try %s --help)",
                       argv[optind - 1], VCTL_NAME);
            return VCTL_ERROR;
        }
    }

    args->pos = argv + optind;
    args->npos = argc - optind;

    return VCTL_OK;
}


/*
 * Checks the options and operands given against what cmd accepts, and
 * the selectors of replay and purge: explicit ids, or filters, or --all,
 * never a mix, so that a typo cannot widen what is acted on.
 */
static int
vctl_check_command(const vctl_command_t *cmd, vctl_args_t *args)
{
    int       i, nops, words;
    unsigned  extra;

    extra = args->given & ~cmd->opts;

    if (extra) {
        for (i = 0; vctl_opt_names[i].name != NULL; i++) {
            if (extra & vctl_opt_names[i].opt) {
                break;
            }
        }

        vctl_error("%s does not apply to \"%s%s%s\"",
                   vctl_opt_names[i].name, cmd->word, cmd->sub ? " " : "",
                   cmd->sub ? cmd->sub : "");
        return VCTL_ERROR;
    }

    words = cmd->sub ? 2 : 1;
    nops = args->npos - words;

    if (nops < cmd->min || (cmd->max >= 0 && nops > cmd->max)) {
        if (nops < cmd->min) {
            vctl_error("\"%s %s\" needs a %s", cmd->word, cmd->sub,
                       (cmd->flags & VCTL_CMD_NAMES) ? "secret name"
                                                     : "job id");

        } else {
            vctl_error("unexpected argument to \"%s%s%s\"", cmd->word,
                       cmd->sub ? " " : "", cmd->sub ? cmd->sub : "");
        }

        return VCTL_ERROR;
    }

    for (i = words; i < args->npos; i++) {
        if (cmd->flags & VCTL_CMD_NAMES) {
            if (!vc_vault_name_valid(args->pos[i], strlen(args->pos[i]))) {
                vctl_error("not a secret name (1 to %d printable ASCII "
                           "characters without space, '\"' or '\\'): "
                           "argument %d", VC_VAULT_NAME_MAX, i - words + 1);
                return VCTL_ERROR;
            }

            continue;
        }

        if (!vctl_id_valid(args->pos[i])) {
            vctl_error("not a job id (32 lowercase hex digits): argument %d",
                       i - words + 1);
            return VCTL_ERROR;
        }
    }

    if (cmd->handler != vctl_dlq_replay && cmd->handler != vctl_dlq_purge) {
        return VCTL_OK;
    }

    if (nops > 0 && (args->given & VCTL_SELECT)) {
        vctl_error("dlq %s: give job ids or filters, not both", cmd->sub);
        return VCTL_ERROR;
    }

    if (nops == 0 && !(args->given & VCTL_SELECT)) {
        vctl_error("dlq %s: which jobs? give ids, --type, --tenant, --since "
                   "or --all", cmd->sub);
        return VCTL_ERROR;
    }

    if ((args->given & VCTL_OPT_ALL) && (args->given & ~VCTL_OPT_ALL)) {
        vctl_error("dlq %s: --all selects every dead job: it takes no "
                   "filter", cmd->sub);
        return VCTL_ERROR;
    }

    return VCTL_OK;
}


/* one line on stderr, "vantagectl: ..." */
void
vctl_error(const char *fmt, ...)
{
    va_list  ap;

    fflush(stdout);

    fprintf(stderr, "%s: ", VCTL_NAME);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}


/* prints doc and a newline on stdout, and releases it */
void
vctl_json_print(json_t *doc)
{
    char  *s;

    s = json_dumps(doc, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

    if (s != NULL) {
        printf("%s\n", s);
        free(s);

    } else {
        vctl_error("cannot encode the JSON output");
    }

    json_decref(doc);
}


/*
 * A JSON string for bytes from Redis.  jansson takes only UTF-8, and a
 * field written by a vendor or a client may be anything: bytes that are
 * not UTF-8 become '?' rather than losing the whole value.
 */
json_t *
vctl_json_text(const char *s, size_t len)
{
    char    *copy;
    size_t   i;
    json_t  *j;

    if (s == NULL) {
        return json_null();
    }

    j = json_stringn(s, len);
    if (j != NULL) {
        return j;
    }

    copy = malloc(len + 1);
    if (copy == NULL) {
        return json_null();
    }

    for (i = 0; i < len; i++) {
        copy[i] = ((unsigned char) s[i] >= 0x80 || s[i] == '\0')
                  ? '?' : s[i];
    }

    j = json_stringn(copy, len);
    free(copy);

    return j ? j : json_null();
}


/*
 * Writes bytes meant for a terminal: control characters become '?', so
 * that a value stored by a client or a vendor cannot move the cursor or
 * forge a line of the output.
 */
void
vctl_print_safe(FILE *f, const char *s, size_t len)
{
    size_t          i;
    unsigned char   ch;

    for (i = 0; i < len; i++) {
        ch = (unsigned char) s[i];
        fputc((ch < 0x20 || ch == 0x7f) ? '?' : ch, f);
    }
}


int
vctl_table_init(vctl_table_t *t, int ncols)
{
    memset(t, 0, sizeof(vctl_table_t));
    t->ncols = ncols;

    return VCTL_OK;
}


/* copies a row of ncols cells (NULL prints as "-") */
int
vctl_table_add(vctl_table_t *t, const char **row)
{
    int     i;
    char  **cells;

    if (t->nrows == t->nalloc) {
        t->nalloc = t->nalloc ? t->nalloc * 2 : 16;
        cells = realloc(t->cells, t->nalloc * t->ncols * sizeof(char *));
        if (cells == NULL) {
            return VCTL_ERROR;
        }

        t->cells = cells;
    }

    for (i = 0; i < t->ncols; i++) {
        t->cells[t->nrows * t->ncols + i] = strdup(row[i] ? row[i] : "-");
    }

    t->nrows++;

    return VCTL_OK;
}


/* every column padded to its widest cell, but for the last one */
void
vctl_table_print(vctl_table_t *t)
{
    int      i;
    size_t   r, len, width[16];
    char    *cell;

    for (i = 0; i < t->ncols && i < 16; i++) {
        width[i] = 0;

        for (r = 0; r < t->nrows; r++) {
            cell = t->cells[r * t->ncols + i];
            len = cell ? strlen(cell) : 1;

            if (len > width[i]) {
                width[i] = len;
            }
        }
    }

    for (r = 0; r < t->nrows; r++) {
        for (i = 0; i < t->ncols && i < 16; i++) {
            cell = t->cells[r * t->ncols + i];
            cell = cell ? cell : "-";
            len = strlen(cell);

            vctl_print_safe(stdout, cell, len);

            if (i < t->ncols - 1) {
                printf("%*s", (int) (width[i] - len + 2), "");
            }
        }

        fputc('\n', stdout);
    }
}


void
vctl_table_free(vctl_table_t *t)
{
    size_t  i;

    for (i = 0; i < t->nrows * t->ncols; i++) {
        free(t->cells[i]);
    }

    free(t->cells);
    t->cells = NULL;
    t->nrows = 0;
    t->nalloc = 0;
}
