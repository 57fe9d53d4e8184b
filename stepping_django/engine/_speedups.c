/* The row encoder of stepping_django/engine/serialize.py and the row hash of data.py, in C
 * (optional: without them the engine runs the same code in pure Python).
 *
 * serialize.py is the reference: `enc`, `identity` and `identity_of_bytes` give byte for byte
 * what its `_enc`, `identity` and `identity_of_bytes` give. Identities are stored in
 * databases, so any difference would corrupt them; tests/engine/test_speedups.py checks this
 * file against msgpack and against the pure Python path. Only the types rows are made of are
 * written here; every other value, and what this file leaves out (ints beyond 64 bits,
 * strings that are not UTF-8, a row class without an encoding plan yet, a row with a field
 * that cannot be stored), goes to the Python functions that serialize.py hands to `init`.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <structmember.h>
#include <stdint.h>
#include <string.h>

#define EXT_DATA 1
#define EXT_PAIR 2
#define EXT_DATE 5
#define EXT_DATETIME 6
#define EXT_UUID 7
#define IDENTITY_BYTES 16
#define EXT_HEAD_MAX 6 /* 0xc9, 4 length bytes, code */
#define MAX_LEN 0xFFFFFFFFLL /* longer strings, sequences and bodies go to Python (which raises) */

#if PY_VERSION_HEX >= 0x030D0000
#define LOOKUP_ATTR PyObject_GetOptionalAttr
#else
#define LOOKUP_ATTR _PyObject_LookupAttr
#endif

/* Set by init(): the engine's classes and the Python encoder this one falls back to. */
static PyObject *DataType, *PairType, *UUIDType, *SerializationError;
static PyObject *enc_py, *enc_data_py;
static PyTypeObject *TimezoneType;
static PyObject *s_st_bytes, *s_st_id, *s_st_enc, *s_left, *s_right, *s_int, *s_isoformat,
    *s_utcoffset;

/* The last `datetime.timezone` seen and its isoformat suffix ("+00:00"): rows share one. */
static PyObject *last_tz;
static char last_suffix[24];
static Py_ssize_t last_suffix_len;

/* -- output buffer --------------------------------------------------------------------- */

typedef struct {
    unsigned char *p;
    Py_ssize_t len, cap;
    unsigned char small[256];
} Buf;

static void buf_init(Buf *b) {
    b->p = b->small;
    b->len = 0;
    b->cap = sizeof b->small;
}

static void buf_free(Buf *b) {
    if (b->p != b->small) PyMem_Free(b->p);
}

static int buf_grow(Buf *b, Py_ssize_t n) {
    Py_ssize_t cap = b->cap;
    while (cap - b->len < n) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    unsigned char *p;
    if (b->p == b->small) {
        p = PyMem_Malloc(cap);
        if (p != NULL) memcpy(p, b->small, b->len);
    } else {
        p = PyMem_Realloc(b->p, cap);
    }
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

/* Room for `n` more bytes: the place to write them (the length already counts them). */
static inline unsigned char *buf_take(Buf *b, Py_ssize_t n) {
    if (b->cap - b->len < n && buf_grow(b, n) < 0) return NULL;
    unsigned char *w = b->p + b->len;
    b->len += n;
    return w;
}

static inline int buf_put(Buf *b, const void *src, Py_ssize_t n) {
    unsigned char *w = buf_take(b, n);
    if (w == NULL) return -1;
    memcpy(w, src, n);
    return 0;
}

static inline void be16(unsigned char *w, uint16_t v) {
    w[0] = (unsigned char)(v >> 8);
    w[1] = (unsigned char)v;
}

static inline void be32(unsigned char *w, uint32_t v) {
    be16(w, (uint16_t)(v >> 16));
    be16(w + 2, (uint16_t)v);
}

static inline void be64(unsigned char *w, uint64_t v) {
    be32(w, (uint32_t)(v >> 32));
    be32(w + 4, (uint32_t)v);
}

/* A one-byte tag, then `v` big-endian in `size` bytes (0, 1, 2, 4 or 8). */
static int put_tagged(Buf *b, unsigned char tag, uint64_t v, int size) {
    unsigned char *w = buf_take(b, 1 + size);
    if (w == NULL) return -1;
    w[0] = tag;
    switch (size) {
    case 0: break;
    case 1: w[1] = (unsigned char)v; break;
    case 2: be16(w + 1, (uint16_t)v); break;
    case 4: be32(w + 1, (uint32_t)v); break;
    default: be64(w + 1, v);
    }
    return 0;
}

/* -- atoms (serialize._enc_int, _enc_float, _enc_str, _enc_bytes, _array_head) -------- */

static int put_int(Buf *b, long long v) {
    if (v >= -32 && v < 128) return put_tagged(b, (unsigned char)v, 0, 0);
    if (v > 0) {
        if (v < 0x100) return put_tagged(b, 0xCC, (uint64_t)v, 1);
        if (v < 0x10000) return put_tagged(b, 0xCD, (uint64_t)v, 2);
        if (v < 0x100000000LL) return put_tagged(b, 0xCE, (uint64_t)v, 4);
        return put_tagged(b, 0xCF, (uint64_t)v, 8);
    }
    if (v >= -0x80) return put_tagged(b, 0xD0, (uint64_t)v, 1);
    if (v >= -0x8000) return put_tagged(b, 0xD1, (uint64_t)v, 2);
    if (v >= -0x80000000LL) return put_tagged(b, 0xD2, (uint64_t)v, 4);
    return put_tagged(b, 0xD3, (uint64_t)v, 8);
}

static int put_py(Buf *b, PyObject *encoded) {
    if (!PyBytes_Check(encoded)) {
        PyErr_Format(PyExc_TypeError, "an encoding must be bytes, not %.100s",
                     Py_TYPE(encoded)->tp_name);
        return -1;
    }
    return buf_put(b, PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded));
}

/* The Python encoder's bytes for `v` (serialize._enc_py). */
static int enc_fallback(Buf *b, PyObject *v) {
    PyObject *r = PyObject_CallOneArg(enc_py, v);
    if (r == NULL) return -1;
    int ok = put_py(b, r);
    Py_DECREF(r);
    return ok;
}

static int enc_int(Buf *b, PyObject *v) {
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow == 0) {
        if (x == -1 && PyErr_Occurred()) return -1;
        return put_int(b, x);
    }
    if (overflow > 0) {
        unsigned long long u = PyLong_AsUnsignedLongLong(v);
        if (!(u == (unsigned long long)-1 && PyErr_Occurred()))
            return put_tagged(b, 0xCF, u, 8);
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
    }
    return enc_fallback(b, v); /* EXT_BIGINT */
}

static int enc_float(Buf *b, PyObject *v) {
    double d = PyFloat_AS_DOUBLE(v) + 0.0; /* -0.0 is 0.0 (see serialize._nz) */
    uint64_t bits;
    memcpy(&bits, &d, 8);
    return put_tagged(b, 0xCB, bits, 8);
}

/* The UTF-8 of `v` in (*s, *n): its own data when ASCII, else a temporary copy left in *tmp
 * (PyUnicode_AsUTF8AndSize would keep one in every stored string). 1 when `v` is not valid
 * UTF-8 (the error cleared: Python raises its own), -1 on error. */
static int utf8_view(PyObject *v, const char **s, Py_ssize_t *n, PyObject **tmp) {
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(v) < 0) return -1;
#endif
    if (PyUnicode_IS_ASCII(v)) {
        *s = PyUnicode_DATA(v);
        *n = PyUnicode_GET_LENGTH(v);
        return 0;
    }
    *tmp = PyUnicode_AsUTF8String(v);
    if (*tmp == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) return -1;
        PyErr_Clear();
        return 1;
    }
    *s = PyBytes_AS_STRING(*tmp);
    *n = PyBytes_GET_SIZE(*tmp);
    return 0;
}

static int enc_str(Buf *b, PyObject *v) {
    const char *s;
    Py_ssize_t n;
    PyObject *tmp = NULL;
    int ok = utf8_view(v, &s, &n, &tmp);
    if (ok == 0) {
        if (n > MAX_LEN) ok = 1;
        else if (n < 32) ok = put_tagged(b, (unsigned char)(0xA0 | n), 0, 0);
        else if (n < 0x100) ok = put_tagged(b, 0xD9, (uint64_t)n, 1);
        else if (n < 0x10000) ok = put_tagged(b, 0xDA, (uint64_t)n, 2);
        else ok = put_tagged(b, 0xDB, (uint64_t)n, 4);
        if (ok == 0) ok = buf_put(b, s, n);
    }
    Py_XDECREF(tmp);
    return ok > 0 ? enc_fallback(b, v) : ok;
}

static int enc_bytes(Buf *b, PyObject *v) {
    Py_ssize_t n = PyBytes_GET_SIZE(v);
    int r;
    if (n < 0x100) r = put_tagged(b, 0xC4, (uint64_t)n, 1);
    else if (n < 0x10000) r = put_tagged(b, 0xC5, (uint64_t)n, 2);
    else if (n <= MAX_LEN) r = put_tagged(b, 0xC6, (uint64_t)n, 4);
    else return enc_fallback(b, v);
    return r < 0 ? -1 : buf_put(b, PyBytes_AS_STRING(v), n);
}

static int put_array_head(Buf *b, Py_ssize_t n) {
    if (n < 16) return put_tagged(b, (unsigned char)(0x90 | n), 0, 0);
    if (n < 0x10000) return put_tagged(b, 0xDC, (uint64_t)n, 2);
    return put_tagged(b, 0xDD, (uint64_t)n, 4);
}

/* -- extensions (serialize._ext) ------------------------------------------------------- */

/* Write the header of an extension whose body is `n` bytes; returns its size (2 to 6). */
static int ext_head(unsigned char *w, int code, Py_ssize_t n) {
    unsigned char fixed = n == 1 ? 0xD4 : n == 2 ? 0xD5 : n == 4 ? 0xD6 : n == 8 ? 0xD7
                        : n == 16 ? 0xD8 : 0;
    if (fixed) {
        w[0] = fixed;
        w[1] = (unsigned char)code;
        return 2;
    }
    if (n < 0x100) {
        w[0] = 0xC7;
        w[1] = (unsigned char)n;
        w[2] = (unsigned char)code;
        return 3;
    }
    if (n < 0x10000) {
        w[0] = 0xC8;
        be16(w + 1, (uint16_t)n);
        w[3] = (unsigned char)code;
        return 4;
    }
    w[0] = 0xC9;
    be32(w + 1, (uint32_t)n);
    w[5] = (unsigned char)code;
    return 6;
}

/* An extension is written as: EXT_HEAD_MAX bytes reserved at `start`, then the body; closing
 * it writes the header and moves the body up against it. 1 when the body is too long. */
static int ext_open(Buf *b, Py_ssize_t *start) {
    *start = b->len;
    return buf_take(b, EXT_HEAD_MAX) == NULL ? -1 : 0;
}

static int ext_close(Buf *b, Py_ssize_t start, int code) {
    Py_ssize_t body = start + EXT_HEAD_MAX, n = b->len - body;
    if (n > MAX_LEN) {
        b->len = start;
        return 1;
    }
    int h = ext_head(b->p + start, code, n);
    memmove(b->p + start + h, b->p + body, n);
    b->len = start + h + n;
    return 0;
}

/* -- values ---------------------------------------------------------------------------- */

static int enc_value(Buf *b, PyObject *v);
static PyObject *enc_data(PyObject *row);

static int enc_tuple(Buf *b, PyObject *v) {
    Py_ssize_t n = PyTuple_GET_SIZE(v);
    if (n > MAX_LEN) return enc_fallback(b, v);
    if (put_array_head(b, n) < 0) return -1;
    if (Py_EnterRecursiveCall(" while encoding a row")) return -1;
    int ok = 0;
    for (Py_ssize_t i = 0; i < n && ok == 0; i++) ok = enc_value(b, PyTuple_GET_ITEM(v, i));
    Py_LeaveRecursiveCall();
    return ok;
}

static int enc_pair(Buf *b, PyObject *v) {
    PyObject *left = PyObject_GetAttr(v, s_left);
    if (left == NULL) return -1;
    PyObject *right = PyObject_GetAttr(v, s_right);
    if (right == NULL) {
        Py_DECREF(left);
        return -1;
    }
    Py_ssize_t start;
    int ok = -1;
    if (Py_EnterRecursiveCall(" while encoding a row")) goto done;
    if (ext_open(b, &start) == 0 && buf_put(b, "\x92", 1) == 0 && enc_value(b, left) == 0
        && enc_value(b, right) == 0) {
        ok = ext_close(b, start, EXT_PAIR);
        if (ok > 0) ok = enc_fallback(b, v);
    }
    Py_LeaveRecursiveCall();
done:
    Py_DECREF(left);
    Py_DECREF(right);
    return ok;
}

static int enc_uuid(Buf *b, PyObject *v) {
    PyObject *i = PyObject_GetAttr(v, s_int);
    if (i == NULL) return -1;
    if (!PyLong_CheckExact(i)) {
        Py_DECREF(i);
        return enc_fallback(b, v);
    }
    unsigned char *w = buf_take(b, 2 + 16);
    if (w == NULL) {
        Py_DECREF(i);
        return -1;
    }
    w[0] = 0xD8;
    w[1] = EXT_UUID;
#if PY_VERSION_HEX >= 0x030D0000
    int r = _PyLong_AsByteArray((PyLongObject *)i, w + 2, 16, 0, 0, 1);
#else
    int r = _PyLong_AsByteArray((PyLongObject *)i, w + 2, 16, 0, 0);
#endif
    Py_DECREF(i);
    if (r < 0) { /* negative or over 128 bits: Python raises its own error */
        if (!PyErr_ExceptionMatches(PyExc_OverflowError)) return -1;
        PyErr_Clear();
        b->len -= 2 + 16;
        return enc_fallback(b, v);
    }
    return 0;
}

