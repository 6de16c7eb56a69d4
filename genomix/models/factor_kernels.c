/* The CPU factor kernels of factor_kernels.py (its docstring says what they compute and why): compiled there on
   first use, cached by a hash of this file, the compiler and its flags, and called through ctypes. */

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

/* out[0:D] = (base ? base : 0) + sum_k c[k] * src[k][0:D]. Eight accumulators per 64 floats: the K
   multiply-adds into one accumulator form a dependency chain, and eight chains keep both FMA units busy. */
static void axpy_f32(float* out, const float* base, const float* const* src, const float* c, int64_t K,
                     int64_t D) {
    int64_t d0 = 0;
#if defined(__AVX2__) && defined(__FMA__)
    for (; d0 + 64 <= D; d0 += 64) {
        __m256 a[8];
        for (int u = 0; u < 8; u++) a[u] = base ? _mm256_loadu_ps(base + d0 + 8 * u) : _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k++) {
            const __m256 ck = _mm256_set1_ps(c[k]);
            const float* s = src[k] + d0;
            for (int u = 0; u < 8; u++) a[u] = _mm256_fmadd_ps(ck, _mm256_loadu_ps(s + 8 * u), a[u]);
        }
        for (int u = 0; u < 8; u++) _mm256_storeu_ps(out + d0 + 8 * u, a[u]);
    }
    for (; d0 + 8 <= D; d0 += 8) {
        __m256 a = base ? _mm256_loadu_ps(base + d0) : _mm256_setzero_ps();
        for (int64_t k = 0; k < K; k++) a = _mm256_fmadd_ps(_mm256_set1_ps(c[k]), _mm256_loadu_ps(src[k] + d0), a);
        _mm256_storeu_ps(out + d0, a);
    }
#endif
    for (; d0 < D; d0++) {
        float a = base ? base[d0] : 0.0f;
        for (int64_t k = 0; k < K; k++) a += c[k] * src[k][d0];
        out[d0] = a;
    }
}

static float dot_f32(const float* x, const float* y, int64_t D) {
    int64_t d0 = 0;
    float total = 0.0f;
#if defined(__AVX2__) && defined(__FMA__)
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; d0 + 16 <= D; d0 += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d0), _mm256_loadu_ps(y + d0), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + d0 + 8), _mm256_loadu_ps(y + d0 + 8), a1);
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, _mm256_add_ps(a0, a1));
    for (int q = 0; q < 8; q++) total += lanes[q];
#endif
    for (; d0 < D; d0++) total += x[d0] * y[d0];
    return total;
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

/* Each shift reduced to [0, L), once per sequence, so the row loops need no division. */
static void reduce_shifts(const int64_t* shifts, int64_t K, int64_t L, int64_t* t) {
    if (L < 1) L = 1;
    for (int64_t k = 0; k < K; k++) t[k] = ((shifts[k] % L) + L) % L;
}

/* Kernels over flat rows [row0, row1) of the (B*N) rows. */
#define KERNELS(T, SUF, RT)                                                                                   \
void rms_##SUF(int64_t row0, int64_t row1, int64_t D, const T* v, RT* r) {                                  \
    for (int64_t q = row0; q < row1; q++) {                                                                 \
        RT s = (RT)dot_##SUF(v + q * D, v + q * D, D);                                                      \
        r[q] = (RT)1 / sqrt(s / (RT)D + (RT)1e-6);                                                          \
    }                                                                                                       \
}                                                                                                           \
void forward_##SUF(int64_t row0, int64_t row1, int64_t N, int64_t D, int64_t K, const T* v, const T* w,     \
                   int64_t w_stride, const RT* r, const int64_t* lengths, const int64_t* shifts, int residual,\
                   T* out) {                                                                                \
    const T* src[KMAX]; T c[KMAX]; int64_t t[KMAX]; int64_t tb = -1;                                        \
    for (int64_t q = row0; q < row1; q++) {                                                                 \
        const int64_t b = q / N, i = q - b * N, L = lengths[b];                                             \
        if (b != tb) { reduce_shifts(shifts, K, L, t); tb = b; }                                            \
        const T* vb = v + b * N * D;                                                                        \
        for (int64_t k = 0; k < K; k++) {                                                                   \
            const int64_t j = fwd_row(i, t[k], L);                                                          \
            c[k] = w[q * w_stride + k] * (r ? (T)r[b * N + j] : (T)1);                                      \
            src[k] = vb + j * D;                                                                            \
        }                                                                                                   \
        axpy_##SUF(out + q * D, residual ? v + q * D : 0, src, c, K, D);                                    \
    }                                                                                                       \
}                                                                                                           \
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

KERNELS(float, f32, float)
KERNELS(double, f64, double)
