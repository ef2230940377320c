/* vc_vault.c -- the credential vault's records: master key, seal, open */

/*
 * The vault keeps the connectors' secrets (client secrets, private keys,
 * refresh tokens, API tokens) encrypted at rest, in Redis, so that every
 * worker shares them, and a connector's configuration names a secret,
 * never holds it.  This file is the format and the cryptography, in plain
 * C with OpenSSL alone: vantagectl writes records with it, the worker
 * reads them with it, and a unit test drives it.  docs/VAULT.md says the
 * same for operators, with the threat model.
 *
 * Record (version 1), the value of field <name> of the hash {vv}:vault:
 *
 *     offset  size  what
 *     0       1     version, 0x01
 *     1       8     key id: HMAC-SHA256(master, "vantage vault key id"),
 *                   its first 8 bytes
 *     9       12    nonce: 96 random bits (RAND_bytes), new at every seal
 *     21      n     ciphertext: AES-256-GCM of the n-byte value
 *     21 + n  16    GCM tag
 *
 * The associated data is the record's first 9 bytes (version and key id)
 * followed by the name's bytes, so that a record copied to another name,
 * or whose header was edited, does not authenticate.  The master key is
 * the AES key itself; the key id is a PRF output under it and says
 * nothing of it.
 *
 * The key id lets a wrong master key be told from a damaged record before
 * any decryption: a record under another key is refused as "wrong master
 * key (record was sealed under key id X, this key is Y)", and a failed tag
 * under the right key means the record was altered.  The tag is checked
 * by OpenSSL's GCM (CRYPTO_memcmp, constant time), and the buffer that
 * received the plaintext is cleared when the check fails.
 *
 * The master key is 32 bytes read from a file (raw, 64 hex digits, or
 * base64), which must be its owner's alone (mode 0600 or 0400, as ssh
 * wants a private key), or, for vantagectl only, from the environment
 * (VANTAGE_VAULT_KEY: hex or base64).  Never from a configuration file:
 * the worker's names the key file.  Random 96-bit nonces keep the chance
 * of a repeated nonce below 2^-32 for up to 2^32 seals under one key
 * (NIST SP 800-38D, 8.3); every put and every re-seal of a rotation is
 * one seal, so a vault comes nowhere near it.
 *
 * Everything that held a key or a value is cleared with OPENSSL_cleanse()
 * before it is freed or goes out of scope.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "vc_vault.h"


/* the longest key file: 44 base64 characters and a CRLF, with room */
#define VC_VAULT_KEY_FILE_MAX  128


static int vc_vault_hex_decode(unsigned char *dst, const char *s,
    size_t len);
static int vc_vault_b64_decode32(unsigned char *dst, const char *s,
    size_t len);
static size_t vc_vault_chomp(const char *s, size_t len);


int
vc_vault_key_set(vc_vault_key_t *key, const unsigned char *raw)
{
    int            i;
    unsigned int   n;
    unsigned char  mac[EVP_MAX_MD_SIZE];

    memcpy(key->key, raw, VC_VAULT_KEY_LEN);

    if (HMAC(EVP_sha256(), key->key, VC_VAULT_KEY_LEN,
             (const unsigned char *) VC_VAULT_KEY_ID_LABEL,
             sizeof(VC_VAULT_KEY_ID_LABEL) - 1, mac, &n)
        == NULL)
    {
        OPENSSL_cleanse(key, sizeof(vc_vault_key_t));
        return VC_ERROR;
    }

    memcpy(key->id, mac, VC_VAULT_KEY_ID_LEN);
    OPENSSL_cleanse(mac, sizeof(mac));

    for (i = 0; i < VC_VAULT_KEY_ID_LEN; i++) {
        snprintf(key->id_hex + 2 * i, 3, "%02x", key->id[i]);
    }

    return VC_OK;
}


