/* ctl_apikey.c -- API key files: create, list, revoke, disable keys */

/*
 * These commands work on the file that vantage_api_keys names, never on
 * Redis.  A key is "vk_<id>_<43 characters>": the id, so that an operator
 * can tell which key a client holds, and 32 random bytes in base64url, the
 * secret.  Only the key's SHA-256 is written; the key itself is printed
 * once, on stdout, and kept nowhere.
 *
 * Every change is read, modified and written under an exclusive flock()
 * on the file's directory (the file itself is replaced, so a lock on it
 * would not hold), through a temporary file in the same directory and
 * rename(), keeping the file's mode: nginx's workers, which reload the
 * file when it changes, see the old file or the new one, never a part.
 * What is written is first parsed with vc_apikeys_load(), the parser nginx
 * uses, so that vantagectl never writes a file nginx would refuse.
 */

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "vantagectl.h"
#include "vc_apikeys.h"


typedef struct {
    const char                 *path;
    int                         dirfd;     /* locked */
    mode_t                      mode;
    uid_t                       uid;
    gid_t                       gid;
    unsigned                    exists:1;
    json_t                     *doc;       /* {"keys": [...]} */
    json_t                     *keys;      /* borrowed from doc */
} vctl_keyfile_t;


static int vctl_keyfile_open(vctl_keyfile_t *kf, const char *path,
    int lock);
static int vctl_keyfile_write(vctl_keyfile_t *kf);
static void vctl_keyfile_close(vctl_keyfile_t *kf);
static json_t *vctl_keyfile_find(vctl_keyfile_t *kf, const char *id,
    size_t *index);
static void vctl_rfc3339(int64_t t, char *buf, size_t size);
static int vctl_apikey_need(const vctl_args_t *args, unsigned opts,
    const char *cmd);