static int is_leap(int y) {
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

/* date.toordinal(): days since 0001-01-01, which is day 1. */
static long ordinal(int y, int m, int d) {
    static const int before_month[] = {0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
    long py = y - 1;
    return py * 365 + py / 4 - py / 100 + py / 400 + before_month[m] + (m > 2 && is_leap(y)) + d;
}

static int enc_date(Buf *b, PyObject *v) {
    Py_ssize_t start;
    if (ext_open(b, &start) < 0) return -1;
    long o = ordinal(PyDateTime_GET_YEAR(v), PyDateTime_GET_MONTH(v), PyDateTime_GET_DAY(v));
    if (put_int(b, o) < 0) return -1;
    return ext_close(b, start, EXT_DATE);
}

static char *put_digits(char *w, long v, int width) {
    for (int i = width - 1; i >= 0; i--) {
        w[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return w + width;
}

/* The isoformat() offset of a `datetime.timezone` ("+05:30", "-00:00:01.000001"), as
 * datetime's format_utcoffset writes it; its length, or -1 on error. */
static Py_ssize_t tz_suffix(PyObject *tz, char *out) {
    if (tz == last_tz) {
        memcpy(out, last_suffix, last_suffix_len);
        return last_suffix_len;
    }
    PyObject *offset = PyObject_CallMethodOneArg(tz, s_utcoffset, Py_None);
    if (offset == NULL) return -1;
    if (!PyDelta_CheckExact(offset)) {
        Py_DECREF(offset);
        PyErr_SetString(PyExc_TypeError, "timezone.utcoffset() did not return a timedelta");
        return -1;
    }
    long long us = ((long long)PyDateTime_DELTA_GET_DAYS(offset) * 86400
                    + PyDateTime_DELTA_GET_SECONDS(offset)) * 1000000
                   + PyDateTime_DELTA_GET_MICROSECONDS(offset);
    Py_DECREF(offset);
    char *w = out;
    *w++ = us < 0 ? '-' : '+';
    if (us < 0) us = -us;
    long long secs = us / 1000000;
    w = put_digits(w, (long)(secs / 3600), 2);
    *w++ = ':';
    w = put_digits(w, (long)(secs / 60 % 60), 2);
    if (secs % 60 || us % 1000000) {
        *w++ = ':';
        w = put_digits(w, (long)(secs % 60), 2);
        if (us % 1000000) {
            *w++ = '.';
            w = put_digits(w, (long)(us % 1000000), 6);
        }
    }
    Py_ssize_t n = w - out;
    Py_INCREF(tz);
    Py_XSETREF(last_tz, tz);
    memcpy(last_suffix, out, n);
    last_suffix_len = n;
    return n;
}

/* An extension whose body is known: 1 when it is too long (nothing written). */
static int put_ext(Buf *b, int code, const char *body, Py_ssize_t n) {
    if (n > MAX_LEN) return 1;
    unsigned char head[EXT_HEAD_MAX];
    int h = ext_head(head, code, n);
    unsigned char *w = buf_take(b, h + n);
    if (w == NULL) return -1;
    memcpy(w, head, h);
    memcpy(w + h, body, n);
    return 0;
}

/* A datetime with a tzinfo of its own kind: its utcoffset() may be anything, so isoformat(). */
static int enc_datetime_iso(Buf *b, PyObject *v) {
    PyObject *iso = PyObject_CallMethodNoArgs(v, s_isoformat);
    if (iso == NULL) return -1;
    const char *s;
    Py_ssize_t n;
    PyObject *tmp = NULL;
    int ok = PyUnicode_CheckExact(iso) ? utf8_view(iso, &s, &n, &tmp) : 1;
    if (ok == 0) ok = put_ext(b, EXT_DATETIME, s, n);
    Py_XDECREF(tmp);
    Py_DECREF(iso);
    return ok > 0 ? enc_fallback(b, v) : ok;
}

/* EXT_DATETIME: isoformat() is written here when the datetime is naive or its tzinfo is a
 * `datetime.timezone` (a fixed offset), as datetime's own isoformat() writes it. */
static int enc_datetime(Buf *b, PyObject *v) {
    PyObject *tz = PyDateTime_DATE_GET_TZINFO(v);
    if (tz != Py_None && Py_TYPE(tz) != TimezoneType) return enc_datetime_iso(b, v);
    char s[64], *w = s;
    w = put_digits(w, PyDateTime_GET_YEAR(v), 4);
    *w++ = '-';
    w = put_digits(w, PyDateTime_GET_MONTH(v), 2);
    *w++ = '-';
    w = put_digits(w, PyDateTime_GET_DAY(v), 2);
    *w++ = 'T';
    w = put_digits(w, PyDateTime_DATE_GET_HOUR(v), 2);
    *w++ = ':';
    w = put_digits(w, PyDateTime_DATE_GET_MINUTE(v), 2);
    *w++ = ':';
    w = put_digits(w, PyDateTime_DATE_GET_SECOND(v), 2);
    int us = PyDateTime_DATE_GET_MICROSECOND(v);
    if (us) {
        *w++ = '.';
        w = put_digits(w, us, 6);
    }
    if (tz != Py_None) {
        Py_ssize_t n = tz_suffix(tz, w);
        if (n < 0) return -1;
        w += n;
    }
    return put_ext(b, EXT_DATETIME, s, w - s);
}

/* Python's isinstance(v, Data) without a call: Data has no metaclass of its own. */
static inline int is_data(PyObject *v) {
    return PyType_IsSubtype(Py_TYPE(v), (PyTypeObject *)DataType);
}

static int enc_value(Buf *b, PyObject *v) {
    PyTypeObject *t = Py_TYPE(v);
    if (t == &PyLong_Type) return enc_int(b, v);
    if (t == &PyFloat_Type) return enc_float(b, v);
    if (t == &PyUnicode_Type) return enc_str(b, v);
    if (v == Py_None) return put_tagged(b, 0xC0, 0, 0);
    if (v == Py_True) return put_tagged(b, 0xC3, 0, 0);
    if (v == Py_False) return put_tagged(b, 0xC2, 0, 0);
    if (t == &PyTuple_Type) return enc_tuple(b, v);
    if (t == (PyTypeObject *)UUIDType) return enc_uuid(b, v);
    if (t == PyDateTimeAPI->DateType) return enc_date(b, v);
    if (t == PyDateTimeAPI->DateTimeType) return enc_datetime(b, v);
    if (t == (PyTypeObject *)PairType) return enc_pair(b, v);
    if (t == &PyBytes_Type) return enc_bytes(b, v);
    if (is_data(v)) {
        PyObject *r = enc_data(v);
        if (r == NULL) return -1;
        int ok = put_py(b, r);
        Py_DECREF(r);
        return ok;
    }
    return enc_fallback(b, v);
}

/* -- rows (serialize._enc_data, identity) ---------------------------------------------- */

/* row.__dict__.get(name) without making the row a dict: 1 and a new reference in *out when
 * set, 0 when not. Classes with their own __getattr__ are looked up without calling it. */
static int row_get(PyObject *row, PyObject *name, PyObject **out) {
    if (Py_TYPE(row)->tp_getattro == PyObject_GenericGetAttr) {
        int r = LOOKUP_ATTR(row, name, out);
        if (r > 0 && *out == Py_None) {
            Py_CLEAR(*out);
            return 0;
        }
        return r;
    }
    *out = PyObject_GenericGetAttr(row, name);
    if (*out != NULL && *out != Py_None) return 1;
    Py_CLEAR(*out);
    if (!PyErr_Occurred()) return 0;
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return -1;
    PyErr_Clear();
    return 0;
}

/* The row's fields after the plan's head (its field count and class id), into `b`. */
static int enc_fields(Buf *b, PyObject *row, PyObject *plan) {
    PyObject *head = PyTuple_GET_ITEM(plan, 1);
    int single = PyObject_IsTrue(PyTuple_GET_ITEM(plan, 2));
    if (single < 0) return -1;
    PyObject *values = PyObject_CallOneArg(PyTuple_GET_ITEM(plan, 0), row);
    if (values == NULL) return -1;
    int ok = put_py(b, head);
    if (ok == 0 && single) {
        ok = enc_value(b, values);
    } else if (ok == 0 && PyTuple_CheckExact(values)) {
        Py_ssize_t n = PyTuple_GET_SIZE(values);
        for (Py_ssize_t i = 0; i < n && ok == 0; i++) ok = enc_value(b, PyTuple_GET_ITEM(values, i));
    } else if (ok == 0) {
        ok = 1;
    }
    Py_DECREF(values);
    return ok;
}

/* The row's cached encoding, else EXT_DATA of its fields by the class's `__st_enc__` plan,
 * cached on the row. A class without a plan yet, or a field that cannot be written here or
 * raises SerializationError, sends the whole row to serialize._enc_data (which makes the
 * plan, or names the field in its error). */
static PyObject *enc_data(PyObject *row) {
    PyObject *cached;
    int r = row_get(row, s_st_bytes, &cached);
    if (r != 0) return r > 0 ? cached : NULL;
    PyObject *plan = PyDict_GetItemWithError(Py_TYPE(row)->tp_dict, s_st_enc);
    if (plan == NULL) {
        if (PyErr_Occurred()) return NULL;
        return PyObject_CallOneArg(enc_data_py, row);
    }
    if (!PyTuple_CheckExact(plan) || PyTuple_GET_SIZE(plan) != 3
        || !PyBytes_CheckExact(PyTuple_GET_ITEM(plan, 1)))
        return PyObject_CallOneArg(enc_data_py, row);
    Py_INCREF(plan); /* the getter may run code that replaces it */
    Buf b;
    buf_init(&b);
    PyObject *result = NULL;
    int ok = -1;
    if (buf_take(&b, EXT_HEAD_MAX) != NULL && !Py_EnterRecursiveCall(" while encoding a row")) {
        ok = enc_fields(&b, row, plan);
        Py_LeaveRecursiveCall();
    }
    Py_DECREF(plan);
    if (ok == 0) {
        Py_ssize_t n = b.len - EXT_HEAD_MAX;
        if (n > MAX_LEN) {
            ok = 1;
        } else {
            unsigned char head[EXT_HEAD_MAX];
            int h = ext_head(head, EXT_DATA, n);
            memcpy(b.p + EXT_HEAD_MAX - h, head, h);
            result = PyBytes_FromStringAndSize((char *)b.p + EXT_HEAD_MAX - h, h + n);
        }
    } else if (ok < 0 && PyErr_ExceptionMatches(SerializationError)) {
        PyErr_Clear();
        ok = 1;
    }
    buf_free(&b);
    if (ok > 0) return PyObject_CallOneArg(enc_data_py, row);
    if (result != NULL && PyObject_GenericSetAttr(row, s_st_bytes, result) < 0) Py_CLEAR(result);
    return result;
}

static PyObject *enc(PyObject *module, PyObject *value) {
    if (is_data(value)) return enc_data(value);
    Buf b;
    buf_init(&b);
    PyObject *result = NULL;
    if (enc_value(&b, value) == 0) result = PyBytes_FromStringAndSize((char *)b.p, b.len);
    buf_free(&b);
    return result;
}

/* -- BLAKE2b (RFC 7693), unkeyed, 16-byte digest: hashlib's, without a hash object ------- */

static const uint64_t blake2b_iv[8] = {
    0x6A09E667F3BCC908ULL, 0xBB67AE8584CAA73BULL, 0x3C6EF372FE94F82BULL, 0xA54FF53A5F1D36F1ULL,
    0x510E527FADE682D1ULL, 0x9B05688C2B3E6C1FULL, 0x1F83D9ABFB41BD6BULL, 0x5BE0CD19137E2179ULL,
};

/* RFC 7693's message schedule: round r uses row r mod 10. */
static const uint8_t blake2b_sigma[10][16] = {
    {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
    {14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3},
    {11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4},
    {7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8},
    {9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13},
    {2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9},
    {12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11},
    {13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10},
    {6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5},
    {10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0},
};

static inline uint64_t rotr64(uint64_t x, int n) {
    return (x >> n) | (x << (64 - n));
}

#define G(a, b, c, d, x, y)                                                                   \
    do {                                                                                      \
        v[a] += v[b] + (x);                                                                   \
        v[d] = rotr64(v[d] ^ v[a], 32);                                                       \
        v[c] += v[d];                                                                         \
        v[b] = rotr64(v[b] ^ v[c], 24);                                                       \
        v[a] += v[b] + (y);                                                                   \
        v[d] = rotr64(v[d] ^ v[a], 16);                                                       \
        v[c] += v[d];                                                                         \
        v[b] = rotr64(v[b] ^ v[c], 63);                                                       \
    } while (0)

/* Mix one 128-byte block into `h`; `t` is the byte count so far, `last` marks the final one. */
static void blake2b_compress(uint64_t h[8], const unsigned char block[128], uint64_t t, int last) {
    uint64_t m[16], v[16];
    for (int i = 0; i < 16; i++) {
        uint64_t x = 0;
        for (int j = 7; j >= 0; j--) x = (x << 8) | block[8 * i + j];
        m[i] = x;
    }
    for (int i = 0; i < 8; i++) {
        v[i] = h[i];
        v[i + 8] = blake2b_iv[i];
    }
    v[12] ^= t; /* the counter's high word stays 0 below 2**64 bytes */
    if (last) v[14] = ~v[14];
    for (int r = 0; r < 12; r++) {
        const uint8_t *s = blake2b_sigma[r % 10];
        G(0, 4, 8, 12, m[s[0]], m[s[1]]);
        G(1, 5, 9, 13, m[s[2]], m[s[3]]);
        G(2, 6, 10, 14, m[s[4]], m[s[5]]);
        G(3, 7, 11, 15, m[s[6]], m[s[7]]);
        G(0, 5, 10, 15, m[s[8]], m[s[9]]);
        G(1, 6, 11, 12, m[s[10]], m[s[11]]);
        G(2, 7, 8, 13, m[s[12]], m[s[13]]);
        G(3, 4, 9, 14, m[s[14]], m[s[15]]);
    }
    for (int i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

static void blake2b_16(const unsigned char *data, Py_ssize_t n, unsigned char out[16]) {
    uint64_t h[8];
    memcpy(h, blake2b_iv, sizeof h);
    h[0] ^= 0x01010000 ^ IDENTITY_BYTES; /* depth 1, fanout 1, no key, 16-byte digest */
    uint64_t t = 0;
    for (; n > 128; data += 128, n -= 128) {
        t += 128;
        blake2b_compress(h, data, t, 0);
    }
    unsigned char last[128] = {0};
    memcpy(last, data, n);
    blake2b_compress(h, last, t + (uint64_t)n, 1);
    for (int i = 0; i < IDENTITY_BYTES; i++) out[i] = (unsigned char)(h[i / 8] >> (8 * (i % 8)));
}

#undef G

/* serialize.identity_of_bytes: the encoding when short, else its 16-byte BLAKE2b digest. */
static PyObject *identity_of_bytes(PyObject *encoded) {
    if (!PyBytes_Check(encoded)) {
        PyErr_Format(PyExc_TypeError, "an encoding must be bytes, not %.100s",
                     Py_TYPE(encoded)->tp_name);
        return NULL;
    }
    if (PyBytes_GET_SIZE(encoded) <= IDENTITY_BYTES) {
        Py_INCREF(encoded);
        return encoded;
    }
    unsigned char digest[IDENTITY_BYTES];
    blake2b_16((unsigned char *)PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded), digest);
    return PyBytes_FromStringAndSize((char *)digest, IDENTITY_BYTES);
}

static PyObject *identity(PyObject *module, PyObject *value) {
    if (!is_data(value)) {
        PyObject *encoded = enc(module, value);
        if (encoded == NULL) return NULL;
        PyObject *i = identity_of_bytes(encoded);
        Py_DECREF(encoded);
        return i;
    }
    PyObject *i;
    int r = row_get(value, s_st_id, &i);
    if (r != 0) return r > 0 ? i : NULL;
    PyObject *encoded = enc_data(value);
    if (encoded == NULL) return NULL;
    i = identity_of_bytes(encoded);
    Py_DECREF(encoded);
    if (i != NULL && PyObject_GenericSetAttr(value, s_st_id, i) < 0) Py_CLEAR(i);
    return i;
}

/* -- the row hash ------------------------------------------------------------------------ */

/* Row: the base of data.Data, whose one job is tp_hash. Z-sets are dicts keyed by rows, so a
 * row is hashed at every dict operation; a Python __hash__ costs a frame per hash, and even an
 * attribute lookup of a cached hash walks the class's MRO. The row's __init__ stores its hash
 * here, in the object (`_st_hash` is this slot's descriptor), and rows made without it
 * (decoded, unpickled) ask `hash_fallback` (data.py's `_st_compute_hash`) once. */
static PyObject *hash_fallback;

typedef struct {
    PyObject_HEAD
    Py_hash_t hash;
    char has_hash;
} RowObject;

static PyObject *row_get_hash(PyObject *self, void *closure) {
    RowObject *r = (RowObject *)self;
    if (!r->has_hash) {
        PyErr_SetString(PyExc_AttributeError, "_st_hash");
        return NULL;
    }
    return PyLong_FromSsize_t(r->hash);
}

static int row_set_hash(PyObject *self, PyObject *value, void *closure) {
    RowObject *r = (RowObject *)self;
    if (value == NULL) {
        r->has_hash = 0;
        return 0;
    }
    Py_hash_t h = PyLong_AsSsize_t(value);
    if (h == -1 && PyErr_Occurred()) return -1;
    r->hash = h == -1 ? -2 : h;
    r->has_hash = 1;
    return 0;
}

static Py_hash_t row_hash(PyObject *self) {
    RowObject *r = (RowObject *)self;
    if (r->has_hash) return r->hash;
    if (hash_fallback == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "_speedups.set_hash_fallback() has not been called");
        return -1;
    }
    PyObject *h = PyObject_CallOneArg(hash_fallback, self);
    if (h == NULL) return -1;
    Py_hash_t v = PyLong_AsSsize_t(h);
    Py_DECREF(h);
    if (v == -1 && !PyErr_Occurred()) v = -2;
    return v;
}

static PyGetSetDef row_getset[] = {
    {"_st_hash", row_get_hash, row_set_hash, "The row's hash, once computed.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject RowType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stepping_django.engine._speedups.Row",
    .tp_basicsize = sizeof(RowObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The base of st.Data: the row hash, in C.",
    .tp_hash = row_hash,
    .tp_getset = row_getset,
};

/* Whether `v` can lead to no object that could lead back to a new row: an object the cyclic
 * collector does not track (atoms, rows settled before), a UUID (frozen, holding ints), or a
 * tuple of such values (then untracked too, as the collector would do at its next pass). */
static int is_leaf(PyObject *v, int depth) {
    if (!PyObject_GC_IsTracked(v)) return 1;
    if (Py_IS_TYPE(v, (PyTypeObject *)UUIDType)) return 1;
    if (depth > 8) return 0;
    if (PyTuple_CheckExact(v)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v); i++)
            if (!is_leaf(PyTuple_GET_ITEM(v, i), depth + 1)) return 0;
        PyObject_GC_UnTrack(v);
        return 1;
    }
    return 0;
}

/* settle(row, values): stop the cyclic collector tracking a new row whose field values are
 * all leaves. Such a row cannot be in a reference cycle, and rows are most of what the engine
 * allocates and keeps in its caches: tracked, each costs a visit at every collection. */
static PyObject *settle(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyTuple_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "settle(row, values: tuple)");
        return NULL;
    }
    if (UUIDType == NULL || !PyObject_GC_IsTracked(args[0])) Py_RETURN_NONE;
    PyObject *values = args[1];
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(values); i++)
        if (!is_leaf(PyTuple_GET_ITEM(values, i), 0)) Py_RETURN_NONE;
    PyObject_GC_UnTrack(args[0]);
    Py_RETURN_NONE;
}

/* -- Pair ------------------------------------------------------------------------------ */

/* Pair: data.py's Pair (the reference, used when this module is not built), in C. Joins and
 * group_reduce make one for every row they output, and every Z-set they are in hashes them;
 * this one is made without a Python frame and hashes without one. Same hash (of the tuple
 * (PAIR_SALT, left, right)), equality, ordering, repr, pickling and immutability. */
#define PAIR_SALT 0x9A1E /* data._PAIR_SALT */

typedef struct {
    PyObject_HEAD
    PyObject *left, *right;
    Py_hash_t hash;
    char has_hash;
} PairObject;

static PyTypeObject PairCType;
static PyObject *pair_salt, *frozen_error;

/* -1 with AttributeError when a side of `p` is unset (a pair made by Pair.__new__ alone), as
 * reading the unset slot of the Python Pair raises. */
static int pair_unset(PairObject *p) {
    if (p->left != NULL && p->right != NULL) return 0;
    PyErr_SetString(PyExc_AttributeError, p->left == NULL ? "left" : "right");
    return -1;
}

/* The hash of (PAIR_SALT, left, right), cached; -1 with an error set when it has none. */
static Py_hash_t pair_hash(PyObject *self) {
    PairObject *p = (PairObject *)self;
    if (p->has_hash) return p->hash;
    if (pair_unset(p) < 0) return -1;
    PyObject *values = PyTuple_Pack(3, pair_salt, p->left, p->right);
    if (values == NULL) return -1;
    Py_hash_t h = PyObject_Hash(values);
    if (h != -1) {
        p->hash = h;
        p->has_hash = 1;
        if (UUIDType != NULL && PyObject_GC_IsTracked(self) && is_leaf(p->left, 0)
            && is_leaf(p->right, 0))
            PyObject_GC_UnTrack(self); /* as data.settle does */
    }
    Py_DECREF(values);
    return h;
}

static PyObject *pair_make(PyObject *left, PyObject *right) {
    PairObject *p = PyObject_GC_New(PairObject, &PairCType);
    if (p == NULL) return NULL;
    p->left = Py_NewRef(left);
    p->right = Py_NewRef(right);
    p->has_hash = 0;
    PyObject_GC_Track(p);
    /* Nearly every pair becomes a Z-set key: hash it now, once (an unhashable side leaves it
     * without a hash, and hashing it later raises). */
    if (pair_hash((PyObject *)p) == -1) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) {
            Py_DECREF(p);
            return NULL;
        }
        PyErr_Clear();
    }
    return (PyObject *)p;
}

