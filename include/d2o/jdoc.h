/*
 * d2o_jdoc: a read-only JSON document for the record path.
 *
 * yajl's callback parser builds the tree into one arena that belongs to the document and is
 * reused: each parse resets it, so once the arena has grown to the size of the largest record
 * seen, parsing a record allocates nothing (yajl's own handle, lexer and stacks come from a
 * second reused arena too).
 *
 * Nodes keep what the consumers need and nothing more: numbers keep their text exactly as
 * received; strings are pointer and length, pointing into the parsed input when yajl had
 * nothing to unescape, otherwise into the arena. Strings are not NUL-terminated (use
 * d2o_jdoc_cstr() for a C string). Object members stay in input order and are found by a
 * linear scan.
 *
 * Acceptance is JSON (RFC 8259) with UTF-8 validated, no comments and one value (yajl's
 * defaults, with the two places where yajl takes more closed: white space is only space, tab,
 * CR and LF, and nothing but white space may follow the value), plus two
 * limits: nesting deeper than the document's max_depth, and an object with the same key
 * twice, are refused (D2O_JDOC_E_DEPTH, D2O_JDOC_E_DUPLICATE) with the key or depth named,
 * and so is a string with a \u escape of a lone UTF-16 surrogate (D2O_JDOC_E_UNICODE): it is not
 * Unicode, and yajl would decode it to '?' or to bytes that are not UTF-8.
 * Errors say what yajl reports and the byte offset at which it stopped.
 *
 * A document is not safe to share between threads; ddb2os's workers are processes.
 */
#ifndef D2O_JDOC_H
#define D2O_JDOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct d2o_buf;
struct json_object;

enum d2o_jtype {
    D2O_JNULL = 0,
    D2O_JBOOL,
    D2O_JNUMBER,
    D2O_JSTRING,
    D2O_JARRAY,
    D2O_JOBJECT,
};

struct d2o_jnode {
    enum d2o_jtype type;
    bool boolean;            /* D2O_JBOOL */
    const char *key;         /* the member name when the node is an object's member, else NULL */
    size_t key_len;          /* bytes of key */
    const char *text;        /* D2O_JSTRING: the unescaped bytes; D2O_JNUMBER: the number's text */
    size_t len;              /* bytes of text; for arrays and objects the number of children */
    struct d2o_jnode *first; /* first child of an array or object */
    struct d2o_jnode *next;  /* next sibling in the parent */
};

/* Why d2o_jdoc_parse() refused its input. */
enum d2o_jdoc_error {
    D2O_JDOC_OK = 0,
    D2O_JDOC_E_SYNTAX,    /* not JSON (yajl's message), or empty */
    D2O_JDOC_E_DEPTH,     /* nested deeper than max_depth */
    D2O_JDOC_E_DUPLICATE, /* one object holds a key twice */
    D2O_JDOC_E_UNICODE,   /* a \u escape of half a UTF-16 surrogate pair, alone */
};

struct d2o_jdoc;

/*
 * A document that accepts up to max_depth nested arrays and objects (1: a flat object).
 * NULL if out of memory.
 */
struct d2o_jdoc *d2o_jdoc_new(unsigned max_depth);
/* NULL-safe. */
void d2o_jdoc_free(struct d2o_jdoc *d);
/*
 * With keep, an object may hold a key twice: both members stay, in input order, and lookups
 * find the first. For an envelope of many records, where a record with a key twice must fail
 * alone (its own parse refuses it) rather than the whole answer.
 */
void d2o_jdoc_keep_duplicates(struct d2o_jdoc *d, bool keep);

/*
 * Parses len bytes (need not be NUL-terminated; they must stay unchanged while the nodes are
 * used, since strings may point into them). Forgets the previous tree. Returns 0, -EINVAL with
 * errstr (and d2o_jdoc_error_kind/offset), or -ENOMEM.
 */
__attribute__((warn_unused_result)) int
d2o_jdoc_parse(struct d2o_jdoc *d, const char *data, size_t len, char *errstr, size_t errstr_size);
/* The last parse's root; NULL after a failed parse. */
const struct d2o_jnode *d2o_jdoc_root(const struct d2o_jdoc *d);
enum d2o_jdoc_error d2o_jdoc_error_kind(const struct d2o_jdoc *d);
/*
 * Bytes the document's arenas hold. They keep what the largest recent input needed; a block over
 * 1 MiB is let go when the next input uses less than a quarter of it.
 */
size_t d2o_jdoc_footprint(const struct d2o_jdoc *d);
/* How many times the document has called malloc since d2o_jdoc_new() (for tests and benches). */
size_t d2o_jdoc_mallocs(const struct d2o_jdoc *d);
/* Byte offset in the input at which the last failed parse stopped. */
size_t d2o_jdoc_error_offset(const struct d2o_jdoc *d);

/*
 * Replaces the document's tree with a copy of a json-c tree (for code that holds one, such as a
 * DynamoDB Scan item). JSON null (a NULL json_object) becomes a D2O_JNULL node. Strings are
 * copied into the arena. Returns the root or NULL if out of memory.
 */
const struct d2o_jnode *d2o_jdoc_from_json_c(struct d2o_jdoc *d, struct json_object *o);

/* A new document holding a copy of o (its d2o_jdoc_root()), or NULL if out of memory. */
struct d2o_jdoc *d2o_jdoc_copy_json_c(struct json_object *o);

/* The member named by key_len bytes of key, or NULL; NULL if obj is not an object. */
const struct d2o_jnode *d2o_jnode_getn(const struct d2o_jnode *obj, const char *key,
                                       size_t key_len);
/* The member of obj named key (NUL-terminated). Inline, so that a literal key's length is
 * known when compiling. */
static inline const struct d2o_jnode *d2o_jnode_get(const struct d2o_jnode *obj, const char *key)
{
    return d2o_jnode_getn(obj, key, strlen(key));
}
/* True if a string node holds exactly the NUL-terminated s. */
static inline bool d2o_jnode_str_eq(const struct d2o_jnode *n, const char *s)
{
    size_t k = strlen(s);

    return n && n->type == D2O_JSTRING && n->len == k && memcmp(n->text, s, k) == 0;
}
/* True if a number node's text is an integer (no fraction, no exponent). */
bool d2o_jnode_is_integer(const struct d2o_jnode *n);
/*
 * The value of an integer number node: 0, or -ERANGE with *out clamped to INT64_MIN or
 * INT64_MAX, or -EINVAL if n is not an integer number node.
 */
int d2o_jnode_int64(const struct d2o_jnode *n, int64_t *out);
/* A number node's value as a double (strtod), or 0 for other nodes. */
double d2o_jnode_double(const struct d2o_jnode *n);
/*
 * A NUL-terminated copy of a string node's bytes (or a number's text) in the document's arena,
 * valid until the next parse. A string holding a NUL byte reads up to it. NULL for other
 * nodes or if out of memory.
 */
const char *d2o_jdoc_cstr(struct d2o_jdoc *d, const struct d2o_jnode *n);

/*
 * Appends n as JSON the way json-c writes a tree it parsed (JSON_C_TO_STRING_PLAIN |
 * JSON_C_TO_STRING_NOSLASHESCAPE), so text that json-c used to write stays byte for byte the
 * same: no white space, strings escaped as d2o_buf_json_str() does, integers from their value
 * ("-0" is written "0"), other numbers with their text. 0 or -ENOMEM.
 */
__attribute__((warn_unused_result)) int d2o_jdoc_write(struct d2o_buf *out,
                                                       const struct d2o_jnode *n);

#endif