int
vctl_apikey_create(vctl_t *ctl)
{
    int                  i, rc;
    char                 key[sizeof(VC_APIKEY_PREFIX) + VC_APIKEY_ID_MAX
                             + 1 + 44];
    char                 hex[65], when[32];
    size_t               n;
    json_t              *entry, *scopes, *out;
    int64_t              expires, ms;
    unsigned char        secret[32], digest[32];
    unsigned int         dlen;
    vctl_keyfile_t       kf;
    const vctl_args_t   *args = ctl->args;

    if (vctl_apikey_need(args, VCTL_OPT_FILE|VCTL_OPT_ID|VCTL_OPT_TENANT,
                         "create")
        != VCTL_OK)
    {
        return VCTL_EXIT_USAGE;
    }

    if (!vc_apikey_id_valid(args->key_id, strlen(args->key_id))) {
        vctl_error("--id: 1 to %d of A-Z a-z 0-9 . - expected",
                   VC_APIKEY_ID_MAX);
        return VCTL_EXIT_USAGE;
    }

    if (!vc_apikey_token_valid(args->tenant, strlen(args->tenant),
                               VC_APIKEY_TENANT_MAX))
    {
        vctl_error("--tenant: 1 to %d printable characters without space, "
                   "'\"' or '\\' expected", VC_APIKEY_TENANT_MAX);
        return VCTL_EXIT_USAGE;
    }

    for (i = 0; i < args->nscopes; i++) {
        if (!vc_apikey_token_valid(args->scopes[i], strlen(args->scopes[i]),
                                   VC_APIKEY_SCOPE_MAX))
        {
            vctl_error("--scope: 1 to %d printable characters without "
                       "space, '\"' or '\\' expected", VC_APIKEY_SCOPE_MAX);
            return VCTL_EXIT_USAGE;
        }
    }

    expires = 0;

    if (args->expires != NULL) {
        if (args->expires[0] >= '0' && args->expires[0] <= '9'
            && strchr(args->expires, '-') == NULL)
        {
            /* a duration: vctl_parse_since() counts it back from 0 */
            if (vctl_parse_since(args->expires, 0, &ms) != VCTL_OK
                || ms > -1000)
            {
                goto bad_expires;
            }

            expires = vctl_now_ms() / 1000 + (-ms) / 1000;

        } else if (vc_rfc3339_parse(args->expires, strlen(args->expires),
                                    &expires)
                   != VC_OK)
        {
            goto bad_expires;
        }

        if (expires <= vctl_now_ms() / 1000) {
            vctl_error("--expires: that time has passed already");
            return VCTL_EXIT_USAGE;
        }
    }

    if (vctl_keyfile_open(&kf, args->file, 1) != VCTL_OK) {
        return VCTL_EXIT_FAIL;
    }

    rc = VCTL_EXIT_FAIL;

    if (vctl_keyfile_find(&kf, args->key_id, NULL) != NULL) {
        vctl_error("id \"%s\" is in %s already: revoke it first, or choose "
                   "another id", args->key_id, kf.path);
        goto done;
    }

    if (RAND_bytes(secret, sizeof(secret)) != 1) {
        vctl_error("no random bytes from OpenSSL");
        goto done;
    }

    n = snprintf(key, sizeof(key), "%s%s_", VC_APIKEY_PREFIX, args->key_id);

    /* base64url without padding: 32 bytes are 43 characters */
    {
        static const char  b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   "abcdefghijklmnopqrstuvwxyz0123456789-_";
        uint32_t           v;
        size_t             j;

        for (j = 0; j < 30; j += 3) {
            v = (uint32_t) secret[j] << 16 | (uint32_t) secret[j + 1] << 8
                | secret[j + 2];
            key[n++] = b64[v >> 18 & 63];
            key[n++] = b64[v >> 12 & 63];
            key[n++] = b64[v >> 6 & 63];
            key[n++] = b64[v & 63];
        }

        v = (uint32_t) secret[30] << 8 | secret[31];
        key[n++] = b64[v >> 10 & 63];
        key[n++] = b64[v >> 4 & 63];
        key[n++] = b64[v << 2 & 63];
        key[n] = '\0';
    }

    OPENSSL_cleanse(secret, sizeof(secret));

    if (EVP_Digest(key, n, digest, &dlen, EVP_sha256(), NULL) != 1) {
        vctl_error("SHA-256 failed");
        goto done;
    }

    for (i = 0; i < 32; i++) {
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
    }

    scopes = json_array();
    for (i = 0; i < args->nscopes; i++) {
        json_array_append_new(scopes, json_string(args->scopes[i]));
    }

    vctl_rfc3339(vctl_now_ms() / 1000, when, sizeof(when));

    entry = json_pack("{s:s, s:s, s:s, s:o, s:s}", "id", args->key_id,
                      "sha256", hex, "tenant", args->tenant, "scopes",
                      scopes, "created", when);

    if (entry == NULL) {
        vctl_error("out of memory");
        goto done;
    }

    if (expires) {
        vctl_rfc3339(expires, when, sizeof(when));
        json_object_set_new(entry, "expires", json_string(when));
    }

    json_array_append(kf.keys, entry);

    if (vctl_keyfile_write(&kf) != VCTL_OK) {
        json_decref(entry);
        goto done;
    }

    /* the key, once; what else is said goes to stderr */

    if (args->json) {
        out = json_deep_copy(entry);
        json_object_set_new(out, "key", json_string(key));
        vctl_json_print(out);

    } else {
        printf("%s\n", key);
        fflush(stdout);
        fprintf(stderr, "%s: key \"%s\" for tenant \"%s\" added to %s; it "
                "is shown this once\n", VCTL_NAME, args->key_id,
                args->tenant, kf.path);
    }

    OPENSSL_cleanse(key, sizeof(key));
    json_decref(entry);
    rc = VCTL_EXIT_OK;

done:

    vctl_keyfile_close(&kf);

    return rc;

bad_expires:

    vctl_error("--expires: an RFC 3339 time (2027-01-31T08:00:00Z) or a "
               "duration (3600s, 90m, 12h, 90d) expected");
    return VCTL_EXIT_USAGE;
}