static PyObject *pair_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf,
                                 PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (kwnames == NULL && nargs == 2) return pair_make(args[0], args[1]);
    PyObject *sides[2] = {nargs > 0 ? args[0] : NULL, nargs > 1 ? args[1] : NULL};
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (nargs > 2) {
        PyErr_Format(PyExc_TypeError, "Pair() takes 2 arguments (%zd given)", nargs + nkw);
        return NULL;
    }
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        int i = PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, "left") == 0 ? 0
              : PyUnicode_Check(key) && PyUnicode_CompareWithASCIIString(key, "right") == 0 ? 1
                                                                                          : -1;
        if (i < 0 || sides[i] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         i < 0 ? "Pair() got an unexpected keyword argument '%S'"
                               : "Pair() got multiple values for argument '%S'",
                         key);
            return NULL;
        }
        sides[i] = args[nargs + j];
    }
    if (sides[0] == NULL || sides[1] == NULL) {
        PyErr_Format(PyExc_TypeError, "Pair() missing required argument '%s'",
                     sides[0] == NULL ? "left" : "right");
        return NULL;
    }
    return pair_make(sides[0], sides[1]);
}

/* Pair.__new__(Pair): an empty pair, as object.__new__ makes one (its sides unset). */
static PyObject *pair_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    PairObject *p = PyObject_GC_New(PairObject, type);
    if (p == NULL) return NULL;
    p->left = p->right = NULL;
    p->has_hash = 0;
    PyObject_GC_Track(p);
    return (PyObject *)p;
}

static int pair_traverse(PyObject *self, visitproc visit, void *arg) {
    Py_VISIT(((PairObject *)self)->left);
    Py_VISIT(((PairObject *)self)->right);
    return 0;
}

static int pair_clear(PyObject *self) {
    Py_CLEAR(((PairObject *)self)->left);
    Py_CLEAR(((PairObject *)self)->right);
    return 0;
}

static void pair_dealloc(PyObject *self) {
    PyObject_GC_UnTrack(self);
    Py_TRASHCAN_BEGIN(self, pair_dealloc)
    pair_clear(self);
    PyObject_GC_Del(self);
    Py_TRASHCAN_END
}

static PyObject *pair_side(PyObject *self, void *closure) {
    PyObject *v = closure == NULL ? ((PairObject *)self)->left : ((PairObject *)self)->right;
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, closure == NULL ? "left" : "right");
        return NULL;
    }
    return Py_NewRef(v);
}

static int pair_setattro(PyObject *self, PyObject *name, PyObject *value) {
    PyObject *r = PyObject_Repr(name);
    if (r != NULL) {
        PyErr_Format(frozen_error, "cannot assign to field %U", r);
        Py_DECREF(r);
    }
    return -1;
}

/* `a and b` of two comparison results, as Python gives it: `a` when it is false. */
static PyObject *both(PyObject *a, PyObject *(*then)(void *), void *arg) {
    if (a == NULL) return NULL;
    int t = PyObject_IsTrue(a);
    if (t <= 0) return t < 0 ? (Py_DECREF(a), NULL) : a;
    Py_DECREF(a);
    return then(arg);
}

typedef struct {
    PyObject *a, *b;
} Sides;

static PyObject *right_eq(void *arg) {
    Sides *s = arg;
    return PyObject_RichCompare(s->a, s->b, Py_EQ);
}

