/* ctl_vault.c -- vantagectl: the credential vault's put, get, list, delete */

/*
 * The vault is one Redis hash, {vv}:vault: field <name>, value the record
 * of common/vc_vault.c (docs/VAULT.md).  Values are sealed and opened
 * here, in this process, under the master key of --key-file,
 * $VANTAGE_VAULT_KEY_FILE or $VANTAGE_VAULT_KEY; Redis and hiredis only
 * ever see records.  A value never comes from the command line (where ps
 * and the shell's history would keep it), only from a file or stdin, and
 * is printed only by "get", raw on stdout, never on a terminal unless
 * --force says so.  Messages name secrets, never show them.
 *
 * put and rotate-master read the hash and write it back in a transaction
 * that depends on what they read (the key ids of the records, the
 * records themselves).  Unlike the job commands (ctl_dlq.c), they WATCH
 * the hash: the vault is changed by operators alone, on this tool's own
 * blocking connection, so WATCH's per-connection state is safe here, and
 * without it a put or a delete landing between a rotation's read and its
 * EXEC would be undone in silence.  A watched change makes EXEC do
 * nothing; the command then says so and changes nothing.
 *
 * The process holding a master key or a value makes itself non-dumpable,
 * so that no core file or same-user ptrace reads them, and clears every
 * buffer that held one before freeing it.
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "vantagectl.h"
#include "vc_vault.h"


/* a value, and room for a CRLF after the largest one */
#define VCTL_VALUE_BUF  (VC_VAULT_VALUE_MAX + 3)


/* one field of {vv}:vault, pointing into an HGETALL reply */
typedef struct {
    const char                 *name;
    size_t                      name_len;
    const unsigned char        *rec;
    size_t                      rec_len;
} vctl_record_t;


static int vctl_vault_key(const vctl_args_t *args, vc_vault_key_t *key);
static int vctl_vault_read_value(const vctl_args_t *args, const char *name,
    unsigned char *buf, size_t *len);
static int vctl_vault_read_fd(int fd, unsigned char *buf, size_t *len);
static int vctl_vault_read_tty(const char *name, unsigned char *buf,
    size_t *len);
static int vctl_vault_records(vctl_t *ctl, redisReply **reply,
    vctl_record_t **recs, size_t *n);
static int vctl_vault_exec(vctl_t *ctl, int argc, const char **argv,
    const size_t *argvlen);
static void vctl_vault_unwatch(vctl_t *ctl);
static int vctl_record_cmp(const void *a, const void *b);
static void vctl_vault_private(void);