int
vctl_apikey_list(vctl_t *ctl)
{
    char                 when[32];
    size_t               i;
    json_t              *e, *v, *out, *item;
    int64_t              now, t;
    const char          *row[5], *status;
    vctl_table_t         table;
    vctl_keyfile_t       kf;
    const vctl_args_t   *args = ctl->args;

    if (vctl_apikey_need(args, VCTL_OPT_FILE, "list") != VCTL_OK) {
        return VCTL_EXIT_USAGE;
    }

    if (vctl_keyfile_open(&kf, args->file, 0) != VCTL_OK) {
        return VCTL_EXIT_FAIL;
    }

    now = vctl_now_ms() / 1000;
    out = json_array();
    vctl_table_init(&table, 5);

    row[0] = "ID";
    row[1] = "TENANT";
    row[2] = "SCOPES";
    row[3] = "EXPIRES";
    row[4] = "STATUS";
    vctl_table_add(&table, row);

    json_array_foreach(kf.keys, i, e) {
        char  *scopes;

        /* the entry was checked by vc_apikeys_load() when opened */

        t = 0;
        v = json_object_get(e, "expires");

        if (json_is_integer(v)) {
            t = json_integer_value(v);

        } else if (json_is_string(v)) {
            vc_rfc3339_parse(json_string_value(v), json_string_length(v),
                             &t);
        }

        status = json_is_true(json_object_get(e, "disabled")) ? "disabled"
                 : (t && now >= t) ? "expired" : "active";

        if (t) {
            vctl_rfc3339(t, when, sizeof(when));
        }

        v = json_object_get(e, "scopes");

        item = json_object();
        json_object_set(item, "id", json_object_get(e, "id"));
        json_object_set(item, "tenant", json_object_get(e, "tenant"));
        json_object_set_new(item, "scopes", v ? json_copy(v) : json_array());
        json_object_set_new(item, "expires", t ? json_string(when)
                                                : json_null());
        json_object_set_new(item, "status", json_string(status));

        if (json_object_get(e, "created")) {
            json_object_set(item, "created", json_object_get(e, "created"));
        }

        json_array_append_new(out, item);

        scopes = NULL;

        if (json_array_size(v)) {
            size_t  j, len;
            json_t *s;

            len = 0;
            json_array_foreach(v, j, s) {
                len += json_string_length(s) + 1;
            }

            scopes = malloc(len);
            if (scopes != NULL) {
                scopes[0] = '\0';
                json_array_foreach(v, j, s) {
                    if (j) {
                        strcat(scopes, ",");
                    }

                    strcat(scopes, json_string_value(s));
                }
            }
        }

        row[0] = json_string_value(json_object_get(e, "id"));
        row[1] = json_string_value(json_object_get(e, "tenant"));
        row[2] = scopes;
        row[3] = t ? when : NULL;
        row[4] = status;
        vctl_table_add(&table, row);

        free(scopes);
    }

    if (args->json) {
        vctl_json_print(json_pack("{s:s, s:o}", "file", kf.path, "keys",
                                  out));

    } else {
        json_decref(out);
        vctl_table_print(&table);
    }

    vctl_table_free(&table);
    vctl_keyfile_close(&kf);

    return VCTL_EXIT_OK;
}


/* revoke: the entry is removed; disable: it stays, marked "disabled" */
int
vctl_apikey_revoke(vctl_t *ctl)
{
    int                  rc, disable;
    size_t               index;
    json_t              *e;
    vctl_keyfile_t       kf;
    const vctl_args_t   *args = ctl->args;

    disable = strcmp(args->pos[1], "disable") == 0;

    if (vctl_apikey_need(args, VCTL_OPT_FILE|VCTL_OPT_ID, args->pos[1])
        != VCTL_OK)
    {
        return VCTL_EXIT_USAGE;
    }

    if (vctl_keyfile_open(&kf, args->file, 1) != VCTL_OK) {
        return VCTL_EXIT_FAIL;
    }

    rc = VCTL_EXIT_FAIL;

    e = vctl_keyfile_find(&kf, args->key_id, &index);
    if (e == NULL) {
        vctl_error("no key \"%s\" in %s", args->key_id, kf.path);
        goto done;
    }

    if (disable) {
        json_object_set_new(e, "disabled", json_true());

    } else {
        json_array_remove(kf.keys, index);
    }

    if (vctl_keyfile_write(&kf) != VCTL_OK) {
        goto done;
    }

    if (args->json) {
        vctl_json_print(json_pack("{s:s, s:s}", "id", args->key_id,
                                  disable ? "disabled" : "revoked",
                                  kf.path));

    } else {
        printf("key \"%s\" %s in %s\n", args->key_id,
               disable ? "disabled" : "revoked", kf.path);
    }

    rc = VCTL_EXIT_OK;

done:

    vctl_keyfile_close(&kf);

    return rc;
}


