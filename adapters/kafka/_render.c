/* Kafka record values in C: one bound instance → the bytes of its JSON record.
 *
 * The report path's largest cost was making each record's JSON in Python: a walk over
 * the instance's maps for redaction, then orjson calling back into Python for every
 * time, duration and address. This writes the record directly: the envelope around the
 * instance's fields (schema_version, id, template, instance, handler, timestamp,
 * reporter), then the fields in the hub's JSON form (docs/json.md), secret keys redacted
 * at every depth, fields without a value left out.
 *
 * It writes what it knows — text, integers that fit 64 bits, booleans, finite doubles,
 * dicts with text keys, lists, tuples, durations, the record's own time — and asks the
 * ``default`` callable for the text of anything else (addresses, other times, bytes).
 * Anything unusual (a key that is not text, a non-finite double, a huge integer, text
 * that is not UTF-8, a nested instance, ``default`` not giving text, deep nesting) makes
 * it return None, and the caller renders the record in Python, which knows every case.
 * tests/adapters/kafka/test_kafka_render.py holds both paths to the same bytes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <stdint.h>
#include <string.h>

#define MAX_DEPTH 32
#define LOWERED_LIMIT 8192 /* cached key → secret answers, emptied when full */

typedef struct {
    char *data;
    Py_ssize_t len;
    Py_ssize_t cap;
    char small[4096];
} Out;

typedef struct {
    Out out;
    PyObject *secret;  /* frozenset of lower-case secret keys */
    PyObject *lowered; /* dict: key → True/False (is it secret), a cache */
    PyObject *deflt;   /* callable: value → its text */
    PyObject *when;    /* the record's time object, whose text is when_text */
    PyObject *when_text;
    PyObject *redacted; /* the text a secret value is replaced with */
    int redact;         /* 0 while writing the envelope's reporter (never redacted) */
    int depth;
} Ctx;

static PyObject *str_lower; /* "lower" */

/* 1 ok, 0 out of memory (a Python error is set) */
static int out_reserve(Out *o, Py_ssize_t extra) {
    if (o->len + extra <= o->cap)
        return 1;
    Py_ssize_t cap = o->cap * 2;
    while (cap < o->len + extra)
        cap *= 2;
    char *data;
    if (o->data == o->small) {
        data = PyMem_Malloc(cap);
        if (data != NULL)
            memcpy(data, o->small, o->len);
    } else {
        data = PyMem_Realloc(o->data, cap);
    }
    if (data == NULL) {
        PyErr_NoMemory();
        return 0;
    }
    o->data = data;
    o->cap = cap;
    return 1;
}

static inline int out_write(Out *o, const char *s, Py_ssize_t n) {
    if (!out_reserve(o, n))
        return 0;
    memcpy(o->data + o->len, s, n);
    o->len += n;
    return 1;
}

#define OUT_LIT(o, lit) out_write((o), (lit), (Py_ssize_t)sizeof(lit) - 1)

/* What a byte becomes inside a JSON string: 0 as it is, else the escape's second
 * character ('u' for \u00XX). orjson's choices, so both paths write the same bytes. */
static char escape_of[256];

static void init_escapes(void) {
    for (int c = 0; c < 0x20; c++)
        escape_of[c] = 'u';
    escape_of['\b'] = 'b';
    escape_of['\t'] = 't';
    escape_of['\n'] = 'n';
    escape_of['\f'] = 'f';
    escape_of['\r'] = 'r';
    escape_of['"'] = '"';
    escape_of['\\'] = '\\';
}

/* 1 ok, 0 not UTF-8 text (error cleared: fall back), -1 error */
static int write_text(Out *o, PyObject *text) {
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(text, &n);
    if (s == NULL) {
        PyErr_Clear(); /* lone surrogates: the Python path reports them */
        return 0;
    }
    /* worst case every byte becomes \u00XX */
    if (!out_reserve(o, n * 6 + 2))
        return -1;
    char *w = o->data + o->len;
    *w++ = '"';
    const char *run = s;
    for (Py_ssize_t i = 0; i < n; i++) {
        char e = escape_of[(unsigned char)s[i]];
        if (!e)
            continue;
        memcpy(w, run, (s + i) - run);
        w += (s + i) - run;
        run = s + i + 1;
        *w++ = '\\';
        *w++ = e;
        if (e == 'u') {
            static const char hex[] = "0123456789abcdef";
            unsigned char c = (unsigned char)s[i];
            *w++ = '0';
            *w++ = '0';
            *w++ = hex[c >> 4];
            *w++ = hex[c & 15];
        }
    }
    memcpy(w, run, (s + n) - run);
    w += (s + n) - run;
    *w++ = '"';
    o->len = w - o->data;
    return 1;
}