int
vctl_vault_put(vctl_t *ctl)
{
    int                  rc, replaced;
    char                 err[VC_VAULT_ERRSTR_LEN];
    size_t               len, rec_len, n, i, argvlen[4];
    redisReply          *all;
    const char          *argv[4], *name, *other;
    unsigned char       *value, *rec;
    vctl_record_t       *recs;
    vc_vault_key_t       key;
    vc_vault_info_t      info;
    const vctl_args_t   *args = ctl->args;

    vctl_vault_private();

    name = args->pos[2];

    switch (vctl_vault_key(args, &key)) {

    case VCTL_OK:
        break;

    case VCTL_DECLINED:
        return VCTL_EXIT_USAGE;

    default:
        return VCTL_EXIT_FAIL;
    }

    rc = VCTL_EXIT_FAIL;
    rec = NULL;
    all = NULL;
    recs = NULL;

    value = malloc(VCTL_VALUE_BUF);
    if (value == NULL) {
        vctl_error("out of memory");
        goto done;
    }

    if (vctl_vault_read_value(args, name, value, &len) != VCTL_OK) {
        rc = VCTL_EXIT_USAGE;
        goto done;
    }

    rec_len = len + VC_VAULT_OVERHEAD;

    rec = malloc(rec_len);
    if (rec == NULL) {
        vctl_error("out of memory");
        goto done;
    }

    if (vc_vault_seal(&key, name, strlen(name), value, len, rec, err,
                      sizeof(err))
        != VC_OK)
    {
        vctl_error("secret \"%s\": %s", name, err);
        goto done;
    }

    /* from here on, the value exists only sealed */
    OPENSSL_cleanse(value, VCTL_VALUE_BUF);

    if (vctl_redis_connect(ctl) != VCTL_OK) {
        vctl_error("%s", ctl->errstr);
        goto done;
    }

    if (vctl_vault_records(ctl, &all, &recs, &n) != VCTL_OK) {
        goto done;
    }

    /*
     * A vault under one key: a record sealed under another would be one
     * that no worker holding the vault's key can open.
     */
    replaced = 0;
    other = NULL;

    for (i = 0; i < n; i++) {
        if (recs[i].name_len == strlen(name)
            && memcmp(recs[i].name, name, recs[i].name_len) == 0)
        {
            replaced = 1;
        }

        if (other == NULL
            && vc_vault_info(recs[i].rec, recs[i].rec_len, &info, err,
                             sizeof(err))
               == VC_OK
            && strcmp(info.key_id_hex, key.id_hex) != 0)
        {
            other = info.key_id_hex;
            vctl_error("wrong master key (the vault's secrets are sealed "
                       "under key id %s, this key is %s): nothing stored",
                       other, key.id_hex);
        }
    }

    if (other != NULL) {
        vctl_vault_unwatch(ctl);
        goto done;
    }

    if (replaced && !(args->given & VCTL_OPT_REPLACE)) {
        vctl_error("secret \"%s\" is in the vault already: give --replace "
                   "to overwrite it", name);
        vctl_vault_unwatch(ctl);
        goto done;
    }

    argv[0] = "HSET";
    argv[1] = VC_VAULT_REDIS_KEY;
    argv[2] = name;
    argv[3] = (const char *) rec;
    argvlen[0] = 4;
    argvlen[1] = sizeof(VC_VAULT_REDIS_KEY) - 1;
    argvlen[2] = strlen(name);
    argvlen[3] = rec_len;

    switch (vctl_vault_exec(ctl, 4, argv, argvlen)) {

    case VCTL_OK:
        break;

    case VCTL_DECLINED:
        vctl_error("the vault changed while \"%s\" was being stored: "
                   "nothing stored; run it again", name);
        goto done;

    default:
        goto done;
    }

    if (args->json) {
        vctl_json_print(json_pack("{s:s, s:s, s:I, s:b}", "name", name,
                                  "key_id", key.id_hex, "bytes",
                                  (json_int_t) len, "replaced", replaced));

    } else {
        printf("%s \"%s\": %zu bytes, key id %s\n",
               replaced ? "replaced" : "stored", name, len, key.id_hex);
    }

    rc = VCTL_EXIT_OK;

done:

    if (value != NULL) {
        OPENSSL_cleanse(value, VCTL_VALUE_BUF);
        free(value);
    }

    free(rec);
    free(recs);

    if (all != NULL) {
        freeReplyObject(all);
    }

    vc_vault_key_clear(&key);

    return rc;
}