int
vc_vault_key_parse(vc_vault_key_t *key, const char *text, size_t len,
    char *err, size_t errlen)
{
    int            rc;
    unsigned char  raw[VC_VAULT_KEY_LEN];

    len = vc_vault_chomp(text, len);

    if (len == 2 * VC_VAULT_KEY_LEN) {
        rc = vc_vault_hex_decode(raw, text, len);

    } else {
        rc = vc_vault_b64_decode32(raw, text, len);
    }

    if (rc == VC_OK) {
        rc = vc_vault_key_set(key, raw);
        OPENSSL_cleanse(raw, sizeof(raw));

        if (rc != VC_OK) {
            snprintf(err, errlen, "HMAC-SHA256 failed");
        }

        return rc;
    }

    OPENSSL_cleanse(raw, sizeof(raw));

    snprintf(err, errlen, "not a master key: 64 hex digits or the base64 "
             "of 32 bytes expected");

    return VC_ERROR;
}


int
vc_vault_key_read_file(vc_vault_key_t *key, const char *path, char *err,
    size_t errlen)
{
    int            fd, rc;
    char           buf[VC_VAULT_KEY_FILE_MAX + 1];
    size_t         len, i;
    ssize_t        n;
    struct stat    st;

    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd == -1) {
        snprintf(err, errlen, "\"%s\": cannot open: %s", path,
                 strerror(errno));
        return VC_ERROR;
    }

    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "\"%s\": cannot stat: %s", path,
                 strerror(errno));
        close(fd);
        return VC_ERROR;
    }

    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "\"%s\": not a regular file", path);
        close(fd);
        return VC_ERROR;
    }

    /* checked before a byte is read: a key others can read is no key */
    if (st.st_mode & 077) {
        snprintf(err, errlen, "\"%s\": permissions %04o are too open: a "
                 "master key must be readable by its owner alone "
                 "(chmod 600)", path, (unsigned) (st.st_mode & 07777));
        close(fd);
        return VC_ERROR;
    }

    len = 0;

    do {
        n = read(fd, buf + len, sizeof(buf) - len);
        if (n > 0) {
            len += n;
        }
    } while ((n > 0 || (n == -1 && errno == EINTR)) && len < sizeof(buf));

    rc = errno;
    close(fd);

    if (n == -1) {
        OPENSSL_cleanse(buf, sizeof(buf));
        snprintf(err, errlen, "\"%s\": cannot read: %s", path, strerror(rc));
        return VC_ERROR;
    }

    if (len == 0) {
        snprintf(err, errlen, "\"%s\": empty, not a master key", path);
        return VC_ERROR;
    }

    rc = VC_ERROR;

    if (len == VC_VAULT_KEY_LEN) {
        /* 32 printable bytes are a passphrase or 16 bytes in hex */
        for (i = 0; i < len; i++) {
            if ((unsigned char) buf[i] < 0x20
                || (unsigned char) buf[i] > 0x7e)
            {
                break;
            }
        }

        if (i < len) {
            rc = vc_vault_key_set(key, (unsigned char *) buf);
        }

    } else if (len <= VC_VAULT_KEY_FILE_MAX) {
        rc = vc_vault_key_parse(key, buf, len, err, errlen);
    }

    OPENSSL_cleanse(buf, sizeof(buf));

    if (rc != VC_OK) {
        snprintf(err, errlen, "\"%s\": not a master key: 32 random bytes, "
                 "64 hex digits or the base64 of 32 bytes expected", path);
        return VC_ERROR;
    }

    return VC_OK;
}


void
vc_vault_key_clear(vc_vault_key_t *key)
{
    OPENSSL_cleanse(key, sizeof(vc_vault_key_t));
}


int
vc_vault_name_valid(const char *name, size_t len)
{
    size_t  i;

    if (len == 0 || len > VC_VAULT_NAME_MAX) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (name[i] <= 0x20 || name[i] >= 0x7f || name[i] == '"'
            || name[i] == '\\')
        {
            return 0;
        }
    }

    return 1;
}


