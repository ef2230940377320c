/* vc_vault.h -- the credential vault's records: master key, seal, open */

#ifndef VC_VAULT_H
#define VC_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "vc_common.h"


/* the format of a record: see the comment at the top of vc_vault.c */
#define VC_VAULT_VERSION        1
#define VC_VAULT_KEY_LEN        32          /* AES-256 */
#define VC_VAULT_KEY_ID_LEN     8
#define VC_VAULT_NONCE_LEN      12          /* 96 bits, random per seal */
#define VC_VAULT_TAG_LEN        16
#define VC_VAULT_HEADER_LEN     (1 + VC_VAULT_KEY_ID_LEN + VC_VAULT_NONCE_LEN)
#define VC_VAULT_OVERHEAD       (VC_VAULT_HEADER_LEN + VC_VAULT_TAG_LEN)

/* the associated data starts with the record's version and key id */
#define VC_VAULT_AAD_HEADER_LEN (1 + VC_VAULT_KEY_ID_LEN)

#define VC_VAULT_KEY_ID_LABEL   "vantage vault key id"

#define VC_VAULT_NAME_MAX       128
#define VC_VAULT_VALUE_MAX      (64 * 1024)

/* where every worker and vantagectl find the records: one hash */
#define VC_VAULT_REDIS_KEY      "{vv}:vault"

/* vantagectl's sources of the master key, after --key-file */
#define VC_VAULT_ENV_KEY_FILE   "VANTAGE_VAULT_KEY_FILE"
#define VC_VAULT_ENV_KEY        "VANTAGE_VAULT_KEY"

/* a message of this module: a quoted path or name and the problem */
#define VC_VAULT_ERRSTR_LEN     512


typedef struct {
    unsigned char   key[VC_VAULT_KEY_LEN];
    unsigned char   id[VC_VAULT_KEY_ID_LEN];
    char            id_hex[2 * VC_VAULT_KEY_ID_LEN + 1];
} vc_vault_key_t;


/* what a record says of itself, without a key */
typedef struct {
    unsigned        version;
    char            key_id_hex[2 * VC_VAULT_KEY_ID_LEN + 1];
    size_t          value_len;
} vc_vault_info_t;


/*
 * Sets key from 32 raw bytes and computes its id: the first 8 bytes of
 * HMAC-SHA256(raw, "vantage vault key id"), written as 16 lowercase hex
 * digits in id_hex.  Returns VC_OK, or VC_ERROR when HMAC fails.
 */
int vc_vault_key_set(vc_vault_key_t *key, const unsigned char *raw);

/*
 * Parses a master key given as text, as VANTAGE_VAULT_KEY holds it: 64 hex
 * digits (either case) or the standard base64 of 32 bytes (44 characters,
 * padded, canonical), with one trailing LF or CRLF allowed.  Returns VC_OK,
 * or VC_ERROR with err saying what is expected; err never quotes the text.
 */
int vc_vault_key_parse(vc_vault_key_t *key, const char *text, size_t len,
    char *err, size_t errlen);

/*
 * Reads a master key file: 32 raw bytes, or one of the texts of
 * vc_vault_key_parse().  The file must be a regular file that neither its
 * group nor others may read, write or execute (as ssh requires of a
 * private key): mode 0600 or 0400.  Thirty-two bytes that are all
 * printable are refused as text (a passphrase, or 32 hex digits, which are
 * 16 bytes), never used as a key.  Returns VC_OK, or VC_ERROR with err
 * starting with the quoted path ("\"/etc/vantage/vault.key\": ..."),
 * never quoting the content.  The buffers that held the file are cleared.
 */
int vc_vault_key_read_file(vc_vault_key_t *key, const char *path,
    char *err, size_t errlen);

/* clears the key's memory */
void vc_vault_key_clear(vc_vault_key_t *key);

/*
 * 1 when name is a valid record name: 1 to 128 bytes of printable ASCII
 * without space, '"' or '\', so that it prints as it is in any message
 * and table.  Else 0.
 */
int vc_vault_name_valid(const char *name, size_t len);

/*
 * Reads a record's version, key id and value length, without a key.
 * Returns VC_OK, or VC_ERROR (too short, an unknown version) with err.
 */
int vc_vault_info(const unsigned char *rec, size_t len,
    vc_vault_info_t *info, char *err, size_t errlen);

/*
 * Seals value (len bytes, at most VC_VAULT_VALUE_MAX, any bytes) for the
 * record name under key with a fresh random nonce.  rec must hold
 * len + VC_VAULT_OVERHEAD bytes, which are all written.  Returns VC_OK, or
 * VC_ERROR with err (an invalid name, a value too large, no random bytes,
 * a failure of OpenSSL).
 */
int vc_vault_seal(const vc_vault_key_t *key, const char *name,
    size_t name_len, const unsigned char *value, size_t len,
    unsigned char *rec, char *err, size_t errlen);

/*
 * Opens the record rec (rec_len bytes) stored as name.  On VC_OK, *value
 * is a malloc()ed copy of the value with a NUL after its *len bytes (the
 * value itself may hold NULs), to be released with vc_vault_free().
 * Returns:
 *   VC_DECLINED   the record was sealed under another key; err is "wrong
 *                 master key (record was sealed under key id X, this key
 *                 is Y)", found from the key ids before any decryption;
 *   VC_ERROR      a malformed record, an unknown version, an invalid name,
 *                 or a record that does not authenticate (altered, or
 *                 stored under another name): err says which.
 * The tag is checked by OpenSSL's GCM in constant time; on failure the
 * partly decrypted buffer is cleared before it is freed.
 */
int vc_vault_open(const vc_vault_key_t *key, const char *name,
    size_t name_len, const unsigned char *rec, size_t rec_len,
    unsigned char **value, size_t *len, char *err, size_t errlen);

/* clears len bytes of value (and its NUL) and frees it; NULL is fine */
void vc_vault_free(unsigned char *value, size_t len);


#endif /* VC_VAULT_H */
