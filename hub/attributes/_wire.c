/* Report decoding in C: ReportRequest bytes → one attribute dict per message.
 *
 * The report path's largest cost was protobuf's Python objects (8 map fields per delta-
 * encoded message, each read through a wrapper). This reads the wire format of
 * istio.mixer.v1.ReportRequest / CompressedAttributes directly (the .proto files in hub/api/mixer/v1/)
 * and builds the same dicts as Decoder.decode_all (hub/attributes/compression.py).
 *
 * It only takes the plain road: anything unusual — a truncated or over-long varint, a
 * field number or wire type it does not expect, an index outside the word lists, a map
 * entry without its key or value, one name given twice in a map, text that is not UTF-8,
 * a value its helpers refuse — makes it return None, and the caller decodes with the
 * Python path, which names the problem exactly (or accepts what protobuf accepts).
 * tests/hub/test_wire_fast.py holds both paths to one result.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} Reader;

/* 1 ok, 0 malformed */
static int read_varint(Reader *r, uint64_t *out) {
    uint64_t value = 0;
    for (int shift = 0; shift < 64 && r->p < r->end; shift += 7) {
        uint8_t byte = *r->p++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *out = value;
            return 1;
        }
    }
    return 0;
}

static int read_tag(Reader *r, uint32_t *field, uint32_t *wire_type) {
    uint64_t tag;
    if (!read_varint(r, &tag) || (tag >> 32) != 0)
        return 0;
    *field = (uint32_t)(tag >> 3);
    *wire_type = (uint32_t)(tag & 7);
    return *field != 0;
}

static int read_span(Reader *r, Reader *span) {
    uint64_t size;
    if (!read_varint(r, &size) || size > (uint64_t)(r->end - r->p))
        return 0;
    span->p = r->p;
    span->end = r->p + size;
    r->p += size;
    return 1;
}

/* sint32: zigzag in a varint of at most 32 bits (more would be truncated by protobuf:
 * leave that to the Python path) */
static int read_sint32(Reader *r, int32_t *out) {
    uint64_t raw;
    if (!read_varint(r, &raw) || raw > 0xffffffffULL)
        return 0;
    uint32_t n = (uint32_t)raw;
    *out = (int32_t)((n >> 1) ^ (~(n & 1) + 1));
    return 1;
}

/* ---- word lists ---------------------------------------------------------------------- */

typedef struct {
    const Reader *spans; /* the message's own words (or the request's default words) */
    PyObject **texts;    /* decoded lazily, owned */
    Py_ssize_t count;
} Local;

typedef struct {
    PyObject *glob;
    Py_ssize_t limit;
    Local *local;
} Words;

/* a borrowed str, or NULL (no exception set) when the index is outside both lists */
static PyObject *word(Words *w, int32_t index) {
    if (index >= 0)
        return index < w->limit ? PyTuple_GET_ITEM(w->glob, index) : NULL;
    Py_ssize_t j = -(Py_ssize_t)index - 1;
    return j < w->local->count ? w->local->texts[j] : NULL;
}

static int collect_words(Reader message, uint32_t number, Reader **spans, Py_ssize_t *count) {
    Py_ssize_t n = 0, size = 8;
    Reader *found = PyMem_Malloc(size * sizeof(Reader));
    if (found == NULL)
        return 0;
    uint32_t field, wire_type;
    while (message.p < message.end) {
        Reader span;
        uint64_t skipped;
        if (!read_tag(&message, &field, &wire_type)) {
            PyMem_Free(found);
            return 0;
        }
        if (wire_type == 0) { /* a ReportRequest's word count and semantics */
            if (!read_varint(&message, &skipped)) {
                PyMem_Free(found);
                return 0;
            }
            continue;
        }
        if (wire_type != 2 || !read_span(&message, &span)) {
            PyMem_Free(found);
            return 0;
        }
        if (field != number)
            continue;
        if (n == size) {
            size *= 2;
            Reader *bigger = PyMem_Realloc(found, size * sizeof(Reader));
            if (bigger == NULL) {
                PyMem_Free(found);
                return 0;
            }
            found = bigger;
        }
        found[n++] = span;
    }
    *spans = found;
    *count = n;
    return 1;
}