int
vctl_vault_get(vctl_t *ctl)
{
    int                  rc;
    char                 err[VC_VAULT_ERRSTR_LEN];
    size_t               len, off;
    ssize_t              n;
    redisReply          *r;
    const char          *name;
    unsigned char       *value;
    vc_vault_key_t       key;
    const vctl_args_t   *args = ctl->args;

    name = args->pos[2];

    if (args->json) {
        vctl_error("vault get writes the secret's bytes as they are: --json "
                   "does not apply");
        return VCTL_EXIT_USAGE;
    }

    if (isatty(STDOUT_FILENO) && !(args->given & VCTL_OPT_FORCE)) {
        vctl_error("vault get: stdout is a terminal, whose scrollback would "
                   "keep the secret: redirect it (> file, | command), or "
                   "give --force");
        return VCTL_EXIT_USAGE;
    }

    vctl_vault_private();

    switch (vctl_vault_key(args, &key)) {

    case VCTL_OK:
        break;

    case VCTL_DECLINED:
        return VCTL_EXIT_USAGE;

    default:
        return VCTL_EXIT_FAIL;
    }

    rc = VCTL_EXIT_FAIL;
    r = NULL;
    value = NULL;
    len = 0;

    if (vctl_redis_connect(ctl) != VCTL_OK) {
        vctl_error("%s", ctl->errstr);
        goto done;
    }

    r = vctl_redis(ctl, "HGET %s %s", VC_VAULT_REDIS_KEY, name);
    if (r == NULL) {
        goto done;
    }

    if (r->type == REDIS_REPLY_NIL) {
        vctl_error("no secret \"%s\" in the vault", name);
        goto done;
    }

    if (r->type != REDIS_REPLY_STRING) {
        vctl_error("redis: HGET: a string expected");
        goto done;
    }

    if (vc_vault_open(&key, name, strlen(name), (unsigned char *) r->str,
                      r->len, &value, &len, err, sizeof(err))
        != VC_OK)
    {
        vctl_error("secret \"%s\": %s", name, err);
        goto done;
    }

    /* write(2), not stdio, whose buffer would keep a copy */
    for (off = 0; off < len; off += n) {
        n = write(STDOUT_FILENO, value + off, len - off);

        if (n == -1 && errno == EINTR) {
            n = 0;
            continue;
        }

        if (n <= 0) {
            vctl_error("cannot write the secret to stdout: %s",
                       strerror(errno));
            goto done;
        }
    }

    rc = VCTL_EXIT_OK;

done:

    vc_vault_free(value, len);

    if (r != NULL) {
        freeReplyObject(r);
    }

    vc_vault_key_clear(&key);

    return rc;
}


int
vctl_vault_list(vctl_t *ctl)
{
    int                  rc;
    char                 err[VC_VAULT_ERRSTR_LEN], bytes[32];
    char                 name[VC_VAULT_NAME_MAX * 4 + 1];
    size_t               n, i;
    json_t              *out, *item;
    redisReply          *all;
    const char          *row[3];
    vctl_table_t         table;
    vctl_record_t       *recs;
    vc_vault_info_t      info;

    all = vctl_redis(ctl, "HGETALL %s", VC_VAULT_REDIS_KEY);
    if (all == NULL) {
        return VCTL_EXIT_FAIL;
    }

    if (all->type != REDIS_REPLY_ARRAY || all->elements % 2) {
        vctl_error("redis: HGETALL: an array of pairs expected");
        freeReplyObject(all);
        return VCTL_EXIT_FAIL;
    }

    n = all->elements / 2;
    recs = calloc(n + 1, sizeof(vctl_record_t));
    if (recs == NULL) {
        vctl_error("out of memory");
        freeReplyObject(all);
        return VCTL_EXIT_FAIL;
    }

    for (i = 0; i < n; i++) {
        recs[i].name = all->element[2 * i]->str;
        recs[i].name_len = all->element[2 * i]->len;
        recs[i].rec = (unsigned char *) all->element[2 * i + 1]->str;
        recs[i].rec_len = all->element[2 * i + 1]->len;
    }

    qsort(recs, n, sizeof(vctl_record_t), vctl_record_cmp);

    rc = VCTL_EXIT_OK;
    out = json_array();
    vctl_table_init(&table, 3);

    row[0] = "NAME";
    row[1] = "KEY_ID";
    row[2] = "BYTES";
    vctl_table_add(&table, row);

    for (i = 0; i < n; i++) {
        /* a field another tool wrote may hold anything: shown safely */
        snprintf(name, sizeof(name), "%.*s",
                 (int) (recs[i].name_len < VC_VAULT_NAME_MAX * 4
                        ? recs[i].name_len : VC_VAULT_NAME_MAX * 4),
                 recs[i].name);

        item = json_object();
        json_object_set_new(item, "name",
                            vctl_json_text(recs[i].name, recs[i].name_len));

        if (vc_vault_info(recs[i].rec, recs[i].rec_len, &info, err,
                          sizeof(err))
            != VC_OK)
        {
            vctl_error("secret \"%s\": %s", name, err);
            rc = VCTL_EXIT_FAIL;

            json_object_set_new(item, "key_id", json_null());
            json_object_set_new(item, "bytes", json_null());
            json_object_set_new(item, "error", json_string(err));

            row[0] = name;
            row[1] = NULL;
            row[2] = NULL;

        } else {
            snprintf(bytes, sizeof(bytes), "%zu", info.value_len);

            json_object_set_new(item, "key_id",
                                json_string(info.key_id_hex));
            json_object_set_new(item, "bytes",
                                json_integer((json_int_t) info.value_len));

            row[0] = name;
            row[1] = info.key_id_hex;
            row[2] = bytes;
        }

        json_array_append_new(out, item);
        vctl_table_add(&table, row);
    }

    if (ctl->args->json) {
        vctl_json_print(json_pack("{s:o}", "secrets", out));

    } else {
        json_decref(out);
        vctl_table_print(&table);
    }

    vctl_table_free(&table);
    free(recs);
    freeReplyObject(all);

    return rc;
}


