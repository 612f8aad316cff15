/* The blocklog writer's decoder of packed batches in one pass (resolver.blocklog_ship.decode_columns).
 *
 * A protocol 2 message carries receive batches as (time_ms, transport, family, slots, answers)
 * tuples, the batches' sender-address slots as the kernel wrote them (NAME_SIZE bytes each) and
 * per answer its slot within its batch (one byte). The writer wants, per answer, its time, its
 * transport and its address as blocklog_seal.pack_address lays it out (ADDR_W bytes: family 4 or
 * 6, the address, zero padding, the port in network order). In numpy that is about forty array
 * operations a message and a Python-level check of every batch's fields: ~0.1 us a record at the
 * ~13 answers a receive batch holds under load. Here it is one pass over batches and answers.
 *
 * It checks exactly what the numpy path (``_spans``) checks and returns None for anything that
 * path would refuse; the caller then runs that path, which names the first bad batch. So there is
 * one place that words the errors, and a message this code gets wrong can only be slower, never
 * accepted differently: tests/unit/blocklog/test_packed_decode.py compares the two on valid and
 * malformed messages. Optional extension: without it the numpy path does all of it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#define NAME_SIZE 28   /* resolver.mmsg.NAME_SIZE: sizeof(struct sockaddr_in6) */
#define ADDR_W 19      /* resolver.blocklog_seal.ADDR_W */
#define MAX_SLOTS 256  /* resolver.blocklog_ship.MAX_SLOTS */

/* An exact int (not a bool or a subclass) that fits int64: 1 and *out set; 0 otherwise. */
static int
exact_i64(PyObject *o, int64_t *out)
{
    if (!PyLong_CheckExact(o))
        return 0;
    int overflow = 0;
    long long v = PyLong_AsLongLongAndOverflow(o, &overflow);
    if (overflow || (v == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    *out = (int64_t)v;
    return 1;
}

/* 0 udp, 1 tcp, -1 neither (or not an exact str). */
static int
transport(PyObject *o)
{
    if (!PyUnicode_CheckExact(o))
        return -1;
    if (PyUnicode_CompareWithASCIIString(o, "udp") == 0)
        return 0;
    if (PyUnicode_CompareWithASCIIString(o, "tcp") == 0)
        return 1;
    return -1;
}

static PyObject *
decode_packed(PyObject *module, PyObject *args)
{
    PyObject *batches;
    Py_buffer names, at;
    if (!PyArg_ParseTuple(args, "O!y*y*:decode_packed", &PyList_Type, &batches, &names, &at))
        return NULL;
    PyObject *result = NULL, *times = NULL, *addrs = NULL, *tcp = NULL;
    const Py_ssize_t nb = PyList_GET_SIZE(batches), n = at.len, nslots = names.len / NAME_SIZE;
    const unsigned char *nm = (const unsigned char *)names.buf, *sl = (const unsigned char *)at.buf;
    if (names.len % NAME_SIZE != 0)
        goto refuse;
    times = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(int64_t));
    addrs = PyBytes_FromStringAndSize(NULL, n * ADDR_W);
    tcp = PyBytes_FromStringAndSize(NULL, n);
    if (times == NULL || addrs == NULL || tcp == NULL)
        goto done;
    int64_t *tm = (int64_t *)PyBytes_AS_STRING(times);
    unsigned char *ad = (unsigned char *)PyBytes_AS_STRING(addrs), *tc = (unsigned char *)PyBytes_AS_STRING(tcp);
    memset(ad, 0, (size_t)n * ADDR_W);
    Py_ssize_t slot = 0, answer = 0;
    int any_tcp = 0;
    for (Py_ssize_t i = 0; i < nb; i++) {
        PyObject *b = PyList_GET_ITEM(batches, i);
        int64_t t, family, slots, answers;
        if (!PyTuple_CheckExact(b) || PyTuple_GET_SIZE(b) != 5 || !exact_i64(PyTuple_GET_ITEM(b, 0), &t) ||
            !exact_i64(PyTuple_GET_ITEM(b, 2), &family) || !exact_i64(PyTuple_GET_ITEM(b, 3), &slots) ||
            !exact_i64(PyTuple_GET_ITEM(b, 4), &answers))
            goto refuse;
        int tr = transport(PyTuple_GET_ITEM(b, 1));
        if (tr < 0 || (family != AF_INET && family != AF_INET6) || slots <= 0 || slots > MAX_SLOTS ||
            answers <= 0 || answers > n - answer || slots > nslots - slot)
            goto refuse;
        const unsigned char *first = nm + slot * NAME_SIZE;
        any_tcp |= tr;
        for (Py_ssize_t a = answer; a < answer + answers; a++) {
            unsigned s = sl[a];
            if (s >= (unsigned)slots)
                goto refuse;
            const unsigned char *src = first + (size_t)s * NAME_SIZE;
            unsigned char *dst = ad + (size_t)a * ADDR_W;
            if (family == AF_INET) {
                dst[0] = 4;
                memcpy(dst + 1, src + 4, 4);       /* sockaddr_in: sin_addr */
            } else {
                dst[0] = 6;
                memcpy(dst + 1, src + 8, 16);      /* sockaddr_in6: sin6_addr */
            }
            dst[17] = src[2];                      /* the port, network order in both families */
            dst[18] = src[3];
            tm[a] = t;
            tc[a] = (unsigned char)tr;
        }
        slot += slots;
        answer += answers;
    }
    if (slot != nslots || answer != n)
        goto refuse;
    result = PyTuple_Pack(3, times, addrs, any_tcp ? tcp : Py_None);
    goto done;
refuse:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(times);
    Py_XDECREF(addrs);
    Py_XDECREF(tcp);
    PyBuffer_Release(&names);
    PyBuffer_Release(&at);
    return result;
}

static PyMethodDef methods[] = {
    {"decode_packed", decode_packed, METH_VARARGS,
     "decode_packed(batches, names, at) -> (times, addrs, tcp) | None\n\n"
     "Per answer of a message's packed batches: its time (int64, native order), its address slot\n"
     "as pack_address lays it out (19 bytes) and its transport (1 byte, 1 for tcp; None when every\n"
     "batch is udp). None when the batches are not well formed or do not cover ``names`` and ``at``\n"
     "exactly (the numpy path then names the first bad batch)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "resolver._packed",
    "The blocklog writer's decoder of packed batches, in one pass.", -1, methods,
};

PyMODINIT_FUNC
PyInit__packed(void)
{
    return PyModule_Create(&module);
}