static void free_local(Local *local) {
    if (local->texts != NULL)
        for (Py_ssize_t i = 0; i < local->count; i++)
            Py_XDECREF(local->texts[i]);
    PyMem_Free(local->texts);
    PyMem_Free((void *)local->spans);
    local->texts = NULL;
    local->spans = NULL;
    local->count = 0;
}

/* The words of field `number` of `message`, every one decoded: protobuf refuses a message
 * with a word that is not UTF-8 even if nothing uses it. 1 ok, 0 fall back. */
static int make_local(Reader message, uint32_t number, Local *local) {
    Reader *spans;
    Py_ssize_t count;
    if (!collect_words(message, number, &spans, &count))
        return 0;
    local->spans = spans;
    local->count = count;
    local->texts = PyMem_Calloc(count ? count : 1, sizeof(PyObject *));
    if (local->texts == NULL) {
        free_local(local);
        return 0;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        local->texts[i] = PyUnicode_DecodeUTF8((const char *)spans[i].p,
                                               spans[i].end - spans[i].p, "strict");
        if (local->texts[i] == NULL) {
            PyErr_Clear();
            free_local(local);
            return 0;
        }
    }
    return 1;
}

/* ---- map entries --------------------------------------------------------------------- */

/* A map entry: key (field 1, sint32 varint) and value (field 2, of wire type `want`);
 * either may be left out, meaning its default (0, empty), as protobuf reads it. */
typedef struct {
    int32_t key;
    uint64_t varint; /* wire types 0 and 1 */
    Reader span;     /* wire type 2 */
} Entry;

static int read_entry(Reader entry, uint32_t want, Entry *out) {
    out->key = 0;
    out->varint = 0;
    out->span.p = out->span.end = entry.end;
    uint32_t field, wire_type;
    while (entry.p < entry.end) {
        if (!read_tag(&entry, &field, &wire_type))
            return 0;
        if (field == 1 && wire_type == 0) {
            if (!read_sint32(&entry, &out->key))
                return 0;
        } else if (field == 2 && wire_type == want) {
            if (want == 0) {
                if (!read_varint(&entry, &out->varint))
                    return 0;
            } else if (want == 1) {
                if (entry.end - entry.p < 8)
                    return 0;
                memcpy(&out->varint, entry.p, 8);
                entry.p += 8;
            } else if (!read_span(&entry, &out->span)) {
                return 0;
            }
        } else {
            return 0;
        }
    }
    return 1;
}

/* google.protobuf.Timestamp / Duration: seconds (int64, 1) and nanos (int32, 2) */
static PyObject *seconds_nanos(Reader message, PyObject *make) {
    int64_t seconds = 0;
    int32_t nanos = 0;
    uint32_t field, wire_type;
    uint64_t raw;
    while (message.p < message.end) {
        if (!read_tag(&message, &field, &wire_type) || wire_type != 0 ||
            !read_varint(&message, &raw))
            return NULL;
        if (field == 1)
            seconds = (int64_t)raw;
        else if (field == 2)
            nanos = (int32_t)(int64_t)raw;
        else
            return NULL;
    }
    return PyObject_CallFunction(make, "LL", (long long)seconds, (long long)nanos);
}

typedef struct {
    PyObject *make_time;
    PyObject *make_duration;
    PyObject *make_bytes; /* (name, raw) → value: addresses for IP attributes */
} Helpers;