int
vctl_vault_delete(vctl_t *ctl)
{
    long long    n;
    redisReply  *r;
    const char  *name;

    name = ctl->args->pos[2];

    r = vctl_redis(ctl, "HDEL %s %s", VC_VAULT_REDIS_KEY, name);
    if (r == NULL) {
        return VCTL_EXIT_FAIL;
    }

    if (vctl_reply_int(r, &n) != VCTL_OK) {
        vctl_error("redis: HDEL: an integer expected");
        freeReplyObject(r);
        return VCTL_EXIT_FAIL;
    }

    freeReplyObject(r);

    if (n == 0) {
        vctl_error("no secret \"%s\" in the vault", name);
        return VCTL_EXIT_FAIL;
    }

    if (ctl->args->json) {
        vctl_json_print(json_pack("{s:s, s:b}", "name", name, "deleted", 1));

    } else {
        printf("deleted \"%s\"\n", name);
    }

    return VCTL_EXIT_OK;
}


/*
 * Every record is opened with the key in use (or, if sealed under the new
 * key already, with that one, so that the command converges) and sealed
 * again under the new key; the new records replace the old ones in one
 * MULTI/EXEC under WATCH.  One record that does not open stops it all
 * before anything is written.
 */
int
vctl_vault_rotate(vctl_t *ctl)
{
    int                   rc, failed;
    char                  err[VC_VAULT_ERRSTR_LEN], name[VC_VAULT_NAME_MAX * 4
                                                         + 1];
    size_t                n, i, m, len, kept;
    redisReply           *all;
    const char          **argv;
    unsigned char        *value, **out;
    vctl_record_t        *recs;
    vc_vault_key_t        old, new;
    vc_vault_info_t       info;
    size_t               *argvlen;
    const vctl_args_t    *args = ctl->args;
    const vc_vault_key_t *k;

    if (!(args->given & VCTL_OPT_NEW_KEY)) {
        vctl_error("vault rotate-master needs --new-key-file");
        return VCTL_EXIT_USAGE;
    }

    vctl_vault_private();

    switch (vctl_vault_key(args, &old)) {

    case VCTL_OK:
        break;

    case VCTL_DECLINED:
        return VCTL_EXIT_USAGE;

    default:
        return VCTL_EXIT_FAIL;
    }

    if (vc_vault_key_read_file(&new, args->new_key_file, err, sizeof(err))
        != VC_OK)
    {
        vctl_error("--new-key-file %s", err);
        vc_vault_key_clear(&old);
        return VCTL_EXIT_FAIL;
    }

    rc = VCTL_EXIT_FAIL;
    all = NULL;
    recs = NULL;
    out = NULL;
    argv = NULL;
    argvlen = NULL;
    n = 0;

    if (strcmp(old.id_hex, new.id_hex) == 0) {
        vctl_error("--new-key-file holds the key in use (key id %s): "
                   "nothing to re-seal", new.id_hex);
        goto done;
    }

    if (vctl_redis_connect(ctl) != VCTL_OK) {
        vctl_error("%s", ctl->errstr);
        goto done;
    }

    if (vctl_vault_records(ctl, &all, &recs, &n) != VCTL_OK) {
        goto done;
    }

    qsort(recs, n, sizeof(vctl_record_t), vctl_record_cmp);

    out = calloc(n + 1, sizeof(unsigned char *));
    argv = calloc(2 * n + 2, sizeof(char *));
    argvlen = calloc(2 * n + 2, sizeof(size_t));

    if (out == NULL || argv == NULL || argvlen == NULL) {
        vctl_error("out of memory");
        vctl_vault_unwatch(ctl);
        goto done;
    }

    argv[0] = "HSET";
    argv[1] = VC_VAULT_REDIS_KEY;
    argvlen[0] = 4;
    argvlen[1] = sizeof(VC_VAULT_REDIS_KEY) - 1;
    m = 2;
    failed = 0;
    kept = 0;

    for (i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%.*s",
                 (int) (recs[i].name_len < VC_VAULT_NAME_MAX * 4
                        ? recs[i].name_len : VC_VAULT_NAME_MAX * 4),
                 recs[i].name);

        k = &old;

        if (vc_vault_info(recs[i].rec, recs[i].rec_len, &info, err,
                          sizeof(err))
            == VC_OK
            && strcmp(info.key_id_hex, new.id_hex) == 0)
        {
            k = &new;
        }

        if (vc_vault_open(k, recs[i].name, recs[i].name_len, recs[i].rec,
                          recs[i].rec_len, &value, &len, err, sizeof(err))
            != VC_OK)
        {
            vctl_error("rotate-master: secret \"%s\": %s", name, err);
            failed++;
            continue;
        }

        if (k == &new) {
            /* sealed under the new key already: checked, left as it is */
            vc_vault_free(value, len);
            kept++;
            continue;
        }

        out[i] = malloc(len + VC_VAULT_OVERHEAD);

        if (out[i] == NULL
            || vc_vault_seal(&new, recs[i].name, recs[i].name_len, value,
                             len, out[i], err, sizeof(err))
               != VC_OK)
        {
            vctl_error("rotate-master: secret \"%s\": %s", name,
                       out[i] ? err : "out of memory");
            vc_vault_free(value, len);
            failed++;
            continue;
        }

        vc_vault_free(value, len);

        argv[m] = recs[i].name;
        argvlen[m++] = recs[i].name_len;
        argv[m] = (const char *) out[i];
        argvlen[m++] = len + VC_VAULT_OVERHEAD;
    }

    if (failed) {
        vctl_error("rotate-master: %d of %zu secrets cannot be re-sealed: "
                   "nothing was changed", failed, n);
        vctl_vault_unwatch(ctl);
        goto done;
    }

    if (m > 2) {
        switch (vctl_vault_exec(ctl, (int) m, argv, argvlen)) {

        case VCTL_OK:
            break;

        case VCTL_DECLINED:
            vctl_error("rotate-master: the vault changed meanwhile: nothing "
                       "was changed; run it again");
            goto done;

        default:
            goto done;
        }

    } else {
        vctl_vault_unwatch(ctl);
    }

    if (args->json) {
        vctl_json_print(json_pack("{s:I, s:I, s:s, s:s}", "resealed",
                                  (json_int_t) (m - 2) / 2, "already",
                                  (json_int_t) kept, "key_id", new.id_hex,
                                  "old_key_id", old.id_hex));

    } else {
        printf("re-sealed %zu secret%s under key id %s (was %s)",
               (m - 2) / 2, (m - 2) / 2 == 1 ? "" : "s", new.id_hex,
               old.id_hex);

        if (kept) {
            printf("; %zu under it already", kept);
        }

        printf("\n");
    }

    rc = VCTL_EXIT_OK;