static int write_int64(Out *o, long long v) {
    char digits[24];
    char *p = digits + sizeof(digits);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    return out_write(o, p, digits + sizeof(digits) - p) ? 1 : -1;
}

/* Python's shortest round-trip text (repr), as the Python path writes doubles too.
 * 0 for a non-finite double (the Python path has its text). */
static int write_double(Out *o, double v) {
    if (!isfinite(v))
        return 0;
    char *text = PyOS_double_to_string(v, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL)
        return -1;
    int ok = out_write(o, text, (Py_ssize_t)strlen(text));
    PyMem_Free(text);
    return ok ? 1 : -1;
}

/* protobuf's JSON text of a Duration, as mixerhub.jsonform.format_duration writes it. */
static int write_duration(Out *o, PyObject *delta) {
    long long days = PyDateTime_DELTA_GET_DAYS(delta);
    long long seconds = PyDateTime_DELTA_GET_SECONDS(delta);
    long long micros = PyDateTime_DELTA_GET_MICROSECONDS(delta);
    if (days > 1000000 || days < -1000000)
        return 0; /* beyond 64-bit microseconds: the Python path */
    const char *sign = "";
    if (days < 0) {
        long long total = -(days * 86400000000LL + seconds * 1000000LL + micros);
        seconds = total / 1000000;
        micros = total % 1000000;
        sign = "-";
    } else {
        seconds += days * 86400;
    }
    char buf[48];
    int n;
    if (micros == 0)
        n = snprintf(buf, sizeof(buf), "\"%s%llds\"", sign, seconds);
    else if (micros % 1000 == 0)
        n = snprintf(buf, sizeof(buf), "\"%s%lld.%03llds\"", sign, seconds, micros / 1000);
    else
        n = snprintf(buf, sizeof(buf), "\"%s%lld.%06llds\"", sign, seconds, micros);
    return out_write(o, buf, n) ? 1 : -1;
}

/* 1 secret, 0 not, -1 error */
static int is_secret(Ctx *c, PyObject *key) {
    PyObject *known = PyDict_GetItemWithError(c->lowered, key);
    if (known != NULL)
        return known == Py_True;
    if (PyErr_Occurred())
        return -1;
    PyObject *lower = PyObject_CallMethodNoArgs(key, str_lower);
    if (lower == NULL)
        return -1;
    int found = PySet_Contains(c->secret, lower);
    Py_DECREF(lower);
    if (found < 0)
        return -1;
    if (PyDict_GET_SIZE(c->lowered) >= LOWERED_LIMIT)
        PyDict_Clear(c->lowered);
    if (PyDict_SetItem(c->lowered, key, found ? Py_True : Py_False) < 0)
        return -1;
    return found;
}

static int write_value(Ctx *c, PyObject *v);

/* A dict as a JSON object, secret keys redacted; drop_none leaves out keys whose value
 * is None (the instance's own fields). 1 ok, 0 fall back, -1 error. */
static int write_map(Ctx *c, PyObject *map, int drop_none) {
    if (!OUT_LIT(&c->out, "{"))
        return -1;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    int first = 1;
    while (PyDict_Next(map, &pos, &key, &value)) {
        if (!PyUnicode_CheckExact(key))
            return 0;
        if (drop_none && value == Py_None)
            continue;
        int secret = c->redact ? is_secret(c, key) : 0;
        if (secret < 0)
            return -1;
        if (!first && !OUT_LIT(&c->out, ","))
            return -1;
        first = 0;
        int rc = write_text(&c->out, key);
        if (rc <= 0)
            return rc;
        if (!OUT_LIT(&c->out, ":"))
            return -1;
        rc = secret ? write_text(&c->out, c->redacted) : write_value(c, value);
        if (rc <= 0)
            return rc;
    }
    return OUT_LIT(&c->out, "}") ? 1 : -1;
}

static int write_items(Ctx *c, PyObject **items, Py_ssize_t n) {
    if (!OUT_LIT(&c->out, "["))
        return -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i && !OUT_LIT(&c->out, ","))
            return -1;
        int rc = write_value(c, items[i]);
        if (rc <= 0)
            return rc;
    }
    return OUT_LIT(&c->out, "]") ? 1 : -1;
}

static int write_nested(Ctx *c, PyObject *v) {
    if (++c->depth > MAX_DEPTH)
        return 0;
    int rc;
    if (PyDict_CheckExact(v))
        rc = write_map(c, v, 0);
    else if (PyList_CheckExact(v))
        rc = write_items(c, PySequence_Fast_ITEMS(v), PyList_GET_SIZE(v));
    else
        rc = write_items(c, PySequence_Fast_ITEMS(v), PyTuple_GET_SIZE(v));
    c->depth--;
    return rc;
}