/* The value of one entry of map field `number`, a new reference, or NULL */
static PyObject *entry_value(uint32_t number, Entry *entry, PyObject *name, Words *words,
                             Helpers *helpers) {
    switch (number) {
    case 2: { /* strings: sint32 word index */
        if (entry->varint > 0xffffffffULL)
            return NULL;
        uint32_t n = (uint32_t)entry->varint;
        PyObject *text = word(words, (int32_t)((n >> 1) ^ (~(n & 1) + 1)));
        Py_XINCREF(text);
        return text;
    }
    case 3: /* int64s */
        return PyLong_FromLongLong((long long)(int64_t)entry->varint);
    case 4: { /* doubles */
        double value;
        memcpy(&value, &entry->varint, 8);
        return PyFloat_FromDouble(value);
    }
    case 5: /* bools */
        return PyBool_FromLong(entry->varint != 0);
    case 6:
        return seconds_nanos(entry->span, helpers->make_time);
    case 7:
        return seconds_nanos(entry->span, helpers->make_duration);
    case 8: {
        PyObject *raw = PyBytes_FromStringAndSize((const char *)entry->span.p,
                                                  entry->span.end - entry->span.p);
        if (raw == NULL)
            return NULL;
        PyObject *value = PyObject_CallFunctionObjArgs(helpers->make_bytes, name, raw, NULL);
        Py_DECREF(raw);
        return value;
    }
    case 9: { /* string_maps: StringMap { map<sint32, sint32> entries = 1; } */
        PyObject *inner = PyDict_New();
        if (inner == NULL)
            return NULL;
        Reader message = entry->span;
        Py_ssize_t entries = 0;
        uint32_t field, wire_type;
        while (message.p < message.end) {
            Reader span;
            Entry pair;
            if (!read_tag(&message, &field, &wire_type) || field != 1 || wire_type != 2 ||
                !read_span(&message, &span) || !read_entry(span, 0, &pair) ||
                pair.varint > 0xffffffffULL)
                goto bad;
            uint32_t n = (uint32_t)pair.varint;
            PyObject *key = word(words, pair.key);
            PyObject *value = word(words, (int32_t)((n >> 1) ^ (~(n & 1) + 1)));
            if (key == NULL || value == NULL || PyDict_SetItem(inner, key, value) < 0)
                goto bad;
            entries++;
        }
        if (PyDict_GET_SIZE(inner) != entries) /* a key given twice: the Python path */
            goto bad;
        return inner;
    bad:
        Py_DECREF(inner);
        return NULL;
    }
    }
    return NULL;
}

static const uint32_t VALUE_WIRE_TYPE[10] = {0, 0, 0, 0, 1, 0, 2, 2, 2, 2};

/* Decode one CompressedAttributes into `out`; 1 ok, 0 fall back */
static int decode_message(Reader message, Words *words, Helpers *helpers, PyObject *out) {
    /* field by field, as the Python path applies them: strings, int64s, …, string_maps */
    for (uint32_t number = 2; number <= 9; number++) {
        Reader r = message;
        PyObject *names = NULL, *first = NULL; /* the names set, when there are several */
        Py_ssize_t entries = 0;
        uint32_t field, wire_type;
        while (r.p < r.end) {
            Reader span;
            if (!read_tag(&r, &field, &wire_type) || wire_type != 2 || field > 9 ||
                !read_span(&r, &span))
                goto bad;
            if (field != number)
                continue;
            Entry entry;
            if (!read_entry(span, VALUE_WIRE_TYPE[number], &entry))
                goto bad;
            PyObject *name = word(words, entry.key);
            if (name == NULL)
                goto bad;
            PyObject *value = entry_value(number, &entry, name, words, helpers);
            if (value == NULL)
                goto bad;
            int failed = PyDict_SetItem(out, name, value) < 0;
            Py_DECREF(value);
            if (failed)
                goto bad;
            if (entries == 0) {
                first = name;
            } else { /* several entries: no name may come twice (protobuf's order decides) */
                if (names == NULL && ((names = PySet_New(NULL)) == NULL ||
                                      PySet_Add(names, first) < 0))
                    goto bad;
                if (PySet_Add(names, name) < 0)
                    goto bad;
            }
            entries++;
        }
        if (names != NULL && PySet_GET_SIZE(names) != entries)
            goto bad;
        Py_XDECREF(names);
        continue;
    bad:
        Py_XDECREF(names);
        return 0;
    }
    return 1;
}