static PyObject *pair_richcompare(PyObject *self, PyObject *other, int op) {
    PairObject *p = (PairObject *)self;
    if (pair_unset(p) < 0) return NULL;
    if (op == Py_EQ || op == Py_NE) {
        if (Py_TYPE(other) != &PairCType) Py_RETURN_NOTIMPLEMENTED;
        PairObject *o = (PairObject *)other;
        if (pair_unset(o) < 0) return NULL;
        Sides rights = {p->right, o->right};
        PyObject *eq = both(PyObject_RichCompare(p->left, o->left, Py_EQ), right_eq, &rights);
        if (eq == NULL || op == Py_EQ) return eq;
        int t = PyObject_IsTrue(eq); /* object.__ne__: not __eq__ */
        Py_DECREF(eq);
        return t < 0 ? NULL : PyBool_FromLong(!t);
    }
    if (op != Py_LT) Py_RETURN_NOTIMPLEMENTED;
    /* (self.left, self.right) < (other.left, other.right), whatever `other` is */
    PyObject *ol = PyObject_GetAttr(other, s_left);
    PyObject *or = ol == NULL ? NULL : PyObject_GetAttr(other, s_right);
    PyObject *mine = or == NULL ? NULL : PyTuple_Pack(2, p->left, p->right);
    PyObject *theirs = mine == NULL ? NULL : PyTuple_Pack(2, ol, or);
    PyObject *r = theirs == NULL ? NULL : PyObject_RichCompare(mine, theirs, Py_LT);
    Py_XDECREF(ol);
    Py_XDECREF(or);
    Py_XDECREF(mine);
    Py_XDECREF(theirs);
    return r;
}

static PyObject *pair_repr(PyObject *self) {
    PairObject *p = (PairObject *)self;
    if (pair_unset(p) < 0) return NULL;
    return PyUnicode_FromFormat("Pair(left=%R, right=%R)", p->left, p->right);
}

static PyObject *pair_reduce(PyObject *self, PyObject *unused) {
    PairObject *p = (PairObject *)self;
    if (pair_unset(p) < 0) return NULL;
    return Py_BuildValue("O(OO)", (PyObject *)Py_TYPE(self), p->left, p->right);
}

static PyGetSetDef pair_getset[] = {
    {"left", pair_side, NULL, "The left row.", NULL},
    {"right", pair_side, NULL, "The right row.", (void *)1},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef pair_methods[] = {
    {"__reduce__", pair_reduce, METH_NOARGS, "Pickled as Pair(left, right)."},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, "Pair[L, R]: a typing alias."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject PairCType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stepping_django.engine.data.Pair",
    .tp_basicsize = sizeof(PairObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Two rows side by side: what join and group produce.",
    .tp_new = pair_new,
    .tp_vectorcall = pair_vectorcall,
    .tp_traverse = pair_traverse,
    .tp_clear = pair_clear,
    .tp_dealloc = pair_dealloc,
    .tp_hash = pair_hash,
    .tp_richcompare = pair_richcompare,
    .tp_repr = pair_repr,
    .tp_setattro = pair_setattro,
    .tp_getset = pair_getset,
    .tp_methods = pair_methods,
};

static PyObject *set_hash_fallback(PyObject *module, PyObject *fn) {
    Py_XSETREF(hash_fallback, Py_NewRef(fn));
    Py_RETURN_NONE;
}

/* -- the row __init__ ------------------------------------------------------------------- */

/* RowInit: data._install_init's generated __init__, in C, for the classes it can serve (no
 * own __post_init__, coercions int -> float or Decimal only). A row class is called for every
 * row a user function builds; the generated Python __init__ spends most of its time calling
 * object.__setattr__ once per field. This one takes the same keyword-only arguments, sets the
 * same attributes in the same order, caches the same hash and settles the row the same way;
 * the Python function stays as `__wrapped__` (the reference, and what inspect reads). It is
 * a method descriptor, so a class call reaches it with the new row and no bound method. */
#define COERCE_NONE 0
#define COERCE_FLOAT 1
#define COERCE_DECIMAL 2

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *wrapped;  /* the generated Python __init__ */
    PyObject *names;    /* tuple of interned field names */
    PyObject *defaults; /* tuple: a field's default, or `required` */
    PyObject *required; /* the marker of a field without default */
    PyObject *kinds;    /* bytes: COERCE_* per field */
    PyObject *cid;      /* the class id, first in the hashed values */
    PyObject *decimal;  /* decimal.Decimal */
} RowInitObject;

static PyTypeObject RowInitType;

static Py_ssize_t field_index(PyObject *names, PyObject *key) {
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < n; i++)
        if (PyTuple_GET_ITEM(names, i) == key) return i;
    for (Py_ssize_t i = 0; i < n; i++) {
        int eq = PyUnicode_Compare(PyTuple_GET_ITEM(names, i), key);
        if (eq == 0) return i;
        if (eq == -1 && PyErr_Occurred()) return -2;
    }
    return -1;
}

static PyObject *init_name(RowInitObject *ri) {
    return PyObject_GetAttrString(ri->wrapped, "__qualname__");
}

/* A TypeError worded as Python words it for a function (qualname first): `format` with `arg`,
 * or with no format, Python's message for `given` positional and `kwonly` keyword arguments
 * when only self is positional. */
static void raise_call_error(RowInitObject *ri, const char *format, PyObject *arg,
                             Py_ssize_t given, Py_ssize_t kwonly) {
    PyObject *qn = init_name(ri);
    if (qn == NULL) return;
    if (format != NULL) {
        PyErr_Format(PyExc_TypeError, format, qn, arg);
    } else if (kwonly) {
        PyErr_Format(PyExc_TypeError,
                     "%U() takes 1 positional argument but %zd positional argument%s "
                     "(and %zd keyword-only argument%s) were given",
                     qn, given, given != 1 ? "s" : "", kwonly, kwonly != 1 ? "s" : "");
    } else {
        PyErr_Format(PyExc_TypeError, "%U() takes 1 positional argument but %zd were given", qn,
                     given);
    }
    Py_DECREF(qn);
}

/* Python's own message: "f() missing 2 required keyword-only arguments: 'a' and 'b'". */
static void raise_missing(RowInitObject *ri, PyObject **values) {
    PyObject *missing = PyList_New(0), *qn = init_name(ri), *listed = NULL;
    if (missing == NULL || qn == NULL) goto done;
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(ri->names); i++) {
        if (values[i] != NULL) continue;
        PyObject *r = PyObject_Repr(PyTuple_GET_ITEM(ri->names, i));
        int ok = r == NULL ? -1 : PyList_Append(missing, r);
        Py_XDECREF(r);
        if (ok < 0) goto done;
    }
    Py_ssize_t k = PyList_GET_SIZE(missing);
    if (k == 1) {
        listed = Py_NewRef(PyList_GET_ITEM(missing, 0));
    } else {
        PyObject *last = Py_NewRef(PyList_GET_ITEM(missing, k - 1));
        PyObject *head = PyList_GetSlice(missing, 0, k - 1);
        PyObject *sep = PyUnicode_FromString(", ");
        PyObject *joined = head == NULL || sep == NULL ? NULL : PyUnicode_Join(sep, head);
        if (joined != NULL)
            listed = PyUnicode_FromFormat("%U%s and %U", joined, k > 2 ? "," : "", last);
        Py_XDECREF(joined);
        Py_XDECREF(sep);
        Py_XDECREF(head);
        Py_DECREF(last);
    }
    if (listed != NULL)
        PyErr_Format(PyExc_TypeError, "%U() missing %zd required keyword-only argument%s: %U",
                     qn, k, k == 1 ? "" : "s", listed);
done:
    Py_XDECREF(listed);
    Py_XDECREF(missing);
    Py_XDECREF(qn);
}

static PyObject *row_init_call(PyObject *callable, PyObject *const *args, size_t nargsf,
                               PyObject *kwnames) {
    RowInitObject *ri = (RowInitObject *)callable;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs == 0) {
        raise_call_error(ri, "%U() missing 1 required positional argument: 'self'", NULL, 0, 0);
        return NULL;
    }
    PyObject *self = args[0];
    if (!PyObject_TypeCheck(self, &RowType)) {
        PyErr_SetString(PyExc_TypeError, "a row __init__ needs a row");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(ri->names);
    PyObject *stack[32];
    PyObject **values = n <= 32 ? stack : PyMem_Calloc(n, sizeof(PyObject *));
    if (values == NULL) return PyErr_NoMemory();
    if (n <= 32) memset(stack, 0, sizeof stack);
    PyObject *hashed = NULL, *result = NULL;
    /* In Python's order: unknown keywords, then extra positional arguments, then missing. */
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, j);
        Py_ssize_t i = field_index(ri->names, key);
        if (i == -2) goto done;
        if (i == -1) {
            raise_call_error(ri, "%U() got an unexpected keyword argument '%U'", key, 0, 0);
            goto done;
        }
        values[i] = args[nargs + j];
    }
    if (nargs > 1) {
        raise_call_error(ri, NULL, NULL, nargs, nkw);
        goto done;
    }
    int missing = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (values[i] != NULL) continue;
        PyObject *d = PyTuple_GET_ITEM(ri->defaults, i);
        if (d == ri->required) missing = 1;
        else values[i] = d;
    }
    if (missing) {
        raise_missing(ri, values);
        goto done;
    }
    hashed = PyTuple_New(n + 1);
    if (hashed == NULL) goto done;
    PyTuple_SET_ITEM(hashed, 0, Py_NewRef(ri->cid));
    const char *kinds = PyBytes_AS_STRING(ri->kinds);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = values[i];
        if (kinds[i] != COERCE_NONE && PyLong_CheckExact(v)) {
            v = kinds[i] == COERCE_FLOAT ? PyNumber_Float(v) : PyObject_CallOneArg(ri->decimal, v);
            if (v == NULL) goto done;
        } else {
            Py_INCREF(v);
        }
        PyTuple_SET_ITEM(hashed, i + 1, v);
        if (PyObject_GenericSetAttr(self, PyTuple_GET_ITEM(ri->names, i), v) < 0) goto done;
    }
    if (PyObject_GenericSetAttr(self, s_st_bytes, Py_None) < 0
        || PyObject_GenericSetAttr(self, s_st_id, Py_None) < 0)
        goto done;
    Py_hash_t h = PyObject_Hash(hashed);
    if (h == -1) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) goto done;
        PyErr_Clear(); /* an unhashable field: hashing the row raises, as in Python */
    } else {
        RowObject *r = (RowObject *)self;
        r->hash = h;
        r->has_hash = 1;
        PyObject *settle_args[2] = {self, hashed};
        PyObject *s = settle(NULL, settle_args, 2);
        if (s == NULL) goto done;
        Py_DECREF(s);
    }
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(hashed);
    if (values != stack) PyMem_Free(values);
    return result;
}

static PyObject *row_init_get(PyObject *self, PyObject *obj, PyObject *type) {
    if (obj == NULL || obj == Py_None) return Py_NewRef(self);
    return PyMethod_New(self, obj);
}

static void row_init_dealloc(PyObject *self) {
    RowInitObject *ri = (RowInitObject *)self;
    Py_XDECREF(ri->wrapped);
    Py_XDECREF(ri->names);
    Py_XDECREF(ri->defaults);
    Py_XDECREF(ri->required);
    Py_XDECREF(ri->kinds);
    Py_XDECREF(ri->cid);
    Py_XDECREF(ri->decimal);
    Py_TYPE(self)->tp_free(self);
}

static PyObject *row_init_getattro(PyObject *self, PyObject *name) {
    /* __name__, __qualname__, __doc__ and the rest are the wrapped function's. */
    PyObject *r = PyObject_GenericGetAttr(self, name);
    if (r != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) return r;
    PyErr_Clear();
    return PyObject_GetAttr(((RowInitObject *)self)->wrapped, name);
}

static PyMemberDef row_init_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(RowInitObject, wrapped), READONLY,
     "The generated Python __init__ this one does the work of."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject RowInitType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stepping_django.engine._speedups.RowInit",
    .tp_basicsize = sizeof(RowInitObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_METHOD_DESCRIPTOR | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A row class's __init__, in C (data._install_init).",
    .tp_vectorcall_offset = offsetof(RowInitObject, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_descr_get = row_init_get,
    .tp_dealloc = row_init_dealloc,
    .tp_getattro = row_init_getattro,
    .tp_members = row_init_members,
};

/* row_init(wrapped, names, defaults, required, kinds, cid, decimal) -> RowInit. */
static PyObject *row_init(PyObject *module, PyObject *args) {
    PyObject *wrapped, *names, *defaults, *required, *kinds, *cid, *decimal;
    if (!PyArg_ParseTuple(args, "OO!O!OO!OO:row_init", &wrapped, &PyTuple_Type, &names,
                          &PyTuple_Type, &defaults, &required, &PyBytes_Type, &kinds, &cid,
                          &decimal))
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(names);
    if (PyTuple_GET_SIZE(defaults) != n || PyBytes_GET_SIZE(kinds) != n) {
        PyErr_SetString(PyExc_ValueError, "row_init: one default and one kind per field");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyUnicode_CheckExact(PyTuple_GET_ITEM(names, i))) {
            PyErr_SetString(PyExc_TypeError, "row_init: field names must be str");
            return NULL;
        }
        char k = PyBytes_AS_STRING(kinds)[i];
        if (k != COERCE_NONE && k != COERCE_FLOAT && k != COERCE_DECIMAL) {
            PyErr_SetString(PyExc_ValueError, "row_init: unknown coercion");
            return NULL;
        }
    }
    PyObject *interned = PyTuple_New(n);
    if (interned == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = Py_NewRef(PyTuple_GET_ITEM(names, i));
        PyUnicode_InternInPlace(&s);
        PyTuple_SET_ITEM(interned, i, s);
    }
    RowInitObject *ri = PyObject_New(RowInitObject, &RowInitType);
    if (ri == NULL) {
        Py_DECREF(interned);
        return NULL;
    }
    ri->vectorcall = row_init_call;
    ri->wrapped = Py_NewRef(wrapped);
    ri->names = interned;
    ri->defaults = Py_NewRef(defaults);
    ri->required = Py_NewRef(required);
    ri->kinds = Py_NewRef(kinds);
    ri->cid = Py_NewRef(cid);
    ri->decimal = Py_NewRef(decimal);
    return (PyObject *)ri;
}

