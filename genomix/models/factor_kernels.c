/* The CPU factor kernels of factor_kernels.py (its docstring says what they compute and why): compiled there on
   first use, cached by a hash of this file, the compiler and its flags, and called through ctypes.
   bf16 (inference under autocast) has a forward only: it reads bf16, computes in fp32 and rounds once on store. */

#include <stdint.h>
#include <math.h>
#include <string.h>
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#define KMAX 128

/* Row that row i < L reads for a shift t already reduced to [0, L); padded rows read themselves. */
static inline int64_t fwd_row(int64_t i, int64_t t, int64_t L) {
    if (i >= L) return i;
    int64_t j = i + t;
    return j >= L ? j - L : j;
}

/* The row that reads row j (the opposite shift). */
static inline int64_t back_row(int64_t j, int64_t t, int64_t L) {
    if (j >= L) return j;
    int64_t i = j - t;
    return i < 0 ? i + L : i;
}

static void axpy_f64(double* out, const double* base, const double* const* src, const double* c, int64_t K,
                     int64_t D) {
    for (int64_t d = 0; d < D; d++) {
        double a = base ? base[d] : 0.0;
        for (int64_t k = 0; k < K; k++) a += c[k] * src[k][d];
        out[d] = a;
    }
}

static double dot_f64(const double* x, const double* y, int64_t D) {
    double total = 0.0;
    for (int64_t d = 0; d < D; d++) total += x[d] * y[d];
    return total;
}

typedef uint16_t bf16;

static inline float bf16_f32(bf16 x) {
    uint32_t u = (uint32_t)x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even, as torch does (NaN stays NaN). */
static inline bf16 f32_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16)((u >> 16) | 0x40);
    return (bf16)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

#if defined(__AVX2__) && defined(__FMA__)
static inline __m256 load8_bf16(const bf16* p) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p)), 16));
}

static inline void store8_bf16(bf16* p, __m256 x) {
    __m256i u = _mm256_castps_si256(x);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    u = _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), odd)), 16);
    _mm_storeu_si128((__m128i*)p, _mm_packus_epi32(_mm256_castsi256_si128(u), _mm256_extracti128_si256(u, 1)));
}
#endif

/* out[0:D] = (base ? base : 0) + sum_k c[k] * src[k][0:D], and the dot product of two rows, for rows of T (float,
   or bf16: read as fp32, summed in fp32 and rounded once on store). Eight accumulators per 64 values: the K
   multiply-adds into one accumulator form a dependency chain, and eight chains keep both FMA units busy. The
   SIMD loops need AVX2 and FMA; the scalar loops finish the rows (or do all of them without). */
#if defined(__AVX2__) && defined(__FMA__)
#define SIMD_AXPY(T, LOAD8, STORE8)                                                                            \
    for (; d0 + 64 <= D; d0 += 64) {                                                                           \
        __m256 a[8];                                                                                           \
        for (int u = 0; u < 8; u++) a[u] = base ? LOAD8(base + d0 + 8 * u) : _mm256_setzero_ps();              \
        for (int64_t k = 0; k < K; k++) {                                                                      \
            const __m256 ck = _mm256_set1_ps(c[k]);                                                            \
            const T* s = src[k] + d0;                                                                          \
            for (int u = 0; u < 8; u++) a[u] = _mm256_fmadd_ps(ck, LOAD8(s + 8 * u), a[u]);                    \
        }                                                                                                      \
        for (int u = 0; u < 8; u++) STORE8(out + d0 + 8 * u, a[u]);                                            \
    }                                                                                                          \
    for (; d0 + 8 <= D; d0 += 8) {                                                                             \
        __m256 a = base ? LOAD8(base + d0) : _mm256_setzero_ps();                                              \
        for (int64_t k = 0; k < K; k++) a = _mm256_fmadd_ps(_mm256_set1_ps(c[k]), LOAD8(src[k] + d0), a);     \
        STORE8(out + d0, a);                                                                                   \
    }
#define SIMD_DOT(LOAD8)                                                                                        \
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();                                                 \
    for (; d0 + 16 <= D; d0 += 16) {                                                                           \
        a0 = _mm256_fmadd_ps(LOAD8(x + d0), LOAD8(y + d0), a0);                                                \
        a1 = _mm256_fmadd_ps(LOAD8(x + d0 + 8), LOAD8(y + d0 + 8), a1);                                        \
    }                                                                                                          \
    float lanes[8];                                                                                            \
    _mm256_storeu_ps(lanes, _mm256_add_ps(a0, a1));                                                            \
    for (int q = 0; q < 8; q++) total += lanes[q];
#else
#define SIMD_AXPY(T, LOAD8, STORE8)
#define SIMD_DOT(LOAD8)
#endif

#define AXPY_DOT(T, SUF, LOAD8, STORE8, TO_F32, FROM_F32)                                                      \
static void axpy_##SUF(T* out, const T* base, const T* const* src, const float* c, int64_t K, int64_t D) {    \
    int64_t d0 = 0;                                                                                            \
    SIMD_AXPY(T, LOAD8, STORE8)                                                                                \
    for (; d0 < D; d0++) {                                                                                     \
        float a = base ? TO_F32(base[d0]) : 0.0f;                                                              \
        for (int64_t k = 0; k < K; k++) a += c[k] * TO_F32(src[k][d0]);                                        \
        out[d0] = FROM_F32(a);                                                                                 \
    }                                                                                                          \
}                                                                                                              \
                                                                                                               \