/* decode_report(raw, dictionary, make_time, make_duration, make_bytes) → list | None */
static PyObject *decode_report(PyObject *module, PyObject *args) {
    (void)module;
    Py_buffer buffer;
    PyObject *glob;
    Helpers helpers;
    if (!PyArg_ParseTuple(args, "y*O!OOO", &buffer, &PyTuple_Type, &glob, &helpers.make_time,
                          &helpers.make_duration, &helpers.make_bytes))
        return NULL;
    Reader request = {buffer.buf, (const uint8_t *)buffer.buf + buffer.len};
    PyObject *result = NULL, *bags = NULL;
    Local defaults = {NULL, NULL, 0};
    uint64_t global_word_count = 0, semantics = 0;

    /* pass 1: the scalar fields, the default words, and that every field is one we know */
    Reader r = request;
    uint32_t field, wire_type;
    while (r.p < r.end) {
        Reader span;
        uint64_t value;
        if (!read_tag(&r, &field, &wire_type))
            goto fallback;
        if ((field == 1 || field == 2) && wire_type == 2) {
            if (!read_span(&r, &span))
                goto fallback;
        } else if ((field == 3 || field == 4) && wire_type == 0) {
            if (!read_varint(&r, &value) || value > 0xffffffffULL)
                goto fallback;
            if (field == 3)
                global_word_count = value;
            else
                semantics = value;
        } else {
            goto fallback;
        }
    }
    if (!make_local(request, 2, &defaults))
        goto fallback;
    Py_ssize_t size = PyTuple_GET_SIZE(glob);
    Py_ssize_t limit = global_word_count && (Py_ssize_t)global_word_count < size
                           ? (Py_ssize_t)global_word_count : size;
    int delta = semantics == 0; /* DELTA_ENCODING */

    bags = PyList_New(0);
    if (bags == NULL)
        goto error;
    PyObject *previous = NULL; /* borrowed from bags */
    r = request;
    while (r.p < r.end) {
        Reader span;
        uint64_t value;
        read_tag(&r, &field, &wire_type);
        if (wire_type == 0) {
            read_varint(&r, &value);
            continue;
        }
        read_span(&r, &span);
        if (field != 1)
            continue;
        Local own = {NULL, NULL, 0};
        if (!make_local(span, 1, &own))
            goto fallback;
        Words words = {glob, limit, own.count ? &own : &defaults};
        PyObject *out = delta && previous != NULL ? PyDict_Copy(previous) : PyDict_New();
        int ok = out != NULL && decode_message(span, &words, &helpers, out);
        free_local(&own);
        if (!ok) {
            Py_XDECREF(out);
            goto fallback;
        }
        if (PyList_Append(bags, out) < 0) {
            Py_DECREF(out);
            goto error;
        }
        Py_DECREF(out);
        previous = out;
    }
    result = bags;
    bags = NULL;
    goto done;

fallback:
    PyErr_Clear();
    result = Py_NewRef(Py_None);
    goto done;
error:
    result = NULL;
done:
    Py_XDECREF(bags);
    free_local(&defaults);
    PyBuffer_Release(&buffer);
    return result;
}

static PyMethodDef METHODS[] = {
    {"decode_report", decode_report, METH_VARARGS,
     "decode_report(raw, dictionary, make_time, make_duration, make_bytes) -> list | None\n"
     "One attribute dict per message of a ReportRequest, or None: decode it in Python."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_wire", NULL, -1, METHODS,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__wire(void) { return PyModule_Create(&MODULE); }
