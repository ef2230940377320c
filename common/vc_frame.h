/* vc_frame.h -- the frames the module and the worker exchange on the socket */

#ifndef VC_FRAME_H
#define VC_FRAME_H

#include "vc_common.h"


/*
 * Version 1 of the hand-off protocol (docs/PROTOCOL.md says it in prose).
 *
 * Every message is one frame: a 16-byte header, then `length` bytes of
 * fields.
 *
 *     offset  size  field
 *     0       2     magic "VW"
 *     2       1     version, 1
 *     3       1     type (vc_frame_type_e); a reply is its request's type
 *                   with VC_FRAME_REPLY set
 *     4       8     id, chosen by the sender of a request and echoed in
 *                   its reply, so that replies may come in any order
 *     12      4     length of the fields, at most the receiver's limit
 *
 * A field is a 2-byte tag, a 4-byte length and that many bytes of value.
 * All integers are unsigned and big-endian.  A receiver skips fields whose
 * tag it does not know when the tag's VC_FRAME_TAG_OPTIONAL bit is set and
 * refuses the frame otherwise, so that a field that changes the meaning of
 * a message is never silently dropped by an older peer.  The same tag may
 * appear more than once (headers do).
 */

#define VC_FRAME_HEADER_LEN      16
#define VC_FRAME_VERSION         1
#define VC_FRAME_FIELD_HEADER    6

#define VC_FRAME_REPLY           0x80
#define VC_FRAME_TAG_OPTIONAL    0x8000


typedef enum {
    VC_FRAME_PING = 1,           /* readiness; reply: STATUS 200, or 503
                                    with ERROR until the worker can take
                                    work */
    VC_FRAME_DISPATCH = 2,       /* a job to persist; reply: its id, status */
    VC_FRAME_JOB_STATUS = 3,     /* reply: the job's state, for /jobs/<id> */
    VC_FRAME_FETCH = 4           /* an outbound fetch for the module: a key
                                    set, a discovery document, a token's
                                    introspection */
} vc_frame_type_e;


typedef enum {
    VC_TAG_STATUS = 1,           /* reply: HTTP-like code, 4 bytes */
    VC_TAG_ERROR = 2,            /* reply: a reason, text */
    VC_TAG_RETRY_AFTER = 3,      /* reply: seconds, 4 bytes */
    VC_TAG_JOB_TYPE = 16,
    VC_TAG_TENANT = 17,
    VC_TAG_SUBJECT = 18,
    VC_TAG_IDEMPOTENCY_KEY = 19,
    VC_TAG_CORRELATION_ID = 20,
    VC_TAG_HEADER = 21,          /* "<name>\0<value>", once per header */
    VC_TAG_BODY = 22,
    VC_TAG_JOB_ID = 23,
    VC_TAG_JOB_STATE = 24,       /* reply: the job's state and history, JSON */
    VC_TAG_METHOD = 25,
    VC_TAG_URI = 26,
    VC_TAG_ORDERING_KEY = 27,    /* jobs with one key run one at a time */
    VC_TAG_REPLAYED = 28,        /* reply: an idempotent repeat; empty,
                                    sent with VC_FRAME_TAG_OPTIONAL */
    VC_TAG_IDP = 29,             /* FETCH: the worker's [idp <name>], by
                                    name or by a URL the section lists */
    VC_TAG_FETCH_KIND = 30,      /* FETCH: jwks, discovery or introspect */
    VC_TAG_TOKEN = 31,           /* FETCH introspect: the client's token */
    VC_TAG_AGE = 32,             /* reply: seconds since fetched, 4 bytes */
    VC_TAG_MAX_AGE = 33,         /* seconds, 4 bytes; reply: how long it
                                    stays fresh; FETCH of a key set: a
                                    kid was missing, refresh a set at
                                    least this old */
    VC_TAG_STALE = 34            /* reply: empty, optional: the last good
                                    copy, past its time */
} vc_frame_tag_e;


typedef struct {
    unsigned              type;
    uint64_t              id;
    uint32_t              length;
} vc_frame_header_t;


typedef struct {
    unsigned              tag;
    const unsigned char  *value;
    uint32_t              len;
} vc_frame_field_t;


/* writes a frame header into buf, which holds VC_FRAME_HEADER_LEN bytes */
unsigned char *vc_frame_header_put(unsigned char *buf, unsigned type,
    uint64_t id, uint32_t length);

/*
 * Reads a frame header from the len bytes at buf.  Returns VC_OK, VC_AGAIN
 * when fewer than VC_FRAME_HEADER_LEN bytes are there, or VC_ERROR with a
 * reason in *err: a wrong magic or version, an unknown type, or a length
 * above max_length.
 */
int vc_frame_header_get(const unsigned char *buf, size_t len,
    size_t max_length, vc_frame_header_t *h, const char **err);

/* writes a field's tag and length; its value is the caller's to write */
unsigned char *vc_frame_field_header_put(unsigned char *p, unsigned tag,
    uint32_t len);

/* writes a whole field: tag, length and the len bytes at value */
unsigned char *vc_frame_field_put(unsigned char *p, unsigned tag,
    const void *value, uint32_t len);

/* writes a field holding a 4-byte integer */
unsigned char *vc_frame_field_put_uint32(unsigned char *p, unsigned tag,
    uint32_t value);

/*
 * Reads the next field from *pos up to end and moves *pos past it.
 * Returns VC_OK, VC_DONE at the end, or VC_ERROR with a reason in *err
 * when a field runs past the end.
 */
int vc_frame_field_next(const unsigned char **pos, const unsigned char *end,
    vc_frame_field_t *f, const char **err);

/*
 * Checks a frame's fields against the tags the receiver knows (known[tag]
 * non-zero, for tags below 64): VC_OK, or VC_ERROR with a reason in *err
 * for a malformed field or an unknown tag without VC_FRAME_TAG_OPTIONAL.
 */
int vc_frame_fields_check(const unsigned char *fields, size_t len,
    const unsigned char known[64], const char **err);

/* a 4-byte integer field's value, or VC_ERROR if it is not 4 bytes long */
int vc_frame_field_uint32(const vc_frame_field_t *f, uint32_t *value);


#endif /* VC_FRAME_H */
