/* Declarative validation of JSON objects at the edge (REST bodies and
 * WebSocket messages), following the same rules as the JSON Schemas in
 * schemas/: unknown members are refused (additionalProperties: false),
 * every number has a range, every string a length. The first violation is
 * reported with its path ("pickup.lat") and the JSON Schema keyword that
 * failed ("maximum"), so clients and tests can match verdicts exactly. */
#ifndef RH_NET_JSONV_H
#define RH_NET_JSONV_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum jv_type {
	JV_STRING,
	JV_NUMBER,   /* finite; [min, max] */
	JV_INTEGER,  /* a number with no fraction, |v| <= 2^53; [min, max] */
	JV_BOOL,
	JV_OBJECT,   /* validated against `fields` */
	JV_UUID,     /* canonical 8-4-4-4-12 hex */
	JV_DATETIME, /* RFC 3339 date-time */
	JV_EMAIL,    /* a pragmatic check: local@domain.tld, no spaces */
	JV_ANY_OBJECT, /* any object (its own validator runs later) */
};

enum {
	JV_REQUIRED = 1 << 0,
	JV_NULLABLE = 1 << 1, /* null is accepted (and means "absent") */
};

struct jv_field {
	const char *name;
	enum jv_type type;
	unsigned flags;
	double min, max; /* numbers: inclusive range; strings: length in characters (max 0: no limit) */
	const char *const *enum_values; /* JV_STRING: allowed values (NULL-terminated) */
	const struct jv_field *fields;  /* JV_OBJECT: members (terminated by name NULL) */
};

struct jv_error {
	char path[128];   /* "pickup.lat"; "" for the object itself */
	char keyword[32]; /* required, type, minimum, maximum, minLength, maxLength, enum, format,
			     additionalProperties; uniqueMembers for a repeated member (JSON
			     leaves those undefined: we refuse them) */
	char message[192];
};

/* true when obj (an object) satisfies fields; otherwise fills err. */
bool jv_check(const cJSON *obj, const struct jv_field *fields, struct jv_error *err);

/* Member lookup helpers for validated objects. */
const char *jv_str(const cJSON *obj, const char *name);      /* NULL if absent/null */
double jv_num(const cJSON *obj, const char *name, double def);
bool jv_has(const cJSON *obj, const char *name);              /* present and not null */

/* The same rules without a tree, for the messages that come by the hundred
 * thousand a second (driver.location.updated): jv_scan reads one JSON
 * object from text and returns its values, one per entry of `fields` in
 * table order, when the text satisfies the table; NULL when it does not, or
 * when it is anything the scan does not read itself (escapes or bytes past
 * ASCII in strings, null, arrays, exponents, numbers whose double is not
 * exact by one division, repeated or unknown members, a rule failed). NULL
 * means "ask the tree walk" (cJSON + jv_check), which then accepts or words
 * the refusal: the scan never refuses on its own, so the two agree.
 * A JV_ANY_OBJECT member is only delimited (str/len: its raw text), not
 * parsed: the caller scans it with its own table before relying on it;
 * unless any_fields (set after jv_scan_init) names its table from the
 * members scanned before it (the envelope's event_type), then it is scanned
 * in the same pass and sub holds its values. */
struct jv_value {
	bool present;
	const char *str;  /* strings: NUL-terminated copy in the scan; JV_ANY_OBJECT: raw text */
	size_t len;       /* bytes of str */
	double num;       /* JV_NUMBER, JV_INTEGER; JV_BOOL: 0 or 1 */
	int64_t ms;       /* JV_DATETIME: wall ms */
	const struct jv_value *sub; /* JV_OBJECT (and JV_ANY_OBJECT, see any_fields): values of its fields */
};

struct jv_scan {
	struct jv_value v[32];
	unsigned nv;
	char text[1024];
	size_t ntext;
	/* The table of a JV_ANY_OBJECT member of the outermost object, given
	 * that object's values so far (members not seen yet are not present),
	 * or NULL to delimit it. */
	const struct jv_field *(*any_fields)(void *arg, const struct jv_value *so_far);
	void *any_arg;
	int depth;
};

void jv_scan_init(struct jv_scan *sc);
/* Values live in sc; several objects (an envelope, then its payload) may be
 * scanned into one sc after one jv_scan_init. */
const struct jv_value *jv_scan(struct jv_scan *sc, const char *text, size_t len, const struct jv_field *fields);

bool jv_is_uuid(const char *s);

#endif