/* -- module ---------------------------------------------------------------------------- */

static PyObject *init(PyObject *module, PyObject *args) {
    PyObject *data, *pair, *uuid, *error, *enc_fn, *enc_data_fn;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OO:init", &PyType_Type, &data, &PyType_Type, &pair,
                          &PyType_Type, &uuid, &PyType_Type, &error, &enc_fn, &enc_data_fn))
        return NULL;
    Py_XSETREF(DataType, Py_NewRef(data));
    Py_XSETREF(PairType, Py_NewRef(pair));
    Py_XSETREF(UUIDType, Py_NewRef(uuid));
    Py_XSETREF(SerializationError, Py_NewRef(error));
    Py_XSETREF(enc_py, Py_NewRef(enc_fn));
    Py_XSETREF(enc_data_py, Py_NewRef(enc_data_fn));
    Py_RETURN_NONE;
}

/* Every entry point checks this: before init() the module has nothing to fall back to. */
static int ready(void) {
    if (enc_py != NULL) return 1;
    PyErr_SetString(PyExc_RuntimeError, "_speedups.init() has not been called");
    return 0;
}

static PyObject *enc_entry(PyObject *module, PyObject *value) {
    return ready() ? enc(module, value) : NULL;
}

static PyObject *identity_entry(PyObject *module, PyObject *value) {
    return ready() ? identity(module, value) : NULL;
}

static PyObject *identity_of_bytes_entry(PyObject *module, PyObject *encoded) {
    return identity_of_bytes(encoded);
}

/* group_reduce.row_hashes: the two 61-bit marks of a row, from the halves of its identity
 * (of a digest of it when the identity is a short encoding), big-endian, mod 2**61 - 1. */
#define MARK_MODULUS ((1ULL << 61) - 1)

static uint64_t read_be64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | p[i];
    return v;
}

/* The two marks of `row` in (*h1, *h2). */
static int row_marks(PyObject *row, uint64_t *h1, uint64_t *h2) {
    PyObject *i = identity(NULL, row);
    if (i == NULL) return -1;
    unsigned char digest[IDENTITY_BYTES];
    const unsigned char *d = (const unsigned char *)PyBytes_AS_STRING(i);
    if (PyBytes_GET_SIZE(i) < IDENTITY_BYTES) {
        blake2b_16(d, PyBytes_GET_SIZE(i), digest);
        d = digest;
    }
    *h1 = read_be64(d) % MARK_MODULUS;
    *h2 = read_be64(d + 8) % MARK_MODULUS;
    Py_DECREF(i);
    return 0;
}

static PyObject *row_hashes_entry(PyObject *module, PyObject *row) {
    uint64_t h1, h2;
    if (!ready() || row_marks(row, &h1, &h2) < 0) return NULL;
    return Py_BuildValue("(KK)", (unsigned long long)h1, (unsigned long long)h2);
}

/* -- Z-set addition ---------------------------------------------------------------------- */

/* Z-sets are dicts of row -> weight without zeros; these add weights into one, hashing each
 * row once (a Python loop hashes it at the lookup and again at the store). */
#if PY_VERSION_HEX < 0x030D0000
#define GET_KNOWN_HASH(d, k, h) _PyDict_GetItem_KnownHash(d, k, h)
#define SET_KNOWN_HASH(d, k, v, h) _PyDict_SetItem_KnownHash(d, k, v, h)
#define DEL_KNOWN_HASH(d, k, h) _PyDict_DelItem_KnownHash(d, k, h)
#else
#define GET_KNOWN_HASH(d, k, h) PyDict_GetItemWithError(d, k)
#define SET_KNOWN_HASH(d, k, v, h) PyDict_SetItem(d, k, v)
#define DEL_KNOWN_HASH(d, k, h) PyDict_DelItem(d, k)
#endif

static PyObject *zero_int; /* 0, made once */

/* target[row] += c, the entry removed when it reaches 0 (`zset.add_into_py`'s loop body). */
static int add_weight(PyObject *target, PyObject *row, Py_hash_t h, PyObject *c) {
    PyObject *old = GET_KNOWN_HASH(target, row, h);
    if (old == NULL && PyErr_Occurred()) return -1;
    PyObject *n = old == NULL ? PyNumber_Add(zero_int, c) : PyNumber_Add(old, c);
    if (n == NULL) return -1;
    int t = PyObject_IsTrue(n), r = -1;
    if (t > 0) r = SET_KNOWN_HASH(target, row, n, h);
    else if (t == 0) r = old == NULL ? 0 : DEL_KNOWN_HASH(target, row, h);
    Py_DECREF(n);
    return r;
}

/* add_into(target, items): zset.add_into_py, in C. */
static PyObject *add_into(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "add_into(target: dict, items: dict)");
        return NULL;
    }
    PyObject *target = args[0], *items = args[1], *row, *c;
    Py_ssize_t pos = 0;
    while (PyDict_Next(items, &pos, &row, &c)) {
        Py_INCREF(row);
        Py_INCREF(c);
        Py_hash_t h = PyObject_Hash(row);
        int r = h == -1 ? -1 : add_weight(target, row, h, c);
        Py_DECREF(row);
        Py_DECREF(c);
        if (r < 0) return NULL;
    }
    Py_RETURN_NONE;
}

/* file_weights(buckets, f, items): sql._file_py, in C. */
static PyObject *file_weights(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_Check(args[0]) || !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "file_weights(buckets: dict, f, items: dict)");
        return NULL;
    }
    PyObject *buckets = args[0], *f = args[1], *items = args[2], *row, *c;
    Py_ssize_t pos = 0;
    while (PyDict_Next(items, &pos, &row, &c)) {
        Py_INCREF(row);
        Py_INCREF(c);
        int r = -1;
        PyObject *k = PyObject_CallOneArg(f, row), *b = NULL;
        Py_hash_t hk = k == NULL ? -1 : PyObject_Hash(k);
        if (hk != -1 && (b = GET_KNOWN_HASH(buckets, k, hk)) == NULL && !PyErr_Occurred()) {
            PyObject *nb = PyDict_New();
            r = nb == NULL || PyDict_SetItem(nb, row, c) < 0 ? -1
                                                             : SET_KNOWN_HASH(buckets, k, nb, hk);
            Py_XDECREF(nb);
        } else if (b != NULL) {
            Py_INCREF(b);
            Py_hash_t h = PyObject_Hash(row);
            r = h == -1 ? -1 : add_weight(b, row, h, c);
            if (r == 0 && PyDict_GET_SIZE(b) == 0) r = DEL_KNOWN_HASH(buckets, k, hk);
            Py_DECREF(b);
        }
        Py_XDECREF(k);
        Py_DECREF(row);
        Py_DECREF(c);
        if (r < 0) return NULL;
    }
    Py_RETURN_NONE;
}

/* note_keys(keys, buckets, known, pairing, replaced): the loop of sql.SQLState's
 * _note_looked_up over one index's keys (`_note_keys_py`), in C. */
static int note_bucket(PyObject *b, PyObject *known, int pairing, PyObject *replaced) {
    Py_ssize_t pos = 0;
    PyObject *row, *c;
    while (PyDict_Next(b, &pos, &row, &c)) {
        int in = PyDict_Contains(known, row);
        if (in < 0 || (!in && PyDict_SetItem(known, row, zero_int) < 0)) return -1;
    }
    if (!pairing || PyDict_GET_SIZE(b) != 2) return 0;
    PyObject *r[2], *w[2];
    pos = 0;
    for (int i = 0; i < 2; i++) PyDict_Next(b, &pos, &r[i], &w[i]);
    for (int i = 0; i < 2; i++) {
        PyObject *kr = PyDict_GetItemWithError(known, r[i]);
        PyObject *ko = PyDict_GetItemWithError(known, r[1 - i]);
        if (kr == NULL || ko == NULL) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, r[i]);
            return -1;
        }
        PyObject *neg = PyNumber_Negative(w[i]);
        if (neg == NULL) return -1;
        PyObject *eq = PyObject_RichCompare(kr, neg, Py_EQ);
        Py_DECREF(neg);
        if (eq == NULL) return -1;
        int t = PyObject_IsTrue(eq);
        Py_DECREF(eq);
        if (t < 0) return -1;
        if (!t) continue;
        int zero = PyObject_Not(ko);
        if (zero < 0) return -1;
        if (!zero) continue;
        PyObject *entry = PyTuple_Pack(3, r[i], r[1 - i], w[1 - i]);
        int ok = entry == NULL ? -1 : PyList_Append(replaced, entry);
        Py_XDECREF(entry);
        return ok;
    }
    return 0;
}

static PyObject *note_keys(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyDict_Check(args[1]) || !PyDict_Check(args[2])
        || !PyList_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "note_keys(keys, buckets: dict, known: dict, pairing, replaced: list)");
        return NULL;
    }
    PyObject *buckets = args[1], *known = args[2], *replaced = args[4];
    int pairing = PyObject_IsTrue(args[3]);
    if (pairing < 0) return NULL;
    PyObject *it = PyObject_GetIter(args[0]), *k;
    if (it == NULL) return NULL;
    int ok = 0;
    while (ok == 0 && (k = PyIter_Next(it)) != NULL) {
        PyObject *b = PyDict_GetItemWithError(buckets, k);
        if (b != NULL && PyDict_Check(b) && PyDict_GET_SIZE(b)) {
            Py_INCREF(b);
            ok = note_bucket(b, known, pairing, replaced);
            Py_DECREF(b);
        } else if (b == NULL && PyErr_Occurred()) {
            ok = -1;
        }
        Py_DECREF(k);
    }
    Py_DECREF(it);
    if (ok < 0 || PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* -- rows a SQL state knows ------------------------------------------------------------- */

/* KnownRows: stores/known.py's KnownRows (the reference), in C. Every row a SQL state reads
 * or writes passes through it, two or three dict operations each. */
typedef struct {
    PyObject_HEAD
    PyObject *rows;  /* identity -> row */
    PyObject *ids;   /* row -> identity */
    PyObject *loads; /* serialize.loads */
    Py_ssize_t limit;
} KnownRowsObject;

static PyObject *bind_blob(PyObject *bind, PyObject *v);

static int known_keep(KnownRowsObject *k, PyObject *rid, PyObject *row) {
    if (PyDict_GET_SIZE(k->rows) >= k->limit) {
        PyDict_Clear(k->rows);
        PyDict_Clear(k->ids);
    }
    return PyDict_SetItem(k->rows, rid, row) < 0 ? -1 : PyDict_SetItem(k->ids, row, rid);
}

static PyObject *known_keep_entry(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "keep(rid, row)");
        return NULL;
    }
    if (known_keep((KnownRowsObject *)self, args[0], args[1]) < 0) return NULL;
    Py_RETURN_NONE;
}

static PyObject *as_bytes(PyObject *v) {
    return PyBytes_CheckExact(v) ? Py_NewRef(v) : PyBytes_FromObject(v);
}

static PyObject *known_load(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    KnownRowsObject *k = (KnownRowsObject *)self;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "load(row_id, data)");
        return NULL;
    }
    PyObject *rid = as_bytes(args[0]);
    if (rid == NULL) return NULL;
    PyObject *row = PyDict_GetItemWithError(k->rows, rid);
    if (row != NULL) {
        Py_DECREF(rid);
        return Py_NewRef(row);
    }
    PyObject *data = PyErr_Occurred() ? NULL : as_bytes(args[1]);
    row = data == NULL ? NULL : PyObject_CallOneArg(k->loads, data);
    Py_XDECREF(data);
    if (row != NULL && ((is_data(row) && PyObject_GenericSetAttr(row, s_st_id, rid) < 0)
                        || known_keep(k, rid, row) < 0))
        Py_CLEAR(row);
    Py_DECREF(rid);
    return row;
}

static PyObject *known_id(PyObject *self, PyObject *row) {
    KnownRowsObject *k = (KnownRowsObject *)self;
    PyObject *rid = PyDict_GetItemWithError(k->ids, row);
    if (rid != NULL) return Py_NewRef(rid);
    if (PyErr_Occurred() || !ready()) return NULL;
    rid = identity(NULL, row);
    if (rid != NULL && known_keep(k, rid, row) < 0) Py_CLEAR(rid);
    return rid;
}

static PyObject *known_get(PyObject *self, PyObject *rid) {
    PyObject *row = PyDict_GetItemWithError(((KnownRowsObject *)self)->rows, rid);
    if (row == NULL && PyErr_Occurred()) return NULL;
    return Py_NewRef(row == NULL ? Py_None : row);
}

static PyObject *known_id_of(PyObject *self, PyObject *row) {
    PyObject *rid = PyDict_GetItemWithError(((KnownRowsObject *)self)->ids, row);
    if (rid == NULL && PyErr_Occurred()) return NULL;
    return Py_NewRef(rid == NULL ? Py_None : rid);
}

