/* The blocked-lookup log's leaf digests in one call: SHA-256 of each fixed-width row of a buffer.
 *
 * resolver.blocklog computes one leaf per record (SHA-256 of seq, time, template digest and
 * address ciphertext, LEAF_W bytes). From Python that is one hashlib object per record, about
 * 1 us of call overhead for 67 bytes of input; here it is about 0.13 us (OpenSSL's SHA-256 with
 * the CPU's SHA extensions where it has them), and the GIL is released while it runs.
 *
 * The result is byte for byte what hashlib gives: resolver.blocklog falls back to hashlib when
 * this module is not built (it is an optional extension: no compiler or no OpenSSL headers at
 * install time), and tests/unit/blocklog/test_leafhash.py checks the two agree.
 *
 * The low-level SHA256_Init/Update/Final are deprecated in OpenSSL 3 but kept; the one-shot
 * SHA256() and a reused EVP_MD_CTX fetch or reset the EVP machinery per call and cost 2-7x more
 * per row here. Should a future OpenSSL drop them, the build fails and the fallback is used.
 */
#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define DIGEST 32

static PyObject *
sha256_rows(PyObject *module, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t width;
    if (!PyArg_ParseTuple(args, "y*n:sha256_rows", &buf, &width))
        return NULL;
    if (width <= 0 || buf.len % width != 0) {
        PyErr_Format(PyExc_ValueError, "sha256_rows: a buffer of %zd bytes is not made of rows of %zd bytes",
                     buf.len, width);
        PyBuffer_Release(&buf);
        return NULL;
    }
    Py_ssize_t n = buf.len / width;
    if (n > PY_SSIZE_T_MAX / DIGEST) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    PyObject *out = PyBytes_FromStringAndSize(NULL, n * DIGEST);
    if (out == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *src = (const unsigned char *)buf.buf;
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    SHA256_CTX ctx;
    for (Py_ssize_t i = 0; i < n && ok; i++) {
        ok = SHA256_Init(&ctx) && SHA256_Update(&ctx, src + i * width, (size_t)width) &&
             SHA256_Final(dst + i * DIGEST, &ctx);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    if (!ok) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_RuntimeError, "sha256_rows: OpenSSL's SHA-256 failed");
        return NULL;
    }
    return out;
}

/* Little-endian 8 bytes of v (the leaf's seq and time fields), whatever the host's order. */
static void
put_le64(unsigned char *dst, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        dst[k] = (unsigned char)(v >> (8 * k));
}

#define ADDR_W 19                              /* resolver.blocklog_seal.ADDR_W */
#define LEAF_W (8 + 8 + DIGEST + ADDR_W)       /* resolver.blocklog.LEAF_W */

/* The leaves of a segment's records built and hashed in one pass: record i's row is seq
 * (first_seq + i, u64 LE), its time (i64 LE), the digest of its template (row li[i] of
 * ``digests``) and its address ciphertext (ADDR_W bytes of ``ct``, or zeros when None). What
 * resolver.blocklog builds with numpy and hashes with sha256_rows, without the intermediate
 * array of rows. */
static PyObject *
leaves(PyObject *module, PyObject *args)
{
    unsigned long long first_seq;
    Py_buffer times, digests, li, ct = {0};
    PyObject *ct_obj;
    if (!PyArg_ParseTuple(args, "Ky*y*y*O:leaves", &first_seq, &times, &digests, &li, &ct_obj))
        return NULL;
    PyObject *out = NULL;
    const char *bad = NULL;
    Py_ssize_t n = times.len / 8, m = digests.len / DIGEST;
    if (ct_obj != Py_None && PyObject_GetBuffer(ct_obj, &ct, PyBUF_SIMPLE) < 0)
        goto done;
    if (times.len % 8 || li.len != times.len || digests.len % DIGEST ||
        (ct_obj != Py_None && ct.len != n * ADDR_W)) {
        PyErr_Format(PyExc_ValueError, "leaves: %zd bytes of times, %zd of local numbers, %zd of digests and %zd "
                     "of ciphertext do not describe the same records", times.len, li.len, digests.len,
                     ct_obj != Py_None ? ct.len : (Py_ssize_t)0);
        goto done;
    }
    if (n > PY_SSIZE_T_MAX / DIGEST) {
        PyErr_NoMemory();
        goto done;
    }
    out = PyBytes_FromStringAndSize(NULL, n * DIGEST);
    if (out == NULL)
        goto done;
    unsigned char *dst = (unsigned char *)PyBytes_AS_STRING(out);
    const unsigned char *tm = (const unsigned char *)times.buf, *ix = (const unsigned char *)li.buf;
    const unsigned char *dg = (const unsigned char *)digests.buf, *cx = (const unsigned char *)ct.buf;
    Py_BEGIN_ALLOW_THREADS
    unsigned char row[LEAF_W];
    SHA256_CTX ctx;
    if (cx == NULL)
        memset(row + 8 + 8 + DIGEST, 0, ADDR_W);
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t k, t;
        memcpy(&k, ix + i * 8, 8);                 /* (the buffers need not be aligned) */
        memcpy(&t, tm + i * 8, 8);
        if (k < 0 || k >= m) {
            bad = "leaves: a record's template is not one of the digests";
            break;
        }
        put_le64(row, (uint64_t)first_seq + (uint64_t)i);
        put_le64(row + 8, (uint64_t)t);
        memcpy(row + 16, dg + k * DIGEST, DIGEST);
        if (cx != NULL)
            memcpy(row + 16 + DIGEST, cx + i * ADDR_W, ADDR_W);
        if (!(SHA256_Init(&ctx) && SHA256_Update(&ctx, row, LEAF_W) && SHA256_Final(dst + i * DIGEST, &ctx))) {
            bad = "leaves: OpenSSL's SHA-256 failed";
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (bad != NULL) {
        PyErr_SetString(PyExc_ValueError, bad);
        Py_CLEAR(out);
    }
done:
    PyBuffer_Release(&times);
    PyBuffer_Release(&digests);
    PyBuffer_Release(&li);
    if (ct.obj != NULL)
        PyBuffer_Release(&ct);
    return out;
}

static PyMethodDef methods[] = {
    {"sha256_rows", sha256_rows, METH_VARARGS,
     "sha256_rows(buffer, width) -> bytes\n\n"
     "The SHA-256 digests (32 bytes each, in order) of the rows of a C-contiguous buffer of rows of\n"
     "``width`` bytes. ValueError when the buffer's length is not a multiple of ``width``."},
    {"leaves", leaves, METH_VARARGS,
     "leaves(first_seq, times, digests, li, ct) -> bytes\n\n"
     "The leaf digests of n records: SHA-256 of (first_seq + i as u64 LE, times[i] as i64 LE,\n"
     "row li[i] of ``digests`` (32-byte rows), ciphertext row i (19 bytes) or zeros when ``ct`` is\n"
     "None). ``times`` and ``li`` hold native int64s. ValueError when the buffers disagree on n or\n"
     "an index is outside ``digests``."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "resolver._leafhash",
    "SHA-256 of each fixed-width row of a buffer, in one call (the blocked-lookup log's leaves).", -1, methods,
};

PyMODINIT_FUNC
PyInit__leafhash(void)
{
    return PyModule_Create(&module);
}