done:

    if (out != NULL) {
        for (i = 0; i < n; i++) {
            free(out[i]);
        }
    }

    free(out);
    free(argv);
    free(argvlen);
    free(recs);

    if (all != NULL) {
        freeReplyObject(all);
    }

    vc_vault_key_clear(&old);
    vc_vault_key_clear(&new);

    return rc;
}


/*
 * The master key: --key-file, else $VANTAGE_VAULT_KEY_FILE, else the key
 * in $VANTAGE_VAULT_KEY.  Returns VCTL_OK; VCTL_ERROR after saying why
 * (never quoting a key); VCTL_DECLINED, said too, when none is given.
 */
static int
vctl_vault_key(const vctl_args_t *args, vc_vault_key_t *key)
{
    char         err[VC_VAULT_ERRSTR_LEN];
    const char  *env;

    if (args->key_file != NULL) {
        if (vc_vault_key_read_file(key, args->key_file, err, sizeof(err))
            != VC_OK)
        {
            vctl_error("--key-file %s", err);
            return VCTL_ERROR;
        }

        return VCTL_OK;
    }

    env = getenv(VC_VAULT_ENV_KEY_FILE);

    if (env != NULL && env[0] != '\0') {
        if (vc_vault_key_read_file(key, env, err, sizeof(err)) != VC_OK) {
            vctl_error("%s %s", VC_VAULT_ENV_KEY_FILE, err);
            return VCTL_ERROR;
        }

        return VCTL_OK;
    }

    env = getenv(VC_VAULT_ENV_KEY);

    if (env != NULL && env[0] != '\0') {
        if (vc_vault_key_parse(key, env, strlen(env), err, sizeof(err))
            != VC_OK)
        {
            vctl_error("%s: %s", VC_VAULT_ENV_KEY, err);
            return VCTL_ERROR;
        }

        return VCTL_OK;
    }

    vctl_error("no master key: give --key-file, or set %s or %s",
               VC_VAULT_ENV_KEY_FILE, VC_VAULT_ENV_KEY);

    return VCTL_DECLINED;
}