/* (identity, data) of `row` as new references in *rid, *data: KnownRows.id_and_data. */
static int known_id_and_data(KnownRowsObject *k, PyObject *row, PyObject **rid,
                             PyObject **data) {
    *rid = PyDict_GetItemWithError(k->ids, row);
    if (*rid == NULL && PyErr_Occurred()) return -1;
    Py_XINCREF(*rid);
    if (*rid != NULL || is_data(row)) {
        if (*rid == NULL && (*rid = identity(NULL, row)) == NULL) return -1;
        *data = enc(NULL, row);
    } else {
        *data = enc(NULL, row);
        *rid = *data == NULL ? NULL : identity_of_bytes(*data);
    }
    if (*rid == NULL || *data == NULL || known_keep(k, *rid, row) < 0) {
        Py_CLEAR(*rid);
        Py_CLEAR(*data);
        return -1;
    }
    return 0;
}

static PyObject *known_id_and_data_entry(PyObject *self, PyObject *row) {
    PyObject *rid, *data;
    if (!ready() || known_id_and_data((KnownRowsObject *)self, row, &rid, &data) < 0)
        return NULL;
    PyObject *r = PyTuple_Pack(2, rid, data);
    Py_DECREF(rid);
    Py_DECREF(data);
    return r;
}

/* load_by(found, f): KnownRows.load_by. */
static PyObject *known_load_by(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "load_by(found, f)");
        return NULL;
    }
    PyObject *it = PyObject_GetIter(args[0]), *f = args[1], *item;
    if (it == NULL) return NULL;
    PyObject *out = PyDict_New();
    while (out != NULL && (item = PyIter_Next(it)) != NULL) {
        PyObject *parts[3], *row = NULL, *key = NULL, *bucket = NULL;
        int ok = -1;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_ValueError, "load_by: rows are (identity, data, weight)");
        } else {
            for (int i = 0; i < 3; i++) parts[i] = PyTuple_GET_ITEM(item, i);
            row = known_load(self, parts, 2);
            key = row == NULL ? NULL : PyObject_CallOneArg(f, row);
            if (key != NULL) {
                bucket = PyDict_GetItemWithError(out, key);
                if (bucket != NULL) {
                    ok = PyDict_SetItem(bucket, row, parts[2]);
                } else if (!PyErr_Occurred() && (bucket = PyDict_New()) != NULL) {
                    ok = PyDict_SetItem(bucket, row, parts[2]) < 0 ? -1
                                                                   : PyDict_SetItem(out, key, bucket);
                    Py_DECREF(bucket);
                }
            }
        }
        Py_XDECREF(row);
        Py_XDECREF(key);
        Py_DECREF(item);
        if (ok < 0) Py_CLEAR(out);
    }
    Py_DECREF(it);
    if (out != NULL && PyErr_Occurred()) Py_CLEAR(out);
    return out;
}

/* replacements(replaced, bind): KnownRows.replacements. */
static PyObject *known_replacements(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "replacements(replaced, bind)");
        return NULL;
    }
    if (!ready()) return NULL;
    KnownRowsObject *k = (KnownRowsObject *)self;
    PyObject *bind = args[1], *it = PyObject_GetIter(args[0]), *item;
    if (it == NULL) return NULL;
    PyObject *out = PyList_New(0);
    while (out != NULL && (item = PyIter_Next(it)) != NULL) {
        PyObject *rid = NULL, *data = NULL, *oid = NULL, *entry = NULL;
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 3) {
            PyErr_SetString(PyExc_ValueError, "replacements: (old row, new row, weight)");
        } else if (known_id_and_data(k, PyTuple_GET_ITEM(item, 1), &rid, &data) == 0
                   && (oid = known_id(self, PyTuple_GET_ITEM(item, 0))) != NULL) {
            PyObject *c = PyTuple_GET_ITEM(item, 2);
            if (bind == Py_None) {
                entry = PyTuple_Pack(4, rid, data, c, oid);
            } else {
                PyObject *b[3] = {bind_blob(bind, rid), NULL, NULL};
                if (b[0] != NULL && (b[1] = bind_blob(bind, data)) != NULL
                    && (b[2] = bind_blob(bind, oid)) != NULL)
                    entry = PyTuple_Pack(4, b[0], b[1], c, b[2]);
                for (int i = 0; i < 3; i++) Py_XDECREF(b[i]);
            }
        }
        if (entry == NULL || PyList_Append(out, entry) < 0) Py_CLEAR(out);
        Py_XDECREF(entry);
        Py_XDECREF(rid);
        Py_XDECREF(data);
        Py_XDECREF(oid);
        Py_DECREF(item);
    }
    Py_DECREF(it);
    if (out != NULL && PyErr_Occurred()) Py_CLEAR(out);
    return out;
}

static PyObject *known_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *names[] = {"loads", "limit", NULL};
    PyObject *loads;
    Py_ssize_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "On:KnownRows", names, &loads, &limit))
        return NULL;
    KnownRowsObject *k = (KnownRowsObject *)type->tp_alloc(type, 0);
    if (k == NULL) return NULL;
    k->rows = PyDict_New();
    k->ids = PyDict_New();
    k->loads = Py_NewRef(loads);
    k->limit = limit;
    if (k->rows == NULL || k->ids == NULL) {
        Py_DECREF(k);
        return NULL;
    }
    return (PyObject *)k;
}

static int known_traverse(PyObject *self, visitproc visit, void *arg) {
    KnownRowsObject *k = (KnownRowsObject *)self;
    Py_VISIT(k->rows);
    Py_VISIT(k->ids);
    Py_VISIT(k->loads);
    return 0;
}

static int known_clear(PyObject *self) {
    KnownRowsObject *k = (KnownRowsObject *)self;
    Py_CLEAR(k->rows);
    Py_CLEAR(k->ids);
    Py_CLEAR(k->loads);
    return 0;
}

static void known_dealloc(PyObject *self) {
    PyObject_GC_UnTrack(self);
    known_clear(self);
    Py_TYPE(self)->tp_free(self);
}

static PyMethodDef known_methods[] = {
    {"load", (PyCFunction)(void (*)(void))known_load, METH_FASTCALL,
     "load(row_id, data): the row stored as (row_id, data), decoded once."},
    {"id", known_id, METH_O, "id(row): row's identity, encoding it only if no equal row is known."},
    {"keep", (PyCFunction)(void (*)(void))known_keep_entry, METH_FASTCALL,
     "keep(rid, row): remember the row and its identity."},
    {"get", known_get, METH_O, "get(rid): the row of an identity already known, else None."},
    {"id_and_data", known_id_and_data_entry, METH_O,
     "id_and_data(row): its identity and encoding, each made at most once."},
    {"load_by", (PyCFunction)(void (*)(void))known_load_by, METH_FASTCALL,
     "load_by(found, f): stored (identity, data, weight) rows, decoded, by key f(row)."},
    {"replacements", (PyCFunction)(void (*)(void))known_replacements, METH_FASTCALL,
     "replacements(replaced, bind): the parameters of rows updated in place."},
    {"id_of", known_id_of, METH_O,
     "id_of(row): the identity of a row equal to `row` already known, else None."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef known_members[] = {
    {"limit", T_PYSSIZET, offsetof(KnownRowsObject, limit), 0, "Rows kept before emptying."},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject KnownRowsType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "stepping_django.engine._speedups.KnownRows",
    .tp_basicsize = sizeof(KnownRowsObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "KnownRows(loads, limit): stores/known.py's KnownRows, in C.",
    .tp_new = known_new,
    .tp_traverse = known_traverse,
    .tp_clear = known_clear,
    .tp_dealloc = known_dealloc,
    .tp_methods = known_methods,
    .tp_members = known_members,
};

/* -- a row's write parameters ------------------------------------------------------------ */

/* `bind(v)`, straight to a bytearray when `bind` is bytearray (SQLite's blob parameters). */
static PyObject *bind_blob(PyObject *bind, PyObject *v) {
    if (bind == (PyObject *)&PyByteArray_Type && PyBytes_CheckExact(v))
        return PyByteArray_FromStringAndSize(PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
    return PyObject_CallOneArg(bind, v);
}

/* A key value as a write passes it: sql.param_of, for a spec (encode or None, param or None). */
static PyObject *param_of(PyObject *spec, PyObject *v) {
    if (v == Py_None) return Py_NewRef(Py_None);
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != 2) {
        PyErr_SetString(PyExc_TypeError, "a column's spec is (encode, param)");
        return NULL;
    }
    PyObject *encode = PyTuple_GET_ITEM(spec, 0), *param = PyTuple_GET_ITEM(spec, 1);
    PyObject *e = encode == Py_None ? Py_NewRef(v) : PyObject_CallOneArg(encode, v);
    if (e == NULL || param == Py_None) return e;
    PyObject *p = bind_blob(param, e);
    Py_DECREF(e);
    return p;
}

/* write_row(writers, bind, row, row_id, c, data): sql.Table._write_row_py, in C. */
static PyObject *write_row(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 5 || nargs > 6 || !PyTuple_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "write_row(writers: tuple, bind, row, row_id, c, data)");
        return NULL;
    }
    if (!ready()) return NULL;
    PyObject *writers = args[0], *bind = args[1], *row = args[2], *rid = args[3], *c = args[4];
    PyObject *data = nargs == 6 && args[5] != Py_None ? Py_NewRef(args[5]) : enc(module, row);
    if (data == NULL) return NULL;
    PyObject *values = PyList_New(0), *out = NULL;
    if (values == NULL) goto done;
    if (bind == Py_None) {
        if (PyList_Append(values, rid) < 0 || PyList_Append(values, data) < 0) goto done;
    } else {
        for (int i = 0; i < 2; i++) {
            PyObject *b = bind_blob(bind, i == 0 ? rid : data);
            int r = b == NULL ? -1 : PyList_Append(values, b);
            Py_XDECREF(b);
            if (r < 0) goto done;
        }
    }
    for (Py_ssize_t w = 0; w < PyTuple_GET_SIZE(writers); w++) {
        PyObject *writer = PyTuple_GET_ITEM(writers, w), *f, *specs;
        int composite;
        if (!PyArg_ParseTuple(writer, "OpO!:write_row", &f, &composite, &PyTuple_Type, &specs))
            goto done;
        PyObject *key = PyObject_CallOneArg(f, row);
        if (key == NULL) goto done;
        int r = 0;
        if (!composite) {
            PyObject *v = PyTuple_GET_SIZE(specs) ? param_of(PyTuple_GET_ITEM(specs, 0), key)
                                                  : NULL;
            r = v == NULL ? -1 : PyList_Append(values, v);
            Py_XDECREF(v);
        } else {
            PyObject *parts = PySequence_Fast(key, "a composite key must be a sequence");
            if (parts == NULL) r = -1;
            Py_ssize_t n = parts == NULL ? 0 : PySequence_Fast_GET_SIZE(parts);
            if (n > PyTuple_GET_SIZE(specs)) n = PyTuple_GET_SIZE(specs);
            for (Py_ssize_t i = 0; i < n && r == 0; i++) {
                PyObject *v = param_of(PyTuple_GET_ITEM(specs, i), PySequence_Fast_GET_ITEM(parts, i));
                r = v == NULL ? -1 : PyList_Append(values, v);
                Py_XDECREF(v);
            }
            Py_XDECREF(parts);
        }
        Py_DECREF(key);
        if (r < 0) goto done;
    }
    if (PyList_Append(values, c) == 0) out = PyList_AsTuple(values);
done:
    Py_XDECREF(values);
    Py_DECREF(data);
    return out;
}

/* encode_parts(keys, composite, encodes) -> (encoded, with_none): sql._encode_parts_py. */
static PyObject *encode_parts(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyTuple_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "encode_parts(keys, composite, encodes: tuple)");
        return NULL;
    }
    int composite = PyObject_IsTrue(args[1]);
    if (composite < 0) return NULL;
    PyObject *encodes = args[2], *it = PyObject_GetIter(args[0]), *key;
    if (it == NULL) return NULL;
    Py_ssize_t ncols = PyTuple_GET_SIZE(encodes);
    PyObject *encoded = PyList_New(0), *with_none = PyList_New(0);
    int ok = encoded != NULL && with_none != NULL ? 0 : -1;
    while (ok == 0 && (key = PyIter_Next(it)) != NULL) {
        PyObject *parts = composite ? PySequence_Tuple(key) : PyTuple_Pack(1, key);
        if (parts == NULL || PyTuple_GET_SIZE(parts) != ncols) {
            if (parts != NULL)
                PyErr_Format(PyExc_ValueError, "a key of %zd parts for %zd columns",
                             PyTuple_GET_SIZE(parts), ncols);
            ok = -1;
        } else {
            int has_none = 0;
            for (Py_ssize_t i = 0; i < ncols; i++) has_none |= PyTuple_GET_ITEM(parts, i) == Py_None;
            if (has_none) {
                ok = PyList_Append(with_none, key);
            } else {
                PyObject *t = PyTuple_New(ncols);
                for (Py_ssize_t i = 0; t != NULL && i < ncols; i++) {
                    PyObject *e = PyTuple_GET_ITEM(encodes, i), *v = PyTuple_GET_ITEM(parts, i);
                    v = e == Py_None ? Py_NewRef(v) : PyObject_CallOneArg(e, v);
                    if (v == NULL) Py_CLEAR(t);
                    else PyTuple_SET_ITEM(t, i, v);
                }
                ok = t == NULL ? -1 : PyList_Append(encoded, t);
                Py_XDECREF(t);
            }
        }
        Py_XDECREF(parts);
        Py_DECREF(key);
    }
    Py_DECREF(it);
    PyObject *r = ok == 0 && !PyErr_Occurred() ? PyTuple_Pack(2, encoded, with_none) : NULL;
    Py_XDECREF(encoded);
    Py_XDECREF(with_none);
    return r;
}