static int
vctl_apikey_need(const vctl_args_t *args, unsigned opts, const char *cmd)
{
    if ((opts & VCTL_OPT_FILE) && !(args->given & VCTL_OPT_FILE)) {
        vctl_error("apikey %s needs --file", cmd);
        return VCTL_ERROR;
    }

    if ((opts & VCTL_OPT_ID) && !(args->given & VCTL_OPT_ID)) {
        vctl_error("apikey %s needs --id", cmd);
        return VCTL_ERROR;
    }

    if ((opts & VCTL_OPT_TENANT) && !(args->given & VCTL_OPT_TENANT)) {
        vctl_error("apikey %s needs --tenant", cmd);
        return VCTL_ERROR;
    }

    return VCTL_OK;
}


/*
 * Reads the file (a missing one is an empty set when lock is set, that is
 * when it is to be written), after taking the directory's lock when lock
 * is set.  The file must be one nginx would load.
 */
static int
vctl_keyfile_open(vctl_keyfile_t *kf, const char *path, int lock)
{
    int            fd;
    char          *buf, *copy;
    char           errstr[VC_ERRSTR_LEN];
    size_t         len;
    ssize_t        n;
    struct stat    st;
    vc_apikeys_t   set;

    memset(kf, 0, sizeof(vctl_keyfile_t));
    kf->path = path;
    kf->dirfd = -1;
    kf->mode = 0644;

    if (lock) {
        copy = strdup(path);
        if (copy == NULL) {
            vctl_error("out of memory");
            return VCTL_ERROR;
        }

        kf->dirfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
        free(copy);

        if (kf->dirfd == -1) {
            vctl_error("%s: its directory: %s", path, strerror(errno));
            return VCTL_ERROR;
        }

        if (flock(kf->dirfd, LOCK_EX) != 0) {
            vctl_error("%s: cannot lock its directory: %s", path,
                       strerror(errno));
            vctl_keyfile_close(kf);
            return VCTL_ERROR;
        }
    }

    fd = open(path, O_RDONLY);

    if (fd == -1) {
        if (errno == ENOENT && lock) {
            kf->doc = json_pack("{s:[]}", "keys");
            kf->keys = json_object_get(kf->doc, "keys");
            return VCTL_OK;
        }

        vctl_error("%s: %s", path, strerror(errno));
        vctl_keyfile_close(kf);
        return VCTL_ERROR;
    }

    if (fstat(fd, &st) != 0 || st.st_size > 4 * 1024 * 1024) {
        vctl_error("%s: %s", path, st.st_size > 4 * 1024 * 1024
                   ? "larger than 4m" : strerror(errno));
        close(fd);
        vctl_keyfile_close(kf);
        return VCTL_ERROR;
    }

    kf->exists = 1;
    kf->mode = st.st_mode & 07777;
    kf->uid = st.st_uid;
    kf->gid = st.st_gid;

    len = st.st_size;
    buf = malloc(len + 1);
    n = buf ? read(fd, buf, len) : -1;
    close(fd);

    if (n < 0 || (size_t) n != len) {
        vctl_error("%s: cannot read it", path);
        free(buf);
        vctl_keyfile_close(kf);
        return VCTL_ERROR;
    }

    memset(&set, 0, sizeof(set));

    if (vc_apikeys_load(&set, buf, len, errstr, sizeof(errstr)) != VC_OK) {
        vctl_error("%s: %s (nginx would refuse it too: fix it first)", path,
                   errstr);
        free(buf);
        vctl_keyfile_close(kf);
        return VCTL_ERROR;
    }

    vc_apikeys_free(&set);

    kf->doc = json_loadb(buf, len, JSON_REJECT_DUPLICATES, NULL);
    kf->keys = json_object_get(kf->doc, "keys");
    free(buf);

    return VCTL_OK;
}


