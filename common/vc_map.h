/* vc_map.h -- declarative field mappings between vendor records */

#ifndef VC_MAP_H
#define VC_MAP_H

#include <jansson.h>

#include "vc_common.h"


/* a mapping file is read whole; larger ones are refused */
#define VC_MAP_FILE_MAX       (4 * 1024 * 1024)

/*
 * at most this many names in a dotted path (segments in a JSON pointer),
 * transforms, format_in entries
 */
#define VC_MAP_PATH_MAX       16
#define VC_MAP_TRANSFORM_MAX  8
#define VC_MAP_FORMATS_MAX    4

/* a record's value is quoted in an error up to this many bytes */
#define VC_MAP_ECHO_MAX       40


typedef struct vc_map_s  vc_map_t;


/*
 * Parses and validates a mapping (docs/MAPPING.md): a JSON object with
 * "name", "from", "to", "fields" and an optional "description", each entry
 * of "fields" one target member and how to fill it.  Every member is
 * checked here, so that apply meets no surprise: unknown members, options
 * that do not apply to the entry's source or type, bad paths, formats,
 * regions and masks, and two entries writing the same target (or one
 * writing inside the other's) are refused.  file names the mapping in
 * messages; buf need not be NUL-terminated.  Returns the map, or NULL with
 * err set to "<file>: fields[<i>] (<to>): <problem>" (or "<file>: <problem>"
 * for the document itself), i counted from 0.
 */
vc_map_t *vc_map_load(const char *file, const char *buf, size_t len,
    char *err, size_t errlen);

/*
 * Reads path (at most VC_MAP_FILE_MAX bytes) with blocking I/O and loads
 * it as vc_map_load() does, naming it by path.  For tools and tests; nginx
 * reads the file itself and calls vc_map_load().
 */
vc_map_t *vc_map_load_file(const char *path, char *err, size_t errlen);

/* Frees the map; safe on NULL. */
void vc_map_free(vc_map_t *map);

/*
 * Maps one record: in must be a JSON object; *out becomes a new object
 * holding the targets of the map's fields, in their order, sharing nothing
 * with in or the map.  A field whose value is absent (missing, null or "")
 * and that has no default is left out.  Every field is tried, so that err
 * lists all the record's problems, "; "-separated and cut to errlen:
 * "fields[<i>] (<to>): <problem>".  A quoted value is cut to
 * VC_MAP_ECHO_MAX bytes and passed through vc_mask(); the value of a field
 * with a "mask" is never quoted.  Returns VC_OK, or VC_ERROR with *out
 * NULL.  The map is only read: one map may serve several threads.  An
 * edit-mode map edits a deep copy of in, which stays as it was, and *out
 * is the copy (vc_map_apply_doc() edits in place).
 */
int vc_map_apply(const vc_map_t *map, json_t *in, json_t **out, char *err,
    size_t errlen);

/* 1 when the map edits documents in place ("mode": "edit") */
int vc_map_edits(const vc_map_t *map);

/*
 * Applies the map to a whole document, as the module's body transforms
 * do.  In edit mode doc (an object or an array) is changed in place, the
 * entries in order, and *out is doc with a new reference; every entry is
 * tried, and on VC_ERROR doc holds the entries that succeeded (an entry
 * that failed left its target as it was), so that a caller which refuses
 * the document must not send it on.  In project mode an object is mapped
 * as vc_map_apply() does and an array element by element into a new
 * array: an element that is not an object, or fails, fails the whole
 * document, and err names it "[<i>] fields[...]...".  Returns VC_OK, or
 * VC_ERROR with *out NULL and err set; values quoted in err are masked as
 * vc_map_apply() does.  The map is only read.
 */
int vc_map_apply_doc(const vc_map_t *map, json_t *doc, json_t **out,
    char *err, size_t errlen);

/* the members of the file, borrowed from the map */
const char *vc_map_name(const vc_map_t *map);
const char *vc_map_from(const vc_map_t *map);
const char *vc_map_to(const vc_map_t *map);
size_t vc_map_nfields(const vc_map_t *map);
const char *vc_map_field_from(const vc_map_t *map, size_t i);


#endif /* VC_MAP_H */
