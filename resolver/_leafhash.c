/* The blocked-lookup log's leaf digests in one call: SHA-256 of each fixed-width row of a buffer
 * (``sha256_rows``), or of each record of a new segment built from its columns (``leaves``).
 *
 * resolver.blocklog computes one leaf per record (SHA-256 of seq, time, template digest and
 * address ciphertext, LEAF_W bytes). From Python that is one hashlib object per record, about
 * 1 us of call overhead for 67 bytes of input; with OpenSSL's SHA-256 one row at a time it is
 * about 0.09 us; with the CPU's SHA extensions two rows at a time (``sha256_pair``, below) about
 * 0.055 us. The GIL is released while it runs.
 *
 * The result is byte for byte what hashlib gives: resolver.blocklog falls back to hashlib when
 * this module is not built (it is an optional extension: no compiler or no OpenSSL headers at
 * install time), and tests/unit/blocklog/test_leafhash.py checks the three agree.
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

/* Two SHA-256 digests at once with the CPU's SHA extensions (x86 SHA-NI), for inputs of one length.
 *
 * A block's 64 rounds are one chain of dependent SHA256RNDS2 instructions, each waiting for the
 * last; OpenSSL hashes one input at a time, so the CPU idles between them. Two independent inputs
 * in lockstep fill those gaps: about 0.6 of the time per digest here (BENCHMARKS.md, issue 5).
 * The same FIPS 180-4 computation, checked against hashlib in tests/unit/blocklog/test_leafhash.py;
 * used only when CPUID reports SHA, SSSE3 and SSE4.1 (else, and for an odd last row, OpenSSL). */
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_PAIR 1

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};
static const uint32_t H0[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

static int
have_sha_ni(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSSE3) || !(c & bit_SSE4_1))
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1;        /* CPUID.(EAX=7,ECX=0):EBX.SHA[bit 29] */
}

#define NI __attribute__((target("sha,ssse3,sse4.1")))

/* The message words of group g (rounds 4g..4g+3) from the four groups before it, in place. */
#define SCHEDULE(m, g) \
    m[(g) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(m[(g) & 3], m[((g) + 1) & 3]), \
                                                    _mm_alignr_epi8(m[((g) + 3) & 3], m[((g) + 2) & 3], 4)), \
                                      m[((g) + 3) & 3])

/* One 64-byte block of each of two inputs into their states (ABEF, CDGH as SHA256RNDS2 wants). */
NI static void
compress2(__m128i *s0a, __m128i *s1a, __m128i *s0b, __m128i *s1b, const unsigned char *a, const unsigned char *b)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i ma[4], mb[4];
    __m128i x0 = *s0a, x1 = *s1a, y0 = *s0b, y1 = *s1b;
#pragma GCC unroll 16
    for (int g = 0; g < 16; g++) {
        if (g < 4) {
            ma[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(a + 16 * g)), bswap);
            mb[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(b + 16 * g)), bswap);
        } else {
            SCHEDULE(ma, g);
            SCHEDULE(mb, g);
        }
        const __m128i k = _mm_loadu_si128((const __m128i *)(K256 + 4 * g));
        __m128i wa = _mm_add_epi32(ma[g & 3], k), wb = _mm_add_epi32(mb[g & 3], k);
        x1 = _mm_sha256rnds2_epu32(x1, x0, wa);
        y1 = _mm_sha256rnds2_epu32(y1, y0, wb);
        x0 = _mm_sha256rnds2_epu32(x0, x1, _mm_shuffle_epi32(wa, 0x0E));
        y0 = _mm_sha256rnds2_epu32(y0, y1, _mm_shuffle_epi32(wb, 0x0E));
    }
    *s0a = _mm_add_epi32(*s0a, x0);
    *s1a = _mm_add_epi32(*s1a, x1);
    *s0b = _mm_add_epi32(*s0b, y0);
    *s1b = _mm_add_epi32(*s1b, y1);
}

/* The digest (big-endian words A..H) of a state kept as ABEF, CDGH. */
NI static void
store_digest(__m128i s0, __m128i s1, unsigned char *out)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i feba = _mm_shuffle_epi32(s0, 0x1B), dchg = _mm_shuffle_epi32(s1, 0xB1);
    __m128i dcba = _mm_blend_epi16(feba, dchg, 0xF0), hgfe = _mm_alignr_epi8(dchg, feba, 8);
    _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(dcba, bswap));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_shuffle_epi8(hgfe, bswap));
}