/*
 * put's value, into buf (VCTL_VALUE_BUF bytes): the content of
 * --from-file, else what comes on stdin, asked for without echo when
 * stdin is a terminal.  One trailing LF or CRLF is cut unless --raw.
 * Returns VCTL_OK, or VCTL_ERROR after saying why.
 */
static int
vctl_vault_read_value(const vctl_args_t *args, const char *name,
    unsigned char *buf, size_t *len)
{
    int  fd, rc, err;

    if (args->from_file != NULL) {
        fd = open(args->from_file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd == -1) {
            vctl_error("--from-file \"%s\": %s", args->from_file,
                       strerror(errno));
            return VCTL_ERROR;
        }

        rc = vctl_vault_read_fd(fd, buf, len);
        err = errno;
        close(fd);

        if (rc != VCTL_OK) {
            vctl_error("--from-file \"%s\": cannot read: %s",
                       args->from_file, strerror(err));
            return VCTL_ERROR;
        }

    } else if (isatty(STDIN_FILENO)) {
        if (vctl_vault_read_tty(name, buf, len) != VCTL_OK) {
            return VCTL_ERROR;
        }

    } else if (vctl_vault_read_fd(STDIN_FILENO, buf, len) != VCTL_OK) {
        vctl_error("cannot read the value from stdin: %s", strerror(errno));
        return VCTL_ERROR;
    }

    if (!(args->given & VCTL_OPT_RAW) && *len > 0 && buf[*len - 1] == '\n')
    {
        (*len)--;

        if (*len > 0 && buf[*len - 1] == '\r') {
            (*len)--;
        }
    }

    if (*len > VC_VAULT_VALUE_MAX) {
        vctl_error("the value is larger than %dk: nothing stored",
                   VC_VAULT_VALUE_MAX / 1024);
        return VCTL_ERROR;
    }

    if (*len == 0) {
        vctl_error("the value is empty: nothing stored");
        return VCTL_ERROR;
    }

    return VCTL_OK;
}


