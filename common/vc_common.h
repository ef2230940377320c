/* vc_common.h -- return codes and helpers shared by module and worker */

#ifndef VC_COMMON_H
#define VC_COMMON_H

#include <stddef.h>
#include <stdint.h>


/* the words nginx uses, so both sides of Vantage read alike */
#define VC_OK         0
#define VC_ERROR     -1
#define VC_AGAIN     -2
#define VC_DONE      -4
#define VC_DECLINED  -5


#define VC_ERRSTR_LEN  128


/*
 * Decodes unpadded base64url (RFC 4648 section 5, as JWS uses it) into dst,
 * which must hold at least vc_base64url_decoded_len(len) bytes.  Refuses
 * padding, characters outside the alphabet, a length of 1 mod 4, and
 * non-zero trailing bits, so that every value has exactly one encoding.
 * Returns the decoded length, or -1; after -1, dst may hold some bytes.
 */
long vc_base64url_decode(unsigned char *dst, const char *src, size_t len);

#define vc_base64url_decoded_len(len)  (((len) + 3) / 4 * 3)


#endif /* VC_COMMON_H */