/* bind_flat(keys, params) -> list: sqlite._key_params' flat parameters, in C. */
static PyObject *bind_flat(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "bind_flat(keys, params: tuple)");
        return NULL;
    }
    PyObject *params = args[1], *it = PyObject_GetIter(args[0]), *key;
    if (it == NULL) return NULL;
    Py_ssize_t ncols = PyTuple_GET_SIZE(params);
    PyObject *out = PyList_New(0);
    while (out != NULL && (key = PyIter_Next(it)) != NULL) {
        PyObject *parts = PySequence_Fast(key, "a key must be a tuple");
        Py_ssize_t n = parts == NULL ? 0 : PySequence_Fast_GET_SIZE(parts);
        if (n > ncols) n = ncols;
        int ok = parts == NULL ? -1 : 0;
        for (Py_ssize_t i = 0; i < n && ok == 0; i++) {
            PyObject *p = PyTuple_GET_ITEM(params, i), *v = PySequence_Fast_GET_ITEM(parts, i);
            v = p == Py_None ? Py_NewRef(v) : bind_blob(p, v);
            ok = v == NULL ? -1 : PyList_Append(out, v);
            Py_XDECREF(v);
        }
        Py_XDECREF(parts);
        Py_DECREF(key);
        if (ok < 0) Py_CLEAR(out);
    }
    Py_DECREF(it);
    if (out != NULL && PyErr_Occurred()) Py_CLEAR(out);
    return out;
}

/* -- a SQL state's flush ------------------------------------------------------------------ */

/* split_pending(pending, known) -> (sure, unsure, gone): sql._split_pending_py. */
static PyObject *split_pending(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "split_pending(pending: dict, known: dict)");
        return NULL;
    }
    PyObject *pending = args[0], *known = args[1], *row, *c;
    PyObject *sure = PyList_New(0), *unsure = PyList_New(0), *gone = PyList_New(0);
    int ok = sure != NULL && unsure != NULL && gone != NULL ? 0 : -1;
    Py_ssize_t pos = 0;
    while (ok == 0 && PyDict_Next(pending, &pos, &row, &c)) {
        Py_INCREF(row);
        Py_INCREF(c);
        PyObject *stored = PyDict_GetItemWithError(known, row);
        if (stored == NULL) {
            ok = PyErr_Occurred() ? -1 : 0;
            if (ok == 0) {
                PyObject *entry = PyTuple_Pack(2, row, c);
                ok = entry == NULL ? -1 : PyList_Append(unsure, entry);
                Py_XDECREF(entry);
            }
        } else {
            Py_INCREF(stored);
            PyObject *sum = PyNumber_Add(stored, c);
            int nonzero = sum == NULL ? -1 : PyObject_IsTrue(sum);
            Py_XDECREF(sum);
            if (nonzero > 0) {
                PyObject *entry = PyTuple_Pack(2, row, c);
                ok = entry == NULL ? -1 : PyList_Append(sure, entry);
                Py_XDECREF(entry);
            } else if (nonzero == 0) {
                int was = PyObject_IsTrue(stored);
                ok = was < 0 ? -1 : was ? PyList_Append(gone, row) : 0;
            } else {
                ok = -1;
            }
            Py_DECREF(stored);
        }
        Py_DECREF(row);
        Py_DECREF(c);
    }
    PyObject *r = ok == 0 ? PyTuple_Pack(3, sure, unsure, gone) : NULL;
    Py_XDECREF(sure);
    Py_XDECREF(unsure);
    Py_XDECREF(gone);
    return r;
}

/* ids_by_delta(changes, id_of) -> (ids, by_delta): sqlite._ids_by_delta_py. */
static PyObject *ids_by_delta(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyList_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "ids_by_delta(changes: list, id_of)");
        return NULL;
    }
    PyObject *changes = args[0], *id_of = args[1];
    PyObject *ids = PyList_New(0), *by_delta = PyDict_New();
    int ok = ids != NULL && by_delta != NULL ? 0 : -1;
    for (Py_ssize_t i = 0; ok == 0 && i < PyList_GET_SIZE(changes); i++) {
        PyObject *entry = PyList_GET_ITEM(changes, i);
        if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
            PyErr_SetString(PyExc_TypeError, "ids_by_delta: changes are (row, weight)");
            ok = -1;
            break;
        }
        Py_INCREF(entry);
        PyObject *c = PyTuple_GET_ITEM(entry, 1);
        PyObject *rid = PyObject_CallOneArg(id_of, PyTuple_GET_ITEM(entry, 0)), *same = NULL;
        if (rid == NULL || PyList_Append(ids, rid) < 0) {
            ok = -1;
        } else if ((same = PyDict_GetItemWithError(by_delta, c)) != NULL) {
            ok = PyList_Append(same, rid);
        } else if (PyErr_Occurred() || (same = PyList_New(0)) == NULL) {
            ok = -1;
        } else {
            ok = PyList_Append(same, rid) < 0 ? -1 : PyDict_SetItem(by_delta, c, same);
            Py_DECREF(same);
        }
        Py_XDECREF(rid);
        Py_DECREF(entry);
    }
    PyObject *r = ok == 0 ? PyTuple_Pack(2, ids, by_delta) : NULL;
    Py_XDECREF(ids);
    Py_XDECREF(by_delta);
    return r;
}

/* rows_left(write_row, ids, changes, gone) -> list: sqlite._rows_left_py. */
static PyObject *rows_left(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 || !PyList_Check(args[1]) || !PyList_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "rows_left(write_row, ids: list, changes: list, gone)");
        return NULL;
    }
    PyObject *write = args[0], *ids = args[1], *changes = args[2], *gone = args[3];
    Py_ssize_t n = PyList_GET_SIZE(ids) < PyList_GET_SIZE(changes) ? PyList_GET_SIZE(ids)
                                                                   : PyList_GET_SIZE(changes);
    PyObject *out = PyList_New(0);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *rid = PyList_GET_ITEM(ids, i), *entry = PyList_GET_ITEM(changes, i);
        Py_INCREF(rid);
        Py_INCREF(entry);
        int taken = PySequence_Contains(gone, rid), ok = taken < 0 ? -1 : 0;
        if (ok == 0 && !taken) {
            if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
                PyErr_SetString(PyExc_TypeError, "rows_left: changes are (row, weight)");
                ok = -1;
            } else {
                PyObject *call[3] = {PyTuple_GET_ITEM(entry, 0), rid, PyTuple_GET_ITEM(entry, 1)};
                PyObject *params = PyObject_Vectorcall(write, call, 3, NULL);
                ok = params == NULL ? -1 : PyList_Append(out, params);
                Py_XDECREF(params);
            }
        }
        Py_DECREF(rid);
        Py_DECREF(entry);
        if (ok < 0) Py_CLEAR(out);
    }
    return out;
}

/* -- join ------------------------------------------------------------------------------ */

/* by_key(f, items) -> dict: join.by_key_py, in C. */
static PyObject *by_key(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "by_key(f, items: dict)");
        return NULL;
    }
    PyObject *f = args[0], *items = args[1], *row, *c;
    PyObject *out = PyDict_New();
    Py_ssize_t pos = 0;
    while (out != NULL && PyDict_Next(items, &pos, &row, &c)) {
        Py_INCREF(row);
        Py_INCREF(c);
        PyObject *k = PyObject_CallOneArg(f, row), *entry = NULL, *rows;
        int ok = -1;
        if (k != NULL && (entry = PyTuple_Pack(2, row, c)) != NULL) {
            if ((rows = PyDict_GetItemWithError(out, k)) != NULL) {
                ok = PyList_Append(rows, entry);
            } else if (!PyErr_Occurred() && (rows = PyList_New(1)) != NULL) {
                PyList_SET_ITEM(rows, 0, Py_NewRef(entry));
                ok = PyDict_SetItem(out, k, rows);
                Py_DECREF(rows);
            }
        }
        Py_XDECREF(k);
        Py_XDECREF(entry);
        Py_DECREF(row);
        Py_DECREF(c);
        if (ok < 0) Py_CLEAR(out);
    }
    return out;
}

/* join_pairs(found, keyed, keyed_left) -> dict: join.join_pairs_py, in C. */
static PyObject *join_pairs(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "join_pairs(found: dict, keyed: dict, keyed_left)");
        return NULL;
    }
    int keyed_left = PyObject_IsTrue(args[2]);
    if (keyed_left < 0 || !ready()) return NULL;
    PyObject *found = args[0], *keyed = args[1], *k, *rows;
    PyObject *out = PyDict_New();
    Py_ssize_t pos = 0;
    while (out != NULL && PyDict_Next(found, &pos, &k, &rows)) {
        PyObject *mine = PyDict_GetItemWithError(keyed, k);
        if (mine == NULL) {
            if (!PyErr_Occurred()) PyErr_SetObject(PyExc_KeyError, k);
            Py_CLEAR(out);
            break;
        }
        Py_INCREF(k);
        Py_INCREF(rows);
        Py_INCREF(mine);
        int ok = PyList_Check(mine) && PyDict_Check(rows) ? 0 : -1;
        if (ok < 0) PyErr_SetString(PyExc_TypeError, "join_pairs: lists of (row, weight), dicts");
        for (Py_ssize_t i = 0; ok == 0 && i < PyList_GET_SIZE(mine); i++) {
            PyObject *entry = PyList_GET_ITEM(mine, i), *row, *c;
            if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 2) {
                PyErr_SetString(PyExc_TypeError, "join_pairs: lists of (row, weight)");
                ok = -1;
                break;
            }
            PyObject *krow = PyTuple_GET_ITEM(entry, 0), *kc = PyTuple_GET_ITEM(entry, 1);
            Py_ssize_t p2 = 0;
            while (ok == 0 && PyDict_Next(rows, &p2, &row, &c)) {
                PyObject *pair = keyed_left ? pair_make(krow, row) : pair_make(row, krow);
                PyObject *w = pair == NULL ? NULL
                              : keyed_left ? PyNumber_Multiply(kc, c)
                                           : PyNumber_Multiply(c, kc);
                ok = w == NULL ? -1 : PyDict_SetItem(out, pair, w);
                Py_XDECREF(pair);
                Py_XDECREF(w);
            }
        }
        Py_DECREF(k);
        Py_DECREF(rows);
        Py_DECREF(mine);
        if (ok < 0) Py_CLEAR(out);
    }
    return out;
}

/* -- group_reduce's step ----------------------------------------------------------------- */

/* `v` mod MARK_MODULUS, in [0, MARK_MODULUS), for any int. */
static int int_mod_p(PyObject *v, uint64_t *out) {
    int overflow;
    long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow == 0) {
        if (x == -1 && PyErr_Occurred()) return -1;
        long long m = x % (long long)MARK_MODULUS;
        *out = (uint64_t)(m < 0 ? m + (long long)MARK_MODULUS : m);
        return 0;
    }
    PyObject *p = PyLong_FromUnsignedLongLong(MARK_MODULUS);
    PyObject *m = p == NULL ? NULL : PyNumber_Remainder(v, p);
    Py_XDECREF(p);
    if (m == NULL) return -1;
    *out = PyLong_AsUnsignedLongLong(m);
    Py_DECREF(m);
    return *out == (uint64_t)-1 && PyErr_Occurred() ? -1 : 0;
}

static inline uint64_t add_mod_p(uint64_t a, uint64_t b) {
    uint64_t s = a + b; /* both < 2**61: no overflow */
    return s >= MARK_MODULUS ? s - MARK_MODULUS : s;
}

static inline uint64_t mul_mod_p(uint64_t a, uint64_t b) {
    return (uint64_t)((unsigned __int128)a * b % MARK_MODULUS);
}

/* Replace item `i` of `list` by the int `m` (a mark). */
static int set_mark(PyObject *list, Py_ssize_t i, uint64_t m) {
    PyObject *v = PyLong_FromUnsignedLongLong(m);
    if (v == NULL) return -1;
    return PyList_SetItem(list, i, v);
}

static uint64_t mark_of(PyObject *list, Py_ssize_t i) {
    return PyLong_AsUnsignedLongLong(PyList_GET_ITEM(list, i));
}