/* up to VCTL_VALUE_BUF bytes: more than that is too large anyway */
static int
vctl_vault_read_fd(int fd, unsigned char *buf, size_t *len)
{
    ssize_t  n;

    *len = 0;

    while (*len < VCTL_VALUE_BUF) {
        n = read(fd, buf + *len, VCTL_VALUE_BUF - *len);

        if (n == 0) {
            break;
        }

        if (n == -1) {
            if (errno == EINTR) {
                continue;
            }

            return VCTL_ERROR;
        }

        *len += n;
    }

    return VCTL_OK;
}


static struct termios  vctl_vault_termios;


/* a signal while echo is off: the terminal gets its echo back first */
static void
vctl_vault_restore_tty(int sig)
{
    (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &vctl_vault_termios);
    signal(sig, SIG_DFL);
    raise(sig);
}


/* one line from the terminal, without echo, and without its newline */
static int
vctl_vault_read_tty(const char *name, unsigned char *buf, size_t *len)
{
    int               rc, i;
    ssize_t           n;
    struct termios    quiet;
    struct sigaction  sa, saved[3];
    static const int  sigs[3] = { SIGINT, SIGTERM, SIGHUP };

    if (tcgetattr(STDIN_FILENO, &vctl_vault_termios) != 0) {
        vctl_error("cannot read the terminal's settings: %s",
                   strerror(errno));
        return VCTL_ERROR;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = vctl_vault_restore_tty;
    sigemptyset(&sa.sa_mask);

    for (i = 0; i < 3; i++) {
        sigaction(sigs[i], &sa, &saved[i]);
    }

    quiet = vctl_vault_termios;
    quiet.c_lflag &= ~(ECHO | ECHONL);

    fprintf(stderr, "%s: value of \"%s\" (not shown; end with Enter): ",
            VCTL_NAME, name);
    fflush(stderr);

    rc = VCTL_ERROR;

    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0) {
        fputc('\n', stderr);
        vctl_error("cannot turn the terminal's echo off: %s",
                   strerror(errno));
        goto done;
    }

    *len = 0;

    /* byte by byte, so that nothing after the line is taken */
    for ( ;; ) {
        n = read(STDIN_FILENO, buf + *len, 1);

        if (n == -1 && errno == EINTR) {
            continue;
        }

        if (n <= 0 || buf[*len] == '\n') {
            break;
        }

        if (++*len == VCTL_VALUE_BUF) {
            break;
        }
    }

    (void) tcsetattr(STDIN_FILENO, TCSAFLUSH, &vctl_vault_termios);
    fputc('\n', stderr);

    rc = n == -1 ? VCTL_ERROR : VCTL_OK;

    if (rc != VCTL_OK) {
        vctl_error("cannot read the value from the terminal: %s",
                   strerror(errno));
    }

done:

    for (i = 0; i < 3; i++) {
        sigaction(sigs[i], &saved[i], NULL);
    }

    return rc;
}


/*
 * WATCH {vv}:vault, then HGETALL it.  On VCTL_OK, *recs (malloc()ed)
 * points into *reply, both to be freed by the caller; the key stays
 * watched until vctl_vault_exec() or vctl_vault_unwatch().
 */