int
vc_vault_info(const unsigned char *rec, size_t len, vc_vault_info_t *info,
    char *err, size_t errlen)
{
    int  i;

    if (len < VC_VAULT_OVERHEAD) {
        snprintf(err, errlen, "record of %zu bytes: too short for a vault "
                 "record (%d bytes at least)", len, VC_VAULT_OVERHEAD);
        return VC_ERROR;
    }

    if (rec[0] != VC_VAULT_VERSION) {
        snprintf(err, errlen, "record version %u is not supported (version "
                 "%d expected)", rec[0], VC_VAULT_VERSION);
        return VC_ERROR;
    }

    info->version = rec[0];
    info->value_len = len - VC_VAULT_OVERHEAD;

    for (i = 0; i < VC_VAULT_KEY_ID_LEN; i++) {
        snprintf(info->key_id_hex + 2 * i, 3, "%02x", rec[1 + i]);
    }

    return VC_OK;
}


int
vc_vault_seal(const vc_vault_key_t *key, const char *name, size_t name_len,
    const unsigned char *value, size_t len, unsigned char *rec, char *err,
    size_t errlen)
{
    int              n, ok;
    unsigned char   *nonce, *ct;
    EVP_CIPHER_CTX  *ctx;

    if (!vc_vault_name_valid(name, name_len)) {
        snprintf(err, errlen, "invalid name: 1 to %d printable ASCII "
                 "characters without space, '\"' or '\\' expected",
                 VC_VAULT_NAME_MAX);
        return VC_ERROR;
    }

    if (len > VC_VAULT_VALUE_MAX) {
        snprintf(err, errlen, "value of %zu bytes: larger than %dk", len,
                 VC_VAULT_VALUE_MAX / 1024);
        return VC_ERROR;
    }

    rec[0] = VC_VAULT_VERSION;
    memcpy(rec + 1, key->id, VC_VAULT_KEY_ID_LEN);
    nonce = rec + VC_VAULT_AAD_HEADER_LEN;
    ct = rec + VC_VAULT_HEADER_LEN;

    if (RAND_bytes(nonce, VC_VAULT_NONCE_LEN) != 1) {
        snprintf(err, errlen, "no random bytes from OpenSSL");
        return VC_ERROR;
    }

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        snprintf(err, errlen, "out of memory");
        return VC_ERROR;
    }

    /* GCM's default IV length is 12 bytes, the nonce's */
    ok = EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->key, nonce)
         == 1
         && EVP_EncryptUpdate(ctx, NULL, &n, rec, VC_VAULT_AAD_HEADER_LEN)
            == 1
         && EVP_EncryptUpdate(ctx, NULL, &n, (const unsigned char *) name,
                              (int) name_len)
            == 1
         && (len == 0
             || EVP_EncryptUpdate(ctx, ct, &n, value, (int) len) == 1)
         && EVP_EncryptFinal_ex(ctx, ct + len, &n) == 1
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, VC_VAULT_TAG_LEN,
                                ct + len)
            == 1;

    /* frees the key schedule after clearing it */
    EVP_CIPHER_CTX_free(ctx);

    if (!ok) {
        OPENSSL_cleanse(rec, len + VC_VAULT_OVERHEAD);
        snprintf(err, errlen, "AES-256-GCM failed");
        return VC_ERROR;
    }

    return VC_OK;
}


