/* vc_mask.h -- personal data masked out of text the worker keeps or logs */

#ifndef VC_MASK_H
#define VC_MASK_H

#include "vc_common.h"


/*
 * Masks, in place and keeping the length (so that a truncated body stays
 * the size it was cut to), the personal data a vendor's response or an
 * error may echo back:
 *
 *   - SSN-like numbers, ddd-dd-dddd, become ***-**-****;
 *   - runs of 9 or more digits (account and card numbers) keep their last
 *     4 digits, the others become '*';
 *   - the value of a JSON member whose name reads dob, date_of_birth,
 *     birth_date, dateOfBirth, birthDate or birthdate (any case, '_' and
 *     '-' ignored) becomes '*' between its quotes, or all '*' if a number.
 *
 * The text need not be valid JSON or UTF-8, nor end with a NUL: it works on
 * bytes, and it is a scanner, not a parser, so a body cut short is masked
 * as far as it goes.  Returns the number of bytes changed.
 */
size_t vc_mask(unsigned char *p, size_t len);


/* the kinds of personal data vc_mask_kinds() masks, or-ed together */
#define VC_MASK_SSN      0x01   /* ddd-dd-dddd */
#define VC_MASK_ACCOUNT  0x02   /* runs of 9+ digits: account, card and
                                   routing numbers */
#define VC_MASK_DOB      0x04   /* values of date-of-birth-named members */
#define VC_MASK_ALL      0x07

/*
 * Masks as vc_mask() does, but only the kinds given (other bits are
 * ignored): vc_mask(p, len) is vc_mask_kinds(p, len, VC_MASK_ALL).  An
 * SSN left unmasked is not an account number either: its groups are too
 * short.  Returns the number of bytes changed.
 */
size_t vc_mask_kinds(unsigned char *p, size_t len, unsigned kinds);

/*
 * 1 when a member's name reads as a date of birth: dob, date_of_birth,
 * birth_date, dateOfBirth, birthDate, birthdate (any case, '_' and '-'
 * ignored), as vc_mask() decides which values to mask; else 0.
 */
int vc_mask_dob_name(const unsigned char *name, size_t len);


#endif /* VC_MASK_H */