static int
vctl_vault_records(vctl_t *ctl, redisReply **reply, vctl_record_t **recs,
    size_t *n)
{
    size_t       i;
    redisReply  *r;

    *reply = NULL;
    *recs = NULL;
    *n = 0;

    r = vctl_redis(ctl, "WATCH %s", VC_VAULT_REDIS_KEY);
    if (r == NULL) {
        return VCTL_ERROR;
    }

    freeReplyObject(r);

    r = vctl_redis(ctl, "HGETALL %s", VC_VAULT_REDIS_KEY);
    if (r == NULL) {
        return VCTL_ERROR;
    }

    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2) {
        vctl_error("redis: HGETALL: an array of pairs expected");
        freeReplyObject(r);
        return VCTL_ERROR;
    }

    *recs = calloc(r->elements / 2 + 1, sizeof(vctl_record_t));
    if (*recs == NULL) {
        vctl_error("out of memory");
        freeReplyObject(r);
        return VCTL_ERROR;
    }

    for (i = 0; i < r->elements / 2; i++) {
        (*recs)[i].name = r->element[2 * i]->str;
        (*recs)[i].name_len = r->element[2 * i]->len;
        (*recs)[i].rec = (unsigned char *) r->element[2 * i + 1]->str;
        (*recs)[i].rec_len = r->element[2 * i + 1]->len;
    }

    *reply = r;
    *n = r->elements / 2;

    return VCTL_OK;
}


/*
 * MULTI, the command argv, EXEC, on the watched connection.  Returns
 * VCTL_OK when it ran, VCTL_DECLINED when EXEC ran nothing because the
 * watched key changed, VCTL_ERROR after saying why.
 */
static int
vctl_vault_exec(vctl_t *ctl, int argc, const char **argv,
    const size_t *argvlen)
{
    int          i, rc;
    redisReply  *r;

    if (redisAppendCommand(ctl->c, "MULTI") != REDIS_OK
        || redisAppendCommandArgv(ctl->c, argc, argv, argvlen) != REDIS_OK
        || redisAppendCommand(ctl->c, "EXEC") != REDIS_OK)
    {
        vctl_error("redis: %s", ctl->c->errstr);
        return VCTL_ERROR;
    }

    rc = VCTL_OK;

    /* +OK, +QUEUED, then EXEC's array, or nil when the key changed */
    for (i = 0; i < 3; i++) {
        r = vctl_redis_get(ctl);

        if (r == NULL) {
            if (ctl->c->err) {
                return VCTL_ERROR;
            }

            rc = VCTL_ERROR;
            continue;
        }

        if (i == 2 && rc == VCTL_OK) {
            if (r->type == REDIS_REPLY_NIL) {
                rc = VCTL_DECLINED;

            } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 1
                       || r->element[0]->type == REDIS_REPLY_ERROR)
            {
                vctl_error("redis: the transaction failed%s%s",
                           r->type == REDIS_REPLY_ARRAY && r->elements == 1
                           ? ": " : "",
                           r->type == REDIS_REPLY_ARRAY && r->elements == 1
                           ? r->element[0]->str : "");
                rc = VCTL_ERROR;
            }
        }

        freeReplyObject(r);
    }

    return rc;
}


static void
vctl_vault_unwatch(vctl_t *ctl)
{
    redisReply  *r;

    r = vctl_redis(ctl, "UNWATCH");

    if (r != NULL) {
        freeReplyObject(r);
    }
}


static int
vctl_record_cmp(const void *a, const void *b)
{
    int                   rc;
    size_t                n;
    const vctl_record_t  *x = a, *y = b;

    n = x->name_len < y->name_len ? x->name_len : y->name_len;
    rc = memcmp(x->name, y->name, n);

    if (rc != 0) {
        return rc;
    }

    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}


/* no core file, no ptrace by the same user: the process holds a key */
static void
vctl_vault_private(void)
{
    (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}