int
vc_vault_open(const vc_vault_key_t *key, const char *name, size_t name_len,
    const unsigned char *rec, size_t rec_len, unsigned char **value,
    size_t *len, char *err, size_t errlen)
{
    int                   n, ok, done;
    size_t                vlen;
    unsigned char        *buf;
    EVP_CIPHER_CTX       *ctx;
    vc_vault_info_t       info;
    const unsigned char  *ct;

    *value = NULL;
    *len = 0;

    if (!vc_vault_name_valid(name, name_len)) {
        snprintf(err, errlen, "invalid name");
        return VC_ERROR;
    }

    if (vc_vault_info(rec, rec_len, &info, err, errlen) != VC_OK) {
        return VC_ERROR;
    }

    /* key ids are public: no need for a constant-time comparison */
    if (memcmp(rec + 1, key->id, VC_VAULT_KEY_ID_LEN) != 0) {
        snprintf(err, errlen, "wrong master key (record was sealed under "
                 "key id %s, this key is %s)", info.key_id_hex, key->id_hex);
        return VC_DECLINED;
    }

    vlen = info.value_len;
    ct = rec + VC_VAULT_HEADER_LEN;

    buf = malloc(vlen + 1);
    if (buf == NULL) {
        snprintf(err, errlen, "out of memory");
        return VC_ERROR;
    }

    ctx = EVP_CIPHER_CTX_new();
    if (ctx == NULL) {
        free(buf);
        snprintf(err, errlen, "out of memory");
        return VC_ERROR;
    }

    ok = EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, key->key,
                            rec + VC_VAULT_AAD_HEADER_LEN)
         == 1
         && EVP_DecryptUpdate(ctx, NULL, &n, rec, VC_VAULT_AAD_HEADER_LEN)
            == 1
         && EVP_DecryptUpdate(ctx, NULL, &n, (const unsigned char *) name,
                              (int) name_len)
            == 1
         && (vlen == 0
             || EVP_DecryptUpdate(ctx, buf, &n, ct, (int) vlen) == 1)
         && EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, VC_VAULT_TAG_LEN,
                                (void *) (ct + vlen))
            == 1;

    /* the tag is compared here */
    done = ok && EVP_DecryptFinal_ex(ctx, buf + vlen, &n) == 1;

    EVP_CIPHER_CTX_free(ctx);

    if (!done) {
        OPENSSL_cleanse(buf, vlen + 1);
        free(buf);

        if (!ok) {
            snprintf(err, errlen, "AES-256-GCM failed");

        } else {
            snprintf(err, errlen, "record does not authenticate: it was "
                     "altered, or sealed for another name");
        }

        return VC_ERROR;
    }

    buf[vlen] = '\0';
    *value = buf;
    *len = vlen;

    return VC_OK;
}


void
vc_vault_free(unsigned char *value, size_t len)
{
    if (value == NULL) {
        return;
    }

    OPENSSL_cleanse(value, len + 1);
    free(value);
}


/* the length without one trailing LF or CRLF */
static size_t
vc_vault_chomp(const char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '\n') {
        len--;

        if (len > 0 && s[len - 1] == '\r') {
            len--;
        }
    }

    return len;
}


static int
vc_vault_hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }

    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }

    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }

    return -1;
}


/* exactly 2 * VC_VAULT_KEY_LEN hex digits */
static int
vc_vault_hex_decode(unsigned char *dst, const char *s, size_t len)
{
    int     hi, lo;
    size_t  i;

    if (len != 2 * VC_VAULT_KEY_LEN) {
        return VC_ERROR;
    }

    for (i = 0; i < VC_VAULT_KEY_LEN; i++) {
        hi = vc_vault_hex_value(s[2 * i]);
        lo = vc_vault_hex_value(s[2 * i + 1]);

        if (hi < 0 || lo < 0) {
            return VC_ERROR;
        }

        dst[i] = (unsigned char) (hi << 4 | lo);
    }

    return VC_OK;
}


static int
vc_vault_b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }

    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }

    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }

    if (c == '+') {
        return 62;
    }

    if (c == '/') {
        return 63;
    }

    return -1;
}


/*
 * The standard base64 of 32 bytes, as `openssl rand -base64 32` writes it:
 * 43 characters and one '=', the last character's two spare bits zero.
 */
static int
vc_vault_b64_decode32(unsigned char *dst, const char *s, size_t len)
{
    int       v;
    size_t    i, o;
    uint32_t  acc;

    if (len != 44 || s[43] != '=') {
        return VC_ERROR;
    }

    acc = 0;
    o = 0;

    for (i = 0; i < 43; i++) {
        v = vc_vault_b64_value(s[i]);
        if (v < 0) {
            return VC_ERROR;
        }

        acc = acc << 6 | (uint32_t) v;

        if (i % 4 == 3) {
            dst[o++] = (unsigned char) (acc >> 16);
            dst[o++] = (unsigned char) (acc >> 8);
            dst[o++] = (unsigned char) acc;
            acc = 0;
        }
    }

    /* the last three characters carry 18 bits: 16 of data, 2 spare */
    if (acc & 3) {
        return VC_ERROR;
    }

    dst[o++] = (unsigned char) (acc >> 10);
    dst[o++] = (unsigned char) (acc >> 2);

    return o == VC_VAULT_KEY_LEN ? VC_OK : VC_ERROR;
}