/*
 * {"keys": [ one entry a line ]}: a diff of the file shows which key
 * changed.  Checked with nginx's parser, then written to a temporary file
 * beside it, synced, and renamed over it.
 */
static int
vctl_keyfile_write(vctl_keyfile_t *kf)
{
    int            fd;
    char          *text, *line, *tmp;
    char           errstr[VC_ERRSTR_LEN];
    size_t         i, len, size;
    ssize_t        n;
    json_t        *e;
    vc_apikeys_t   set;

    size = 64;
    text = malloc(size);
    if (text == NULL) {
        vctl_error("out of memory");
        return VCTL_ERROR;
    }

    len = (size_t) sprintf(text, "{\"keys\": [\n");

    json_array_foreach(kf->keys, i, e) {
        line = json_dumps(e, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (line == NULL) {
            free(text);
            vctl_error("out of memory");
            return VCTL_ERROR;
        }

        if (len + strlen(line) + 8 > size) {
            size = (len + strlen(line) + 8) * 2;
            tmp = realloc(text, size);
            if (tmp == NULL) {
                free(line);
                free(text);
                vctl_error("out of memory");
                return VCTL_ERROR;
            }

            text = tmp;
        }

        len += sprintf(text + len, "  %s%s\n", line,
                       i + 1 < json_array_size(kf->keys) ? "," : "");
        free(line);
    }

    len += sprintf(text + len, "]}\n");

    memset(&set, 0, sizeof(set));

    if (vc_apikeys_load(&set, text, len, errstr, sizeof(errstr)) != VC_OK) {
        vctl_error("%s: not written: %s", kf->path, errstr);
        free(text);
        return VCTL_ERROR;
    }

    vc_apikeys_free(&set);

    tmp = malloc(strlen(kf->path) + sizeof(".XXXXXX"));
    if (tmp == NULL) {
        free(text);
        vctl_error("out of memory");
        return VCTL_ERROR;
    }

    sprintf(tmp, "%s.XXXXXX", kf->path);

    fd = mkstemp(tmp);
    if (fd == -1) {
        vctl_error("%s: cannot create a temporary file beside it: %s",
                   kf->path, strerror(errno));
        free(tmp);
        free(text);
        return VCTL_ERROR;
    }

    /* the owner is kept when vantagectl may set it (as root) */

    if (fchmod(fd, kf->mode) != 0
        || (kf->exists && fchown(fd, kf->uid, kf->gid) != 0
            && errno != EPERM))
    {
        goto failed;
    }

    n = write(fd, text, len);

    if (n < 0 || (size_t) n != len || fsync(fd) != 0) {
        goto failed;
    }

    if (close(fd) != 0) {
        fd = -1;
        goto failed;
    }

    fd = -1;

    if (rename(tmp, kf->path) != 0) {
        goto failed;
    }

    if (kf->dirfd != -1) {
        (void) fsync(kf->dirfd);
    }

    free(tmp);
    free(text);

    return VCTL_OK;

failed:

    vctl_error("%s: cannot write it: %s", kf->path, strerror(errno));

    if (fd != -1) {
        close(fd);
    }

    unlink(tmp);
    free(tmp);
    free(text);

    return VCTL_ERROR;
}


static void
vctl_keyfile_close(vctl_keyfile_t *kf)
{
    json_decref(kf->doc);
    kf->doc = NULL;

    if (kf->dirfd != -1) {
        /* closing the descriptor releases the lock */
        close(kf->dirfd);
        kf->dirfd = -1;
    }
}


static json_t *
vctl_keyfile_find(vctl_keyfile_t *kf, const char *id, size_t *index)
{
    size_t   i;
    json_t  *e;

    json_array_foreach(kf->keys, i, e) {
        if (strcmp(json_string_value(json_object_get(e, "id")), id) == 0) {
            if (index) {
                *index = i;
            }

            return e;
        }
    }

    return NULL;
}


static void
vctl_rfc3339(int64_t t, char *buf, size_t size)
{
    time_t     tt;
    struct tm  tm;

    tt = (time_t) t;
    gmtime_r(&tt, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