/* 1 ok, 0 fall back, -1 error */
static int write_value(Ctx *c, PyObject *v) {
    if (PyUnicode_CheckExact(v))
        return write_text(&c->out, v);
    if (v == Py_None)
        return OUT_LIT(&c->out, "null") ? 1 : -1;
    if (v == Py_True)
        return OUT_LIT(&c->out, "true") ? 1 : -1;
    if (v == Py_False)
        return OUT_LIT(&c->out, "false") ? 1 : -1;
    if (PyLong_CheckExact(v)) {
        int overflow;
        long long n = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow)
            return 0;
        if (n == -1 && PyErr_Occurred())
            return -1;
        return write_int64(&c->out, n);
    }
    if (PyFloat_CheckExact(v))
        return write_double(&c->out, PyFloat_AS_DOUBLE(v));
    if (PyDict_CheckExact(v) || PyList_CheckExact(v) || PyTuple_CheckExact(v))
        return write_nested(c, v);
    if (v == c->when)
        return write_text(&c->out, c->when_text);
    if (PyDelta_CheckExact(v))
        return write_duration(&c->out, v);
    if (PyDict_Check(v) || PyList_Check(v) || PyTuple_Check(v))
        return 0; /* subclasses, and any other container: the Python path */
    PyObject *text = PyObject_CallOneArg(c->deflt, v);
    if (text == NULL) {
        PyErr_Clear(); /* the Python path raises it again, where it is handled */
        return 0;
    }
    int rc = PyUnicode_CheckExact(text) ? write_text(&c->out, text) : 0;
    Py_DECREF(text);
    return rc;
}

PyDoc_STRVAR(render_doc,
"render(head, id, middle, when, when_text, reporter, fields, secret, lowered, default,\n"
"       redacted) -> bytes | None\n\n"
"head + id + middle + when_text + reporter + fields as one JSON record value:\n"
"head and middle are bytes written as they are; id and when_text are text;\n"
"reporter any value; fields a dict whose None values are left out. Keys of\n"
"fields (at any depth) whose lower-case form is in ``secret`` get ``redacted`` (``lowered``\n"
"caches the answer per key). None when the record needs the Python path.");

static PyObject *render(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "render() takes 11 arguments");
        return NULL;
    }
    PyObject *head = args[0], *id = args[1], *middle = args[2], *reporter = args[5],
             *fields = args[6];
    if (!PyBytes_Check(head) || !PyBytes_Check(middle) || !PyUnicode_CheckExact(id) ||
        !PyUnicode_CheckExact(args[4]) || !PyAnySet_Check(args[7]) ||
        !PyDict_CheckExact(args[8]) || !PyUnicode_CheckExact(args[10])) {
        PyErr_SetString(PyExc_TypeError, "render(): arguments of the wrong type");
        return NULL;
    }
    if (!PyDict_CheckExact(fields))
        Py_RETURN_NONE;
    Ctx c;
    c.out.data = c.out.small;
    c.out.len = 0;
    c.out.cap = sizeof(c.out.small);
    c.when = args[3];
    c.when_text = args[4];
    c.secret = args[7];
    c.lowered = args[8];
    c.deflt = args[9];
    c.redacted = args[10];
    c.redact = 0;
    c.depth = 0;
    int rc = out_write(&c.out, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head)) ? 1 : -1;
    if (rc > 0)
        rc = write_text(&c.out, id);
    if (rc > 0)
        rc = out_write(&c.out, PyBytes_AS_STRING(middle), PyBytes_GET_SIZE(middle)) ? 1 : -1;
    if (rc > 0)
        rc = write_text(&c.out, c.when_text);
    if (rc > 0)
        rc = OUT_LIT(&c.out, ",\"reporter\":") ? write_value(&c, reporter) : -1;
    c.redact = 1;
    if (rc > 0)
        rc = OUT_LIT(&c.out, ",\"fields\":") ? write_map(&c, fields, 1) : -1;
    if (rc > 0)
        rc = OUT_LIT(&c.out, "}") ? 1 : -1;
    PyObject *result = NULL;
    if (rc > 0)
        result = PyBytes_FromStringAndSize(c.out.data, c.out.len);
    else if (rc == 0) {
        result = Py_None;
        Py_INCREF(result);
    }
    if (c.out.data != c.out.small)
        PyMem_Free(c.out.data);
    return result;
}

static PyMethodDef methods[] = {
    {"render", (PyCFunction)(void (*)(void))render, METH_FASTCALL, render_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "mixerhub.adapters.kafka._render",
    "Kafka record values in C (see adapters/kafka/records.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__render(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return NULL;
    str_lower = PyUnicode_InternFromString("lower");
    if (str_lower == NULL)
        return NULL;
    init_escapes();
    return PyModule_Create(&module_def);
}