/* SHA-256 of a and of b, both ``len`` bytes, into da and db. */
NI static void
sha256_pair(const unsigned char *a, const unsigned char *b, size_t len, unsigned char *da, unsigned char *db)
{
    __m128i t = _mm_loadu_si128((const __m128i *)H0), u = _mm_loadu_si128((const __m128i *)(H0 + 4));
    t = _mm_shuffle_epi32(t, 0xB1);                   /* CDAB */
    u = _mm_shuffle_epi32(u, 0x1B);                   /* EFGH */
    __m128i s0a = _mm_alignr_epi8(t, u, 8), s1a = _mm_blend_epi16(u, t, 0xF0);     /* ABEF, CDGH */
    __m128i s0b = s0a, s1b = s1a;
    size_t full = len / 64, rest = len % 64;
    for (size_t i = 0; i < full; i++)
        compress2(&s0a, &s1a, &s0b, &s1b, a + 64 * i, b + 64 * i);
    unsigned char pa[128], pb[128];                    /* the tail, 0x80, zeros, the length in bits */
    size_t tail = rest + 9 <= 64 ? 64 : 128;
    memset(pa, 0, tail);
    memset(pb, 0, tail);
    memcpy(pa, a + 64 * full, rest);
    memcpy(pb, b + 64 * full, rest);
    pa[rest] = pb[rest] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int k = 0; k < 8; k++)
        pa[tail - 1 - k] = pb[tail - 1 - k] = (unsigned char)(bits >> (8 * k));
    for (size_t off = 0; off < tail; off += 64)
        compress2(&s0a, &s1a, &s0b, &s1b, pa + off, pb + off);
    store_digest(s0a, s1a, da);
    store_digest(s0b, s1b, db);
}
#else
#define HAVE_PAIR 0
static int have_sha_ni(void) { return 0; }
static void sha256_pair(const unsigned char *a, const unsigned char *b, size_t len, unsigned char *da,
                        unsigned char *db) { (void)a; (void)b; (void)len; (void)da; (void)db; }
#endif

static int use_pair = 0;    /* set at import: the CPU has SHA-NI (tests may turn it off: _use_pairs) */

static int
sha256_one(const unsigned char *src, size_t len, unsigned char *dst)
{
    SHA256_CTX ctx;
    return SHA256_Init(&ctx) && SHA256_Update(&ctx, src, len) && SHA256_Final(dst, &ctx);
}

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
    const int pairs = use_pair;                /* read once: _use_pairs may change it meanwhile */
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t i = 0;
    if (pairs)
        for (; i + 1 < n; i += 2)
            sha256_pair(src + i * width, src + (i + 1) * width, (size_t)width, dst + i * DIGEST,
                        dst + (i + 1) * DIGEST);
    for (; i < n && ok; i++)
        ok = sha256_one(src + i * width, (size_t)width, dst + i * DIGEST);
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
    const int pairs = use_pair;                /* read once: a pair's first row is hashed with its second */
    PyObject *error = PyExc_ValueError;
    Py_BEGIN_ALLOW_THREADS
    unsigned char rows[2][LEAF_W];             /* hashed in pairs (sha256_pair) when the CPU can */
    if (cx == NULL) {
        memset(rows[0] + 8 + 8 + DIGEST, 0, ADDR_W);
        memset(rows[1] + 8 + 8 + DIGEST, 0, ADDR_W);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char *row = rows[i & 1];
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
        if (pairs && (i & 1))
            sha256_pair(rows[0], rows[1], LEAF_W, dst + (i - 1) * DIGEST, dst + i * DIGEST);
        else if ((!pairs || i + 1 == n) && !sha256_one(row, LEAF_W, dst + i * DIGEST)) {
            bad = "leaves: OpenSSL's SHA-256 failed";
            error = PyExc_RuntimeError;         /* as sha256_rows: not the caller's input */
            break;
        }
    }
    Py_END_ALLOW_THREADS
    if (bad != NULL) {
        PyErr_SetString(error, bad);
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

static PyObject *
use_pairs(PyObject *module, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0)
        return NULL;
    use_pair = on && HAVE_PAIR && have_sha_ni();
    return PyBool_FromLong(use_pair);
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
    {"_use_pairs", use_pairs, METH_O,
     "_use_pairs(on) -> bool\n\n"
     "Hash two rows at once with the CPU's SHA extensions when ``on`` and the CPU has them (the\n"
     "default where it does); False: one at a time with OpenSSL. Returns whether pairs are used.\n"
     "For tests, which compare the two."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "resolver._leafhash",
    "The blocked-lookup log's leaf digests: SHA-256 of fixed-width rows, or of a new segment's records.", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__leafhash(void)
{
    use_pair = HAVE_PAIR && have_sha_ni();
    return PyModule_Create(&module);
}