static float dot_##SUF(const T* x, const T* y, int64_t D) {                                                   \
    int64_t d0 = 0;                                                                                            \
    float total = 0.0f;                                                                                        \
    SIMD_DOT(LOAD8)                                                                                            \
    for (; d0 < D; d0++) total += TO_F32(x[d0]) * TO_F32(y[d0]);                                               \
    return total;                                                                                              \
}

static inline float load_bf16(bf16 x) { return bf16_f32(x); }
static inline float load_f32(float x) { return x; }

AXPY_DOT(float, f32, _mm256_loadu_ps, _mm256_storeu_ps, load_f32, load_f32)
AXPY_DOT(bf16, bf16, load8_bf16, store8_bf16, bf16_f32, f32_bf16)

static inline double load_f64(double x) { return x; }

/* Each shift reduced to [0, L), once per sequence, so the row loops need no division. */
static void reduce_shifts(const int64_t* shifts, int64_t K, int64_t L, int64_t* t) {
    if (L < 1) L = 1;
    for (int64_t k = 0; k < K; k++) t[k] = ((shifts[k] % L) + L) % L;
}

/* Kernels over flat rows [row0, row1) of the (B*N) rows; RT is the type they compute in. */
#define FORWARD(T, SUF, RT)                                                                                   \
void rms_##SUF(int64_t row0, int64_t row1, int64_t D, const T* v, RT* r) {                                  \
    for (int64_t q = row0; q < row1; q++) {                                                                 \
        RT s = (RT)dot_##SUF(v + q * D, v + q * D, D);                                                      \
        r[q] = (RT)1 / sqrt(s / (RT)D + (RT)1e-6);                                                          \
    }                                                                                                       \
}                                                                                                           \
void forward_##SUF(int64_t row0, int64_t row1, int64_t N, int64_t D, int64_t K, const T* v, const T* w,     \
                   int64_t w_stride, const RT* r, const int64_t* lengths, const int64_t* shifts, int residual,\
                   T* out) {                                                                                \
    const T* src[KMAX]; RT c[KMAX]; int64_t t[KMAX]; int64_t tb = -1;                                       \
    for (int64_t q = row0; q < row1; q++) {                                                                 \
        const int64_t b = q / N, i = q - b * N, L = lengths[b];                                             \
        if (b != tb) { reduce_shifts(shifts, K, L, t); tb = b; }                                            \
        const T* vb = v + b * N * D;                                                                        \
        for (int64_t k = 0; k < K; k++) {                                                                   \
            const int64_t j = fwd_row(i, t[k], L);                                                          \
            c[k] = load_##SUF(w[q * w_stride + k]) * (r ? r[b * N + j] : (RT)1);                            \
            src[k] = vb + j * D;                                                                            \
        }                                                                                                   \
        axpy_##SUF(out + q * D, residual ? v + q * D : 0, src, c, K, D);                                    \
    }                                                                                                       \
}

#define BACKWARD(T, SUF, RT)                                                                                  \
void backward_##SUF(int64_t row0, int64_t row1, int64_t N, int64_t D, int64_t K, const T* v, const T* w,    \
                    int64_t w_stride, const RT* r, const T* g, const int64_t* lengths, const int64_t* shifts, \
                    int residual, T* grad_v, T* grad_w) {                                                   \
    const T* src[KMAX]; T c[KMAX]; int64_t t[KMAX]; int64_t tb = -1;                                        \
    for (int64_t q = row0; q < row1; q++) {                                                                 \
        const int64_t b = q / N, j = q - b * N, L = lengths[b];                                             \
        if (b != tb) { reduce_shifts(shifts, K, L, t); tb = b; }                                            \
        const T* vb = v + b * N * D; const T* gb = g + b * N * D;                                           \
        for (int64_t k = 0; k < K; k++) {                                                                   \
            const int64_t i = back_row(j, t[k], L);                                                         \
            c[k] = w[(b * N + i) * w_stride + k];                                                           \
            src[k] = gb + i * D;                                                                            \
            const int64_t jj = fwd_row(j, t[k], L);                                                         \
            grad_w[q * K + k] = (T)dot_##SUF(gb + j * D, vb + jj * D, D) * (r ? (T)r[b * N + jj] : (T)1);   \
        }                                                                                                   \
        T* gv = grad_v + q * D;                                                                             \
        axpy_##SUF(gv, 0, src, c, K, D);                                                                    \
        const T* vj = vb + j * D; const T* gj = gb + j * D;                                                 \
        const T rj = r ? (T)r[q] : (T)1;                                                                    \
        const T corr = r ? rj * rj * rj * (T)dot_##SUF(gv, vj, D) / (T)D : (T)0;                            \
        for (int64_t d = 0; d < D; d++) gv[d] = rj * gv[d] - corr * vj[d] + (residual ? gj[d] : (T)0);      \
    }                                                                                                       \
}

FORWARD(float, f32, float)
FORWARD(double, f64, double)
FORWARD(bf16, bf16, float)
BACKWARD(float, f32, float)
BACKWARD(double, f64, double)