/* group_accumulate(items, by, pick): group_reduce.accumulate_py, in C. */
static PyObject *group_accumulate(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "group_accumulate(items: dict, by, pick)");
        return NULL;
    }
    if (!ready()) return NULL;
    PyObject *items = args[0], *by = args[1], *pick = args[2];
    PyObject *acc = PyDict_New();
    if (acc == NULL) return NULL;
    Py_ssize_t pos = 0;
    PyObject *row, *c;
    while (PyDict_Next(items, &pos, &row, &c)) {
        Py_INCREF(row);
        Py_INCREF(c);
        PyObject *k = NULL, *v = NULL, *dv = NULL;
        uint64_t h1, h2, cm;
        int ok = -1;
        if ((k = PyObject_CallOneArg(by, row)) == NULL || row_marks(row, &h1, &h2) < 0
            || (v = PyObject_CallOneArg(pick, row)) == NULL
            || (dv = PyNumber_Multiply(v, c)) == NULL || int_mod_p(c, &cm) < 0)
            goto next;
        h1 = mul_mod_p(h1, cm);
        h2 = mul_mod_p(h2, cm);
        PyObject *e = PyDict_GetItemWithError(acc, k);
        if (e == NULL) {
            if (PyErr_Occurred()) goto next;
            e = PyList_New(3);
            if (e == NULL) goto next;
            PyList_SET_ITEM(e, 0, Py_NewRef(dv));
            ok = set_mark(e, 1, h1) < 0 || set_mark(e, 2, h2) < 0 ? -1 : PyDict_SetItem(acc, k, e);
            Py_DECREF(e);
            goto next;
        }
        PyObject *sum = PyNumber_Add(PyList_GET_ITEM(e, 0), dv);
        if (sum == NULL || PyList_SetItem(e, 0, sum) < 0) goto next;
        ok = set_mark(e, 1, add_mod_p(mark_of(e, 1), h1)) < 0
                     || set_mark(e, 2, add_mod_p(mark_of(e, 2), h2)) < 0
                 ? -1
                 : 0;
    next:
        Py_XDECREF(k);
        Py_XDECREF(v);
        Py_XDECREF(dv);
        Py_DECREF(row);
        Py_DECREF(c);
        if (ok < 0) {
            Py_DECREF(acc);
            return NULL;
        }
    }
    return acc;
}

/* d[key] = weight (a new reference to key is taken by the dict). */
static int put(PyObject *d, PyObject *key, PyObject *weight) {
    return key == NULL ? -1 : PyDict_SetItem(d, key, weight);
}

/* The output row Pair(value, k). */
static PyObject *pair_of(PyObject *value, PyObject *k) {
    PyObject *args[2] = {value, k};
    return PyObject_Vectorcall(PairType, args, 2, NULL);
}

/* `a != b` as Python's operator gives it (no identity shortcut). */
static int differ(PyObject *a, PyObject *b) {
    PyObject *r = PyObject_RichCompare(a, b, Py_NE);
    if (r == NULL) return -1;
    int t = PyObject_IsTrue(r);
    Py_DECREF(r);
    return t;
}

/* One touched group: its changes into group_change and out (group_reduce.merge_py). */
static int merge_one(PyObject *k, PyObject *e, PyObject *current, PyObject *zero,
                     PyObject *group_change, PyObject *out, PyObject *plus, PyObject *minus) {
    PyObject *dv = PyList_GET_ITEM(e, 0);
    uint64_t dm1 = mark_of(e, 1), dm2 = mark_of(e, 2);
    if (PyErr_Occurred()) return -1;
    PyObject *b = PyDict_GetItemWithError(current, k), *old_row = NULL;
    if (b == NULL && PyErr_Occurred()) return -1;
    if (b != NULL) {
        int truth = PyObject_IsTrue(b);
        if (truth < 0) return -1;
        if (truth) {
            PyObject *it = PyObject_GetIter(b);
            if (it == NULL) return -1;
            old_row = PyIter_Next(it);
            Py_DECREF(it);
            if (old_row == NULL) return PyErr_Occurred() ? -1 : 0;
        }
    }
    PyObject *value = NULL, *new_row = NULL, *m1o = NULL, *m2o = NULL;
    int ok = -1;
    if (old_row != NULL) {
        if (!PyTuple_CheckExact(old_row) || PyTuple_GET_SIZE(old_row) != 4) {
            PyErr_SetString(PyExc_ValueError, "group_reduce: a stored group is not (key, value, "
                                              "mark, mark)");
            goto done;
        }
        PyObject *old_value = PyTuple_GET_ITEM(old_row, 1);
        uint64_t o1, o2;
        if (int_mod_p(PyTuple_GET_ITEM(old_row, 2), &o1) < 0
            || int_mod_p(PyTuple_GET_ITEM(old_row, 3), &o2) < 0)
            goto done;
        uint64_t m1 = add_mod_p(o1, dm1), m2 = add_mod_p(o2, dm2);
        if (m1 || m2) {
            if ((value = PyNumber_Add(old_value, dv)) == NULL) goto done;
            if ((m1o = PyLong_FromUnsignedLongLong(m1)) == NULL
                || (m2o = PyLong_FromUnsignedLongLong(m2)) == NULL
                || (new_row = PyTuple_Pack(4, k, value, m1o, m2o)) == NULL)
                goto done;
            int d = differ(new_row, old_row);
            if (d < 0 || (d && (PyDict_SetItem(group_change, old_row, minus) < 0
                                || PyDict_SetItem(group_change, new_row, plus) < 0)))
                goto done;
            if ((d = differ(value, old_value)) < 0) goto done;
            if (d) {
                PyObject *gone = pair_of(old_value, k), *made = NULL;
                int r = put(out, gone, minus);
                if (r == 0) r = put(out, made = pair_of(value, k), plus);
                Py_XDECREF(gone);
                Py_XDECREF(made);
                if (r < 0) goto done;
            }
        } else {
            PyObject *gone = NULL;
            if (PyDict_SetItem(group_change, old_row, minus) < 0
                || put(out, gone = pair_of(old_value, k), minus) < 0) {
                Py_XDECREF(gone);
                goto done;
            }
            Py_DECREF(gone);
        }
    } else if (dm1 || dm2) {
        PyObject *z = PyObject_CallNoArgs(zero), *made = NULL;
        if (z == NULL) goto done;
        value = PyNumber_Add(z, dv);
        Py_DECREF(z);
        if (value == NULL || (m1o = PyLong_FromUnsignedLongLong(dm1)) == NULL
            || (m2o = PyLong_FromUnsignedLongLong(dm2)) == NULL
            || (new_row = PyTuple_Pack(4, k, value, m1o, m2o)) == NULL
            || PyDict_SetItem(group_change, new_row, plus) < 0
            || put(out, made = pair_of(value, k), plus) < 0) {
            Py_XDECREF(made);
            goto done;
        }
        Py_DECREF(made);
    }
    ok = 0;
done:
    Py_XDECREF(old_row);
    Py_XDECREF(value);
    Py_XDECREF(new_row);
    Py_XDECREF(m1o);
    Py_XDECREF(m2o);
    return ok;
}

/* group_merge(acc, current, zero) -> (group_change, out): group_reduce.merge_py, in C. */
static PyObject *group_merge(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 3 || !PyDict_Check(args[0]) || !PyDict_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "group_merge(acc: dict, current: dict, zero)");
        return NULL;
    }
    if (!ready()) return NULL;
    PyObject *acc = args[0], *current = args[1], *zero = args[2];
    PyObject *group_change = PyDict_New(), *out = PyDict_New();
    PyObject *plus = PyLong_FromLong(1), *minus = PyLong_FromLong(-1);
    int ok = group_change != NULL && out != NULL && plus != NULL && minus != NULL ? 0 : -1;
    Py_ssize_t pos = 0;
    PyObject *k, *e;
    while (ok == 0 && PyDict_Next(acc, &pos, &k, &e)) {
        if (!PyList_CheckExact(e) || PyList_GET_SIZE(e) != 3) {
            PyErr_SetString(PyExc_TypeError, "group_merge: acc values are [value, mark, mark]");
            ok = -1;
            break;
        }
        Py_INCREF(k);
        Py_INCREF(e);
        ok = merge_one(k, e, current, zero, group_change, out, plus, minus);
        Py_DECREF(k);
        Py_DECREF(e);
    }
    Py_XDECREF(plus);
    Py_XDECREF(minus);
    PyObject *r = ok == 0 ? PyTuple_Pack(2, group_change, out) : NULL;
    Py_XDECREF(group_change);
    Py_XDECREF(out);
    return r;
}

static PyMethodDef methods[] = {
    {"add_into", (PyCFunction)(void (*)(void))add_into, METH_FASTCALL,
     "add_into(target, items): zset.add_into_py, in C."},
    {"file_weights", (PyCFunction)(void (*)(void))file_weights, METH_FASTCALL,
     "file_weights(buckets, f, items): sql._file_py, in C."},
    {"note_keys", (PyCFunction)(void (*)(void))note_keys, METH_FASTCALL,
     "note_keys(keys, buckets, known, pairing, replaced): sql._note_keys_py, in C."},
    {"write_row", (PyCFunction)(void (*)(void))write_row, METH_FASTCALL,
     "write_row(writers, bind, row, row_id, c, data=None): sql.Table._write_row_py, in C."},
    {"encode_parts", (PyCFunction)(void (*)(void))encode_parts, METH_FASTCALL,
     "encode_parts(keys, composite, encodes) -> (encoded, with_none): sql._encode_parts_py."},
    {"bind_flat", (PyCFunction)(void (*)(void))bind_flat, METH_FASTCALL,
     "bind_flat(keys, params) -> list: sqlite._key_params_py, in C."},
    {"split_pending", (PyCFunction)(void (*)(void))split_pending, METH_FASTCALL,
     "split_pending(pending, known) -> (sure, unsure, gone): sql._split_pending_py."},
    {"ids_by_delta", (PyCFunction)(void (*)(void))ids_by_delta, METH_FASTCALL,
     "ids_by_delta(changes, id_of) -> (ids, by_delta): sqlite._ids_by_delta_py."},
    {"rows_left", (PyCFunction)(void (*)(void))rows_left, METH_FASTCALL,
     "rows_left(write_row, ids, changes, gone) -> list: sqlite._rows_left_py."},
    {"by_key", (PyCFunction)(void (*)(void))by_key, METH_FASTCALL,
     "by_key(f, items) -> dict: join.by_key_py, in C."},
    {"join_pairs", (PyCFunction)(void (*)(void))join_pairs, METH_FASTCALL,
     "join_pairs(found, keyed, keyed_left) -> dict: join.join_pairs_py, in C."},
    {"group_accumulate", (PyCFunction)(void (*)(void))group_accumulate, METH_FASTCALL,
     "group_accumulate(items, by, pick) -> dict: group_reduce.accumulate_py, in C."},
    {"group_merge", (PyCFunction)(void (*)(void))group_merge, METH_FASTCALL,
     "group_merge(acc, current, zero) -> (group_change, out): group_reduce.merge_py, in C."},
    {"row_hashes", row_hashes_entry, METH_O,
     "row_hashes(row) -> (int, int): group_reduce's marks of a row, in C."},
    {"init", init, METH_VARARGS,
     "init(data, pair, uuid, error, enc, enc_data): the engine's classes and the Python "
     "encoder to fall back to."},
    {"enc", enc_entry, METH_O, "enc(value) -> bytes: serialize._enc, in C."},
    {"identity", identity_entry, METH_O, "identity(value) -> bytes: serialize.identity, in C."},
    {"identity_of_bytes", identity_of_bytes_entry, METH_O,
     "identity_of_bytes(b) -> bytes: serialize.identity_of_bytes, in C."},
    {"settle", (PyCFunction)(void (*)(void))settle, METH_FASTCALL,
     "settle(row, values): untrack a new row whose values cannot lead to a reference cycle."},
    {"row_init", row_init, METH_VARARGS,
     "row_init(wrapped, names, defaults, required, kinds, cid, decimal): a row class's "
     "__init__ in C, doing what the generated Python one `wrapped` does."},
    {"set_hash_fallback", set_hash_fallback, METH_O,
     "set_hash_fallback(fn): how Row hashes a row without a cached `_st_hash`."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "_speedups", "The row encoder of serialize.py, in C.", -1, methods,
};

static PyObject *intern(const char *s) {
    return PyUnicode_InternFromString(s);
}

PyMODINIT_FUNC PyInit__speedups(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) return NULL;
    TimezoneType = Py_TYPE(PyDateTime_TimeZone_UTC);
    if (!(s_st_bytes = intern("_st_bytes")) || !(s_st_id = intern("_st_id"))
        || !(s_st_enc = intern("__st_enc__")) || !(s_left = intern("left"))
        || !(s_right = intern("right")) || !(s_int = intern("int"))
        || !(s_isoformat = intern("isoformat")) || !(s_utcoffset = intern("utcoffset")))
        return NULL;
    /* object's own tp_new, not PyType_GenericNew: it sets up the inline attribute values of
     * instances of Python subclasses (3.11+); without them a row's first attribute makes it a
     * dict of its own, a tracked object the collector walks, for every row. */
    RowType.tp_new = PyBaseObject_Type.tp_new;
    if (PyType_Ready(&RowType) < 0 || PyType_Ready(&RowInitType) < 0
        || PyType_Ready(&KnownRowsType) < 0)
        return NULL;
    if ((zero_int = PyLong_FromLong(0)) == NULL || (pair_salt = PyLong_FromLong(PAIR_SALT)) == NULL)
        return NULL;
    PyObject *dataclasses = PyImport_ImportModule("dataclasses");
    frozen_error = dataclasses == NULL ? NULL
                                       : PyObject_GetAttrString(dataclasses, "FrozenInstanceError");
    Py_XDECREF(dataclasses);
    if (frozen_error == NULL || PyType_Ready(&PairCType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (m == NULL) return NULL;
    if (PyModule_AddObjectRef(m, "Row", (PyObject *)&RowType) < 0
        || PyModule_AddObjectRef(m, "RowInit", (PyObject *)&RowInitType) < 0
        || PyModule_AddObjectRef(m, "KnownRows", (PyObject *)&KnownRowsType) < 0
        || PyModule_AddObjectRef(m, "Pair", (PyObject *)&PairCType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
