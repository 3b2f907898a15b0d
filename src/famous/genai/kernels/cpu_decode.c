/* famous's CPU decode kernels: the per-token work of a decoder block in a few calls.
 *
 * Why: decoding one token is a chain of matrix-vector products that should stream the
 * weights at memory bandwidth, plus dozens of tiny element-wise ops. PyTorch's CPU GEMV
 * streams fp32 weights at about half the bandwidth and each tiny op costs microseconds
 * of dispatch; these kernels read each weight once at full speed and fuse the small ops.
 *
 * Portable C11 with GCC/Clang vector extensions and OpenMP across rows; the ISA is the
 * compiler's target (famous builds -march=native, and named targets for its tests, see
 * famous_kernels_isa). Activations and weights share one dtype, fp32 or bf16; arithmetic
 * is fp32 and every result that PyTorch would round to bf16 is rounded at the same point.
 *
 * What each build guarantees. Every build is compiled with -ffp-contract=off, so no build
 * fuses a multiply-add behind the code's back; the fp32 dot products (GEMVs, attention
 * scores) fuse on purpose where the CPU has FMA (fma8: 8-10 % faster GEMVs here), so in
 * fp32 the FMA builds and the generic build agree within rounding, the FMA builds among
 * themselves bit for bit. Everything bf16 (products of bf16 values are exact in fp32, so a
 * fused and an unfused multiply-add are equal) is bit-identical across the builds running
 * on one machine, except the bf16 GEMV of AVX512-BF16 builds,
 * which sums in another order (see dot_bf16): its fp32 sums are within summation error
 * of the others', so its bf16 outputs may differ from theirs by a rounding step. The
 * 8-lane bf16 dot product of every other build follows PyTorch's own AVX2 GEMV, so bf16
 * outputs are bit-identical to PyTorch's where PyTorch runs that kernel (its CPU
 * capability is AVX2, on a CPU without AVX-512); PyTorch's AVX-512 paths sum in other
 * orders, and there the kernels agree with PyTorch within bf16 rounding only.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX2__
#include <immintrin.h>
#endif
/* arm64: the int8-activation GEMV's integer block products run on NEON (Q8_NEON, see
 * there); FAMOUS_PORTABLE keeps them on the portable C path (the tests' reference build). */
#if defined(__aarch64__) && defined(__ARM_NEON) && !defined(FAMOUS_PORTABLE)
#include <arm_neon.h>
#define Q8_NEON 1
#endif

#define FAMOUS_KERNELS_ABI 7

enum { F32 = 0, BF16 = 1 };
enum { ACT_SILU = 0, ACT_GELU_TANH = 1, ACT_GELU = 2, ACT_RELU = 3 };

typedef float v8f __attribute__((vector_size(32)));
typedef uint32_t v8u __attribute__((vector_size(32)));

int famous_kernels_abi(void) { return FAMOUS_KERNELS_ABI; }

/* The instruction set this build's vector code was compiled for. */
const char *famous_kernels_isa(void) {
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
    return "avx512-bf16";
#elif defined(__AVX512F__)
    return "avx512";
#elif defined(__AVX2__)
    return "avx2";
#elif defined(__ARM_NEON)
    return "neon";
#else
    return "generic";
#endif
}

/* ------------------------------------------------------------------ scalars */

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t f32_to_bf16(float f) { /* round to nearest even, NaN kept quiet */
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float load(const void *p, int64_t i, int dt) {
    return dt == F32 ? ((const float *)p)[i] : bf16_to_f32(((const uint16_t *)p)[i]);
}

static inline void store(void *p, int64_t i, float v, int dt) {
    if (dt == F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = f32_to_bf16(v);
}

/* The value as the model's dtype would hold it. */
static inline float rnd(float v, int dt) { return dt == F32 ? v : bf16_to_f32(f32_to_bf16(v)); }

static inline float hsum(v8f v) {
    float s = 0.0f;
    for (int i = 0; i < 8; i++) s += v[i];
    return s;
}

static inline v8f load8f(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ------------------------------------------------------------------ dot products */

/* acc + a * b: one rounding where the CPU has FMA, two elsewhere. */
static inline v8f fma8(v8f a, v8f b, v8f acc) {
#if defined(__FMA__) && defined(__AVX2__)
    return (v8f)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)acc);
#else
    return acc + a * b;
#endif
}

/* One fp32 dot product, 16 lanes at a time. */
static float dot_f32(const float *a, const float *b, int64_t n) {
    v8f s0 = {0}, s1 = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = fma8(load8f(a + i), load8f(b + i), s0);
        s1 = fma8(load8f(a + i + 8), load8f(b + i + 8), s1);
    }
    float s = hsum(s0 + s1);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Dot products of 4 weight rows with x (fp32 weights). */
static void dot4_f32(const float *w0, int64_t ldw, int64_t nrows, const float *x, int64_t k, float out[4]) {
    const float *w1 = w0 + (nrows > 1 ? ldw : 0), *w2 = w0 + (nrows > 2 ? 2 * ldw : 0),
                *w3 = w0 + (nrows > 3 ? 3 * ldw : 0);
    v8f a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
    int64_t i = 0;
    for (; i + 8 <= k; i += 8) {
        v8f xv = load8f(x + i);
        a0 = fma8(load8f(w0 + i), xv, a0);
        a1 = fma8(load8f(w1 + i), xv, a1);
        a2 = fma8(load8f(w2 + i), xv, a2);
        a3 = fma8(load8f(w3 + i), xv, a3);
    }
    float s0 = hsum(a0), s1 = hsum(a1), s2 = hsum(a2), s3 = hsum(a3);
    for (; i < k; i++) {
        s0 += w0[i] * x[i];
        s1 += w1[i] * x[i];
        s2 += w2[i] * x[i];
        s3 += w3[i] * x[i];
    }
    out[0] = s0, out[1] = s1, out[2] = s2, out[3] = s3;
}

/* 8 bf16 values widened to fp32 (a bf16 is the top half of an fp32). Compilers split the
 * generic widening in two on x86, so AVX2 gets its one-instruction zero-extension. */
static inline v8f load8bf16(const uint16_t *p) {
#ifdef __AVX2__
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return (v8f)_mm256_slli_epi32(u, 16);
#else
    typedef uint16_t v8h __attribute__((vector_size(16)));
    v8h h;
    memcpy(&h, p, sizeof h);
    return (v8f)(__builtin_convertvector(h, v8u) << 16);
#endif
}

/* The 8 lanes summed as PyTorch's vectorised reduction adds them. */
static inline float reduce8(v8f v) {
    float a0 = v[0] + v[4], a1 = v[1] + v[5], a2 = v[2] + v[6], a3 = v[3] + v[7];
    return (a0 + a2) + (a1 + a3);
}

#ifndef PF_AHEAD
#define PF_AHEAD 512
#endif

/* Dot products of a bf16 weight row with the prepared input x. In bf16 mode x holds
 * bf16 values (prepare_input rounds every element to bf16), so each product of two bf16
 * values is exact in fp32 and only the summation order decides the result. */
#if defined(__AVX512BF16__) && defined(__AVX512BW__)
/* 32 products per instruction: vdpbf16ps adds the products of each pair of neighbouring
 * bf16 lanes into one of 16 fp32 lanes. Narrowing x to bf16 is exact (see above). The
 * order (two accumulators of 16 lanes over 64-element steps, a zero-padded tail) is not
 * PyTorch's, and these instructions treat subnormal values as zero: results are within
 * fp32 summation error of the 8-lane path below, not bit-identical to it. */
static inline __m512bh bf16x32(const float *x, __mmask32 m) {
    __m512 lo = _mm512_maskz_loadu_ps((__mmask16)m, x);
    __m512 hi = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), x + 16);
    return _mm512_cvtne2ps_pbh(hi, lo); /* lanes 0-15 from lo, 16-31 from hi */
}

static float dot_bf16(const uint16_t *w, const float *x, int64_t k) {
    const __mmask32 all = 0xffffffffu;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 64 <= k; i += 64) {
        __builtin_prefetch(w + i + PF_AHEAD);
        __builtin_prefetch(w + i + PF_AHEAD + 32);
        acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_loadu_si512(w + i), bf16x32(x + i, all));
        acc1 = _mm512_dpbf16_ps(acc1, (__m512bh)_mm512_loadu_si512(w + i + 32),
                                bf16x32(x + i + 32, all));
    }
    for (; i < k; i += 32) {
        __mmask32 m = k - i >= 32 ? all : (__mmask32)((1u << (k - i)) - 1u);
        acc0 = _mm512_dpbf16_ps(acc0, (__m512bh)_mm512_maskz_loadu_epi16(m, w + i),
                                bf16x32(x + i, m));
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#else
/* PyTorch's own summation order (its reduced-precision GEMV on AVX2: 8 fp32 accumulators
 * over 64-element steps, folded in halves, then a 16-element vector tail and a scalar
 * tail), so bf16 outputs equal PyTorch's bit for bit where its CPU capability is AVX2.
 * Any ISA runs this order (generic vectors on SSE2 or NEON) with the same result. */
static float dot_bf16(const uint16_t *w, const float *x, int64_t k) {
    v8f acc[8] = {{0}};
    int64_t main = k & ~63L, vec = k & ~15L, i = 0;
    for (; i < main; i += 64) {
        __builtin_prefetch(w + i + PF_AHEAD);
        __builtin_prefetch(w + i + PF_AHEAD + 32);
        for (int r = 0; r < 8; r++) /* exact products: fused or not, the same sums */
            acc[r] = fma8(load8bf16(w + i + 8 * r), load8f(x + i + 8 * r), acc[r]);
    }
    for (int half = 4; half > 0; half /= 2)
        for (int r = 0; r < half; r++) acc[r] += acc[r + half];
    float sum = reduce8(acc[0]);
    v8f tail = {0};
    for (; i < vec; i += 16) {
        tail = fma8(load8bf16(w + i), load8f(x + i), tail);
        tail = fma8(load8bf16(w + i + 8), load8f(x + i + 8), tail);
    }
    sum += reduce8(tail);
    for (; i < k; i++) sum += bf16_to_f32(w[i]) * x[i];
    return sum;
}
#endif

/* ------------------------------------------------------------------ norms, activations */

/* The mean square is summed in double: PyTorch's pairwise fp32 mean is that accurate, and
 * a plain fp32 running sum is not (bf16 outputs would round differently). */
static float inv_rms(const void *x, int64_t off, int64_t dim, float eps, int dt) {
    double ss = 0.0;
    for (int64_t i = 0; i < dim; i++) {
        double v = load(x, off + i, dt);
        ss += v * v;
    }
    return 1.0f / sqrtf((float)(ss / (double)dim) + eps);
}

/* One row of RMSNorm into fp32 `out`, with the rounding of famous's RMSNorm module:
 * plain (Llama) `w * round(h)`; zero-centred (Gemma) `round(h * (1 + w))`. */
static void rms_row(const void *x, int64_t off, const void *w, int64_t dim, float eps, int zero_centered,
                    int dt, float *out) {
    float s = inv_rms(x, off, dim, eps, dt);
    for (int64_t i = 0; i < dim; i++) {
        float h = load(x, off + i, dt) * s, wi = load(w, i, dt);
        out[i] = zero_centered ? rnd(h * (1.0f + wi), dt) : rnd(wi * rnd(h, dt), dt);
    }
}

void famous_rms_norm(const void *x, const void *w, void *y, int64_t rows, int64_t dim, float eps,
                     int zero_centered, int dt) {
    float *row = malloc(sizeof(float) * (size_t)dim);
    for (int64_t r = 0; r < rows; r++) {
        rms_row(x, r * dim, w, dim, eps, zero_centered, dt, row);
        for (int64_t i = 0; i < dim; i++) store(y, r * dim + i, row[i], dt);
    }
    free(row);
}

static inline float activate(float g, int act) {
    switch (act) {
    case ACT_SILU:
        return g / (1.0f + expf(-g));
    case ACT_GELU_TANH:
        return 0.5f * g * (1.0f + tanhf(0.7978845608028654f * (g + 0.044715f * g * g * g)));
    case ACT_GELU:
        return 0.5f * g * (1.0f + erff(g * 0.7071067811865476f));
    default:
        return g > 0.0f ? g : 0.0f;
    }
}

/* ------------------------------------------------------------------ linear (GEMV) */

/* How the GEMV's input is made from x before the product, so a norm or an activation
 * costs no call of its own: PREP_RMS normalises each row (norm_w, eps, zero_centered);
 * PREP_GATED takes rows of [gate | up] (2k wide) to round(act(gate)) * up; PREP_ACT
 * applies act to each row. */
enum { PREP_NONE = 0, PREP_RMS = 1, PREP_GATED = 2, PREP_ACT = 3 };

static void prepare_input(const void *x, int64_t row, int64_t k, int prep, const void *norm_w,
                          float eps, int zero_centered, int act, int dt, float *out) {
    if (prep == PREP_RMS) {
        rms_row(x, row * k, norm_w, k, eps, zero_centered, dt, out);
    } else if (prep == PREP_GATED) {
        for (int64_t i = 0; i < k; i++)
            out[i] = rnd(rnd(activate(load(x, row * 2 * k + i, dt), act), dt) *
                             load(x, row * 2 * k + k + i, dt),
                         dt);
    } else {
        for (int64_t i = 0; i < k; i++) {
            float v = load(x, row * k + i, dt);
            out[i] = prep == PREP_ACT ? rnd(activate(v, act), dt) : v;
        }
    }
}

/* y[m, n] = in[m, :] . w[n, :] + bias[n], rounded to dt, where in = prep(x). With a
 * residual, the rounded product is added to residual[m, n] and rounded again (PyTorch's
 * `r + linear(x)`). w is [n, k] row-major (nn.Linear's layout); bias, residual and
 * norm_w may be NULL. */
void famous_linear(const void *x, const void *w, const void *bias, const void *residual, void *y,
                   int64_t m, int64_t n, int64_t k, int prep, const void *norm_w, float eps,
                   int zero_centered, int act, int dt, int threads) {
    float *xf = malloc(sizeof(float) * (size_t)(m * k));
    for (int64_t r = 0; r < m; r++)
        prepare_input(x, r, k, prep, norm_w, eps, zero_centered, act, dt, xf + r * k);
    int64_t blocks = (n + 3) / 4;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t n0 = b * 4, rows = n - n0 < 4 ? n - n0 : 4;
        for (int64_t r = 0; r < m; r++) {
            float s[4];
            if (dt == F32)
                dot4_f32((const float *)w + n0 * k, k, rows, xf + r * k, k, s);
            else
                for (int64_t j = 0; j < rows; j++)
                    s[j] = dot_bf16((const uint16_t *)w + (n0 + j) * k, xf + r * k, k);
            for (int64_t j = 0; j < rows; j++) {
                float v = s[j] + (bias ? load(bias, n0 + j, dt) : 0.0f);
                if (residual) v = load(residual, r * n + n0 + j, dt) + rnd(v, dt);
                store(y, r * n + n0 + j, v, dt);
            }
        }
    }
    free(xf);
}

/* ------------------------------------------------------------------ attention */

/* q/k norm (optional) then RoPE on one head of `dim` values; the first `rd` dims rotate
 * (x * cos + rotate_half(x) * sin, each product rounded as the eager model rounds). */
static void prepare_head(const void *src, int64_t off, int64_t dim, const void *norm_w, float eps,
                         int zero_centered, const void *cos, const void *sin, int64_t rd, int dt,
                         float *out) {
    if (norm_w)
        rms_row(src, off, norm_w, dim, eps, zero_centered, dt, out);
    else
        for (int64_t i = 0; i < dim; i++) out[i] = load(src, off + i, dt);
    float tmp[rd > 0 ? rd : 1];
    int64_t half = rd / 2;
    for (int64_t i = 0; i < rd; i++) {
        float rot = i < half ? -out[i + half] : out[i - half];
        tmp[i] = rnd(rnd(out[i] * load(cos, i, dt), dt) + rnd(rot * load(sin, i, dt), dt), dt);
    }
    memcpy(out, tmp, sizeof(float) * (size_t)rd);
}

/* One new token of one sequence: split the fused q|k|v projection, norm and rotate q and
 * k, write k and v into cache slot `pos`, and attend every query head to the cache slots
 * [start, end) of its kv head (grouped-query: head h reads kv head h / (heads / kv)).
 * Caches are [kv_heads, slots, dim]; out is [heads * dim]. softcap <= 0: none.
 * With attend = 0 the call stops after the cache write and out receives the prepared q
 * (bf16 callers attend with PyTorch's SDPA, whose exact rounding they must follow). */
void famous_attention_decode(const void *qkv, const void *cos, const void *sin, int64_t rd,
                             const void *q_norm, const void *k_norm, float norm_eps,
                             int norm_zero_centered, void *k_cache, void *v_cache, int64_t slots,
                             int64_t pos, int64_t start, int64_t end, void *out, int64_t heads, int64_t kv_heads,
                             int64_t dim, float scale, float softcap, int attend, int dt,
                             int threads) {
    int64_t q_size = heads * dim, kv_size = kv_heads * dim, group = heads / kv_heads;
    float *q = malloc(sizeof(float) * (size_t)(q_size + dim));
    float *k = q + q_size;
    for (int64_t h = 0; h < heads; h++)
        prepare_head(qkv, h * dim, dim, q_norm, norm_eps, norm_zero_centered, cos, sin, rd, dt,
                     q + h * dim);
    for (int64_t j = 0; j < kv_heads; j++) {
        prepare_head(qkv, q_size + j * dim, dim, k_norm, norm_eps, norm_zero_centered, cos, sin,
                     rd, dt, k);
        int64_t slot = (j * slots + pos) * dim;
        for (int64_t i = 0; i < dim; i++) {
            store(k_cache, slot + i, k[i], dt);
            store(v_cache, slot + i, load(qkv, q_size + kv_size + j * dim + i, dt), dt);
        }
    }
    if (!attend) {
        for (int64_t i = 0; i < q_size; i++) store(out, i, q[i], dt);
        free(q);
        return;
    }
    int64_t span = end - start;
    int par = span * heads * dim > 65536 ? threads : 1;
#pragma omp parallel for num_threads(par) schedule(static)
    for (int64_t h = 0; h < heads; h++) {
        const float *qh = q + h * dim;
        int64_t base = (h / group) * slots * dim;
        float *p = malloc(sizeof(float) * (size_t)(span > 0 ? span : 1));
        float *acc = calloc((size_t)dim, sizeof(float));
        float top = -INFINITY, total = 0.0f;
        for (int64_t t = 0; t < span; t++) {
            int64_t row = base + (start + t) * dim;
            float s = 0.0f;
            if (dt == F32) {
                s = dot_f32(qh, (const float *)k_cache + row, dim);
            } else {
                for (int64_t i = 0; i < dim; i++) s += qh[i] * load(k_cache, row + i, dt);
            }
            s *= scale;
            if (softcap > 0.0f) s = tanhf(s / softcap) * softcap;
            p[t] = s;
            if (s > top) top = s;
        }
        /* as PyTorch's CPU flash attention: the sum is over fp32 exponentials, the
         * weights that meet v are rounded to the model dtype, the division comes last */
        for (int64_t t = 0; t < span; t++) {
            float e = expf(p[t] - top);
            total += e;
            p[t] = rnd(e, dt);
        }
        for (int64_t t = 0; t < span; t++) {
            int64_t row = base + (start + t) * dim;
            float pt = p[t];
            if (dt == F32) {
                const float *vr = (const float *)v_cache + row;
                for (int64_t i = 0; i < dim; i++) acc[i] += pt * vr[i];
            } else {
                for (int64_t i = 0; i < dim; i++) acc[i] += pt * load(v_cache, row + i, dt);
            }
        }
        for (int64_t i = 0; i < dim; i++) store(out, h * dim + i, acc[i] / total, dt);
        free(acc);
        free(p);
    }
    free(q);
}

/* ------------------------------------------------------------------ quantized linear (GEMV)
 *
 * Weight-only int8 and int4: the weights stream from memory as stored (a quarter or an
 * eighth of fp32's bytes) and are widened to fp32 in registers; activations and all
 * arithmetic stay fp32, so the result is the fp32 GEMV of the dequantized weights within
 * fp32 summation error (no activation is quantized: that would change the numbers).
 *
 * Layouts (what famous.genai.quantize.modules stores, so no call repacks anything):
 *   Q_I8_ROW  int8 [n, k] row-major, one fp32 scale per row: y = s[n] * (q[n, :] . x).
 *   Q_I4_BLK  rows of kp = k rounded up to the block (a multiple of 32) values, kp / 2 bytes
 *             each, one fp16 scale per row and block ([n, kp / block]). Every 32 values of
 *             a row are 16 bytes: byte j holds value j (low nibble) and value j + 16 (high
 *             nibble), each stored as q + 8 (q in [-8, 7]). One 16-byte load then widens
 *             into two runs of 16 consecutive values with an and, a shift and a subtraction
 *             (GGML's Q4_0 places its nibbles the same way, for the same reason).
 * y = sum over blocks of s[block] * (q[block] . x[block]): the block's dot product is
 * summed in fp32 lanes, then scaled and added to the row's fp32 accumulator.
 *
 * Paths: AVX-512 (F + BW: 16 lanes), AVX2 + FMA (8 lanes), and portable C (generic vectors
 * the compiler lowers to what the target has). Chosen at compile time like the rest of
 * this file. VNNI and AVX512-BF16 are not used: their integer / bf16 dot products would
 * need the activations quantized or rounded, which is not weight-only any more. */
enum { Q_I8_ROW = 0, Q_I4_BLK = 1 };

static inline float f16_to_f32(uint16_t h) { /* exact; subnormals, inf and NaN included */
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
    if (e == 0x1fu) {
        u = sign | 0x7f800000u | (m << 13);
    } else if (e != 0) {
        u = sign | ((e + 112u) << 23) | (m << 13);
    } else if (m == 0) {
        u = sign;
    } else { /* subnormal: normalise */
        e = 113u;
        while (!(m & 0x400u)) m <<= 1, e--;
        u = sign | (e << 23) | ((m & 0x3ffu) << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

#if defined(__AVX512F__) && defined(__AVX512BW__)
#define QL 16
#define MM(op) _mm512_##op
typedef __m512 vq;
static inline float q_sum(vq v) { return _mm512_reduce_add_ps(v); }
/* QL int8 weights → QL fp32 lanes */
static inline vq q_i8(const int8_t *p) {
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p)));
}
/* 32 int4 values (16 bytes, see the layout) → 32 / QL vectors of consecutive values */
static inline void i4x32(const uint8_t *p, vq out[32 / QL]) {
    const __m128i low4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i l = _mm_sub_epi8(_mm_and_si128(v, low4), eight);
    __m128i h = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), low4), eight);
    out[0] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(l));
    out[1] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(h));
}
#elif defined(__AVX2__) && defined(__FMA__)
#define QL 8
#define MM(op) _mm256_##op
typedef __m256 vq;
static inline float q_sum(vq v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
static inline vq q_i8(const int8_t *p) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p)));
}
static inline vq i8lanes(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v)); }
static inline void i4x32(const uint8_t *p, vq out[32 / QL]) {
    const __m128i low4 = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    __m128i l = _mm_sub_epi8(_mm_and_si128(v, low4), eight);
    __m128i h = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(v, 4), low4), eight);
    out[0] = i8lanes(l), out[1] = i8lanes(_mm_srli_si128(l, 8));
    out[2] = i8lanes(h), out[3] = i8lanes(_mm_srli_si128(h, 8));
}
#endif

#ifdef QL
/* n fp16 scales widened to fp32 (F16C converts 8 in one instruction where the CPU has it). */
static void scales16(const uint16_t *h, int64_t n, float *out) {
    int64_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
#endif
    for (; i < n; i++) out[i] = f16_to_f32(h[i]);
}

/* The SIMD paths share one dot4_i8 / dot4_i4 written over a few vector operations (vq:
 * QL fp32 lanes); each ISA defines them, and how 32 int4 values widen (i4x32). */
static inline vq q_zero(void) { return MM(setzero_ps)(); }
static inline vq q_load(const float *p) { return MM(loadu_ps)(p); }
static inline vq q_fma(vq a, vq b, vq c) { return MM(fmadd_ps)(a, b, c); }
static inline vq q_set1(float v) { return MM(set1_ps)(v); }
static inline vq q_add(vq a, vq b) { return MM(add_ps)(a, b); }

/* Dot products of up to 4 int8 rows (ldw bytes apart) with x, k values each (unscaled):
 * two accumulators a row, so eight independent chains of fused multiply-adds. */
static void dot4_i8(const int8_t *w0, int64_t ldw, int64_t nrows, const float *x, int64_t k,
                    float out[4]) {
    const int8_t *w[4];
    vq a[4], b[4];
    for (int j = 0; j < 4; j++) w[j] = w0 + (j < nrows ? j : 0) * ldw, a[j] = b[j] = q_zero();
    int64_t i = 0;
    for (; i + 2 * QL <= k; i += 2 * QL) {
        vq x0 = q_load(x + i), x1 = q_load(x + i + QL);
        for (int j = 0; j < 4; j++) {
            a[j] = q_fma(q_i8(w[j] + i), x0, a[j]);
            b[j] = q_fma(q_i8(w[j] + i + QL), x1, b[j]);
        }
    }
    for (int j = 0; j < 4; j++) {
        float s = q_sum(q_add(a[j], b[j]));
        for (int64_t t = i; t < k; t++) s += (float)w[j][t] * x[t];
        out[j] = s;
    }
}

/* Scaled dot products of up to 4 int4 rows with x (kp values, whole blocks): each
 * block's products are summed in lanes, then scaled into the row's accumulator. */
static void dot4_i4(const uint8_t *w0, int64_t ldw, const uint16_t *s0, int64_t lds,
                    int64_t nrows, const float *x, int64_t kp, int64_t block, float out[4]) {
    enum { V = 32 / QL }; /* vectors per 32 values */
    const uint8_t *w[4];
    float s[4][lds]; /* the rows' scales, widened once (not once per block and row) */
    vq acc[4];
    for (int j = 0; j < 4; j++) {
        int64_t r = j < nrows ? j : 0;
        w[j] = w0 + r * ldw, acc[j] = q_zero();
        scales16(s0 + r * lds, lds, s[j]);
    }
    for (int64_t b0 = 0, blk = 0; b0 < kp; b0 += block, blk++) {
        vq pa[4], pb[4]; /* two chains a row: the first and second half of each 32 */
        for (int j = 0; j < 4; j++) pa[j] = pb[j] = q_zero();
        for (int64_t i = b0; i < b0 + block; i += 32) {
            vq xs[V], q[V];
            for (int v = 0; v < V; v++) xs[v] = q_load(x + i + v * QL);
            for (int j = 0; j < 4; j++) {
                i4x32(w[j] + i / 2, q);
                for (int v = 0; v < V / 2; v++) pa[j] = q_fma(q[v], xs[v], pa[j]);
                for (int v = V / 2; v < V; v++) pb[j] = q_fma(q[v], xs[v], pb[j]);
            }
        }
        for (int j = 0; j < 4; j++)
            acc[j] = q_fma(q_add(pa[j], pb[j]), q_set1(s[j][blk]), acc[j]);
    }
    for (int j = 0; j < 4; j++) out[j] = q_sum(acc[j]);
}
#else
typedef int8_t v8c __attribute__((vector_size(8)));

/* Dot products of up to 4 int8 rows (ldw bytes apart) with x, k values each (unscaled). */
static void dot4_i8(const int8_t *w0, int64_t ldw, int64_t nrows, const float *x, int64_t k,
                    float out[4]) {
    for (int j = 0; j < 4; j++) {
        const int8_t *w = w0 + (j < nrows ? j : 0) * ldw;
        v8f a = {0};
        int64_t i = 0;
        for (; i + 8 <= k; i += 8) {
            v8c q;
            memcpy(&q, w + i, sizeof q);
            a += __builtin_convertvector(q, v8f) * load8f(x + i);
        }
        float s = hsum(a);
        for (; i < k; i++) s += (float)w[i] * x[i];
        out[j] = s;
    }
}

/* Scaled dot products of up to 4 int4 rows with x (kp values, whole blocks). */
static void dot4_i4(const uint8_t *w0, int64_t ldw, const uint16_t *s0, int64_t lds,
                    int64_t nrows, const float *x, int64_t kp, int64_t block, float out[4]) {
    for (int j = 0; j < 4; j++) {
        int64_t r = j < nrows ? j : 0;
        const uint8_t *w = w0 + r * ldw;
        float acc = 0.0f;
        for (int64_t b0 = 0, blk = 0; b0 < kp; b0 += block, blk++) {
            v8f p = {0};
            for (int64_t i = b0; i < b0 + block; i += 32) {
                const uint8_t *g = w + i / 2;
                for (int h = 0; h < 16; h += 8) {
                    v8f lo, hi;
                    for (int t = 0; t < 8; t++) {
                        lo[t] = (float)((int)(g[h + t] & 0x0f) - 8);
                        hi[t] = (float)((int)(g[h + t] >> 4) - 8);
                    }
                    p += lo * load8f(x + i + h) + hi * load8f(x + i + 16 + h);
                }
            }
            acc += hsum(p) * f16_to_f32(s0[r * lds + blk]);
        }
        out[j] = acc;
    }
}
#endif

/* ------------------------------------------------------------------ int8 activations
 *
 * The faster option for the same weights (what llama.cpp does for Q4_0 / Q8_0): the GEMV's
 * input is quantized once per call to int8 in blocks of 32 values, and each block's
 * products are summed in integers, so one fp32 multiply-add per block remains:
 *   d[b] = max |x[b]| / 127 (fp32),  q[i] = rint(x[i] / d[b]) (nearest, ties to even; the
 *   fp32 division, IEEE-rounded; q = 0 where d == 0),  the row padded with zeros to whole
 *   blocks. Then y = sum over blocks of fp32(I[b]) * (s_w * d[b]) with I[b] the exact int32
 *   dot product of the block's weight codes and q (int4 codes q_w = u - 8: the unsigned
 *   nibbles u times q, minus 8 * sum(q), precomputed per block), s_w the weight's block
 *   scale (int4) or 1 with the row's scale applied at the end (int8 per channel).
 * The result differs from the weight-only GEMV by the activations' rounding (relative
 * 1 / 254 of a block's largest value at most), not by summation error.
 *
 * Paths: AVX2 (vpmaddubsw then vpmaddwd into int32; int8 weights by the sign trick, |w|
 * times x signed as w, exact because both stay within 127), AVX512-VNNI + VL or AVX-VNNI
 * (vpdpbusd: four products into each int32 lane in one instruction), arm64 NEON (sdot with
 * the dot-product extension, else smull / smlal2 + sadalp; Q8_NEON), portable C. A block
 * is one 256-bit vector, so the AVX-512 builds use the same 256-bit code (EVEX encoded;
 * with VNNI where the target has it). */

typedef struct {
    int8_t *q;   /* [rows, nb * 32] codes */
    float *d;    /* [rows, nb] scales */
    int32_t *c;  /* [rows, nb] -8 * sum of the block's codes (int4's offset) */
    int64_t nb;  /* blocks per row */
} q8act;

/* One row of x (nb * 32 values, zero padded) to int8 blocks, as the comment above says. */
static void quantize_row_q8(const float *x, int64_t nb, int8_t *q, float *d, int32_t *c) {
    for (int64_t b = 0; b < nb; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int i = 0; i < 32; i++) amax = fabsf(xb[i]) > amax ? fabsf(xb[i]) : amax;
        float db = amax / 127.0f;
        d[b] = db;
        int32_t sum = 0;
        if (db == 0.0f) {
            memset(q + 32 * b, 0, 32);
        } else {
#ifdef __AVX2__
            __m256 vd = _mm256_set1_ps(db);
            __m256i t[4];
            for (int v = 0; v < 4; v++) /* vcvtps2dq rounds to nearest even, as rint */
                t[v] = _mm256_cvtps_epi32(_mm256_div_ps(_mm256_loadu_ps(xb + 8 * v), vd));
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(t[0], t[1]),
                                           _mm256_packs_epi32(t[2], t[3]));
            /* packing works per 128-bit lane: put the 4-byte groups back in order */
            p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(q + 32 * b), p);
#elif defined(Q8_NEON)
            float32x4_t vd = vdupq_n_f32(db);
            int16x8_t h[4];
            for (int v = 0; v < 4; v++) /* fcvtns rounds to nearest even, as rint */
                h[v] = vcombine_s16(vqmovn_s32(vcvtnq_s32_f32(vdivq_f32(vld1q_f32(xb + 8 * v), vd))),
                                    vqmovn_s32(vcvtnq_s32_f32(vdivq_f32(vld1q_f32(xb + 8 * v + 4), vd))));
            vst1q_s8(q + 32 * b, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
            vst1q_s8(q + 32 * b + 16, vcombine_s8(vqmovn_s16(h[2]), vqmovn_s16(h[3])));
#else
            for (int i = 0; i < 32; i++) q[32 * b + i] = (int8_t)rintf(xb[i] / db);
#endif
            for (int i = 0; i < 32; i++) sum += q[32 * b + i];
        }
        c[b] = -8 * sum;
    }
}

/* The per-block fp32 factors of one int4 row: its weight scale (per `per` blocks of 32)
 * times the activation block's scale. */
static void i4_factors(const uint16_t *s, int64_t per, const float *d, int64_t nb, float *out) {
    int64_t i = 0;
#ifdef __F16C__
    if (per == 1)
        for (; i + 8 <= nb; i += 8)
            _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128(
                                                        (const __m128i *)(s + i))),
                                                    _mm256_loadu_ps(d + i)));
#endif
#ifdef Q8_NEON /* fcvtl widens 4 fp16 scales at once; exact, as f16_to_f32 */
    if (per == 1)
        for (; i + 4 <= nb; i += 4)
            vst1q_f32(out + i, vmulq_f32(vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(s + i))),
                                         vld1q_f32(d + i)));
#endif
    for (; i < nb; i++) out[i] = f16_to_f32(s[i / per]) * d[i];
}

#if defined(__AVX2__) && defined(__FMA__)
#define Q8_SIMD 1
/* acc + the products of u (unsigned bytes) and s (signed bytes), four to each int32 lane */
static inline __m256i dp_us(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(acc, u, s);
#elif defined(__AVXVNNI__)
    return _mm256_dpbusd_avx_epi32(acc, u, s);
#else /* pairs into int16 (at most 2 * 127 * 127: no saturation), pairs of those into int32 */
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* 32 int4 codes (16 bytes, the Q_I4_BLK layout) → 32 unsigned bytes u = q + 8, in value
 * order: the 16 bytes in both halves, the upper half shifted by a nibble, masked. */
static inline __m256i u4x32(const uint8_t *p) {
    __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    v = _mm256_srlv_epi64(v, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
}

static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
#endif

/* Block b of a row (int4: 16 bytes of nibbles, i4 = 1; int8: 32 codes) times the int8
 * input, as int32 values whose sum is the block's exact dot product. */
#ifdef Q8_SIMD
static inline __m256i q8_block(const void *w, int i4, const int8_t *xq, const int32_t *xc,
                               int64_t b) {
    __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + 32 * b));
    if (i4) /* (u - 8) . q = u . q - 8 * sum(q): the offset starts the sum */
        return dp_us(_mm256_zextsi128_si256(_mm_cvtsi32_si128(xc[b])),
                     u4x32((const uint8_t *)w + 16 * b), xv);
    __m256i wv = _mm256_loadu_si256((const __m256i *)((const int8_t *)w + 32 * b));
    return dp_us(_mm256_setzero_si256(), _mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
}

/* The sum over nb blocks of a row of block(b) * f[b]: the weights read as one sequential
 * stream (row after row, which the hardware prefetcher follows better than four rows at
 * once), four independent chains of multiply-adds. */
static inline __attribute__((always_inline)) float q8_row(const void *w, int i4,
                                                          const int8_t *xq, const int32_t *xc,
                                                          const float *f, int64_t nb) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
#define Q8_STEP(acc, b)                                                                        \
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(q8_block(w, i4, xq, xc, b)), _mm256_set1_ps(f[b]), \
                          acc)
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        Q8_STEP(a0, b);
        Q8_STEP(a1, b + 1);
        Q8_STEP(a2, b + 2);
        Q8_STEP(a3, b + 3);
    }
    for (; b < nb; b++) Q8_STEP(a0, b);
#undef Q8_STEP
    return hsum256(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}
#elif defined(Q8_NEON)
/* Block b's products as 4 int32 lanes whose sum is its exact dot product (int4: the
 * unsigned nibbles u, without the -8 * sum(q) offset). With the dot-product extension
 * sdot adds four products into each lane; without it smull / smlal2 add pairs of
 * products into int16 (|w| <= 128 and |q| <= 127, as quantize_row_q8 makes them, so a
 * pair stays within 32512: no overflow) and sadalp adds pairs of those into int32. */
static inline int32x4_t q8_block(const void *w, int i4, const int8_t *xq, int64_t b) {
    int8x16_t x0 = vld1q_s8(xq + 32 * b), x1 = vld1q_s8(xq + 32 * b + 16), w0, w1;
    if (i4) { /* byte j: value j in the low nibble, value j + 16 in the high one */
        uint8x16_t g = vld1q_u8((const uint8_t *)w + 16 * b);
        w0 = vreinterpretq_s8_u8(vandq_u8(g, vdupq_n_u8(0x0f)));
        w1 = vreinterpretq_s8_u8(vshrq_n_u8(g, 4));
    } else {
        w0 = vld1q_s8((const int8_t *)w + 32 * b), w1 = vld1q_s8((const int8_t *)w + 32 * b + 16);
    }
#ifdef __ARM_FEATURE_DOTPROD
    return vdotq_s32(vdotq_s32(vdupq_n_s32(0), w0, x0), w1, x1);
#else
    int16x8_t p0 = vmlal_high_s8(vmull_s8(vget_low_s8(w0), vget_low_s8(x0)), w0, x0);
    int16x8_t p1 = vmlal_high_s8(vmull_s8(vget_low_s8(w1), vget_low_s8(x1)), w1, x1);
    return vpadalq_s16(vpaddlq_s16(p0), p1);
#endif
}

/* The sum over nb blocks of a row of block(b) * f[b]: four blocks' int32 sums folded into
 * one vector (pairwise adds), widened to fp32 and multiplied by their factors at once. */
static inline float q8_row(const void *w, int i4, const int8_t *xq, const int32_t *xc,
                           const float *f, int64_t nb) {
    float32x4_t acc = vdupq_n_f32(0.0f);
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
        int32x4_t s = vpaddq_s32(vpaddq_s32(q8_block(w, i4, xq, b), q8_block(w, i4, xq, b + 1)),
                                 vpaddq_s32(q8_block(w, i4, xq, b + 2), q8_block(w, i4, xq, b + 3)));
        if (i4) s = vaddq_s32(s, vld1q_s32(xc + b)); /* (u - 8) . q = u . q - 8 * sum(q) */
        acc = vfmaq_f32(acc, vcvtq_f32_s32(s), vld1q_f32(f + b));
    }
    float sum = vaddvq_f32(acc);
    for (; b < nb; b++)
        sum += (float)(vaddvq_s32(q8_block(w, i4, xq, b)) + (i4 ? xc[b] : 0)) * f[b];
    return sum;
}
#else
static inline float q8_row(const void *w, int i4, const int8_t *xq, const int32_t *xc,
                           const float *f, int64_t nb) {
    float acc = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const int8_t *a = xq + 32 * b;
        int32_t s = 0;
        if (i4) {
            const uint8_t *g = (const uint8_t *)w + 16 * b;
            s = xc[b];
            for (int i = 0; i < 16; i++) s += (g[i] & 15) * a[i] + (g[i] >> 4) * a[i + 16];
        } else {
            const int8_t *c = (const int8_t *)w + 32 * b;
            for (int i = 0; i < 32; i++) s += c[i] * a[i];
        }
        acc += (float)s * f[b];
    }
    return acc;
}
#endif

/* Up to 4 int4 rows times the quantized input: y = the sum over blocks of I[b] * factor[b]. */
static void dot4_i4_q8(const uint8_t *w0, int64_t ldw, const uint16_t *s0, int64_t lds,
                       int64_t per, int64_t nrows, const int8_t *xq, const float *xd,
                       const int32_t *xc, int64_t nb, float out[4]) {
    float f[nb];
    for (int64_t j = 0; j < nrows; j++) {
        i4_factors(s0 + j * lds, per, xd, nb, f);
        out[j] = q8_row(w0 + j * ldw, 1, xq, xc, f, nb);
    }
}

/* Up to 4 int8 rows (k codes each, ldw bytes apart) times the quantized input: the sum
 * over blocks of I[b] * d[b], unscaled by the rows' own scales. A last partial block (k
 * not a multiple of 32) is summed in scalar integers, reading no byte past a row. */
static void dot4_i8_q8(const int8_t *w0, int64_t ldw, int64_t nrows, const int8_t *xq,
                       const float *xd, int64_t k, float out[4]) {
    int64_t full = k / 32;
    for (int64_t j = 0; j < nrows; j++) {
        const int8_t *w = w0 + j * ldw;
        out[j] = q8_row(w, 0, xq, NULL, xd, full);
        if (full * 32 < k) {
            int32_t s = 0;
            for (int64_t i = full * 32; i < k; i++) s += w[i] * xq[i];
            out[j] += (float)s * xd[full];
        }
    }
}

/* The name of the integer dot product this build's int8-activation GEMV uses. */
const char *famous_kernels_q8_isa(void) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return "avx512-vnni";
#elif defined(__AVXVNNI__)
    return "avx-vnni";
#elif defined(Q8_SIMD)
    return "avx2";
#elif defined(Q8_NEON) && defined(__ARM_FEATURE_DOTPROD)
    return "neon-dotprod";
#elif defined(Q8_NEON)
    return "neon";
#else
    return "generic";
#endif
}

/* The quantized counterpart of famous_linear (same prep, bias, residual and rounding):
 * y[m, n] = in[m, :] . dequantize(w)[n, :] + bias[n] with in = prep(x). qtype Q_I8_ROW:
 * qw int8 [n, k], scale fp32 [n]; Q_I4_BLK: qw uint8 [n, kp / 2], scale fp16 [n, kp /
 * block], kp = k rounded up to block (a multiple of 32); x and y are of dtype dt.
 * act8 = 0: weight-only (fp32 activations); 1: in quantized to int8 blocks (see above). */
void famous_linear_q(const void *x, const void *qw, const void *scale, int qtype, int64_t block,
                     int act8, const void *bias, const void *residual, void *y, int64_t m,
                     int64_t n, int64_t k, int prep, const void *norm_w, float eps,
                     int zero_centered, int act, int dt, int threads) {
    int64_t kp = qtype == Q_I4_BLK ? (k + block - 1) / block * block : k;
    int64_t ks = qtype == Q_I4_BLK ? kp : (k + 31) / 32 * 32; /* row stride of xf */
    float *xf = calloc((size_t)(m * ks), sizeof(float)); /* zero padding past k */
    for (int64_t r = 0; r < m; r++)
        prepare_input(x, r, k, prep, norm_w, eps, zero_centered, act, dt, xf + r * ks);
    q8act a = {NULL, NULL, NULL, ks / 32};
    if (act8) {
        a.q = malloc((size_t)(m * ks));
        a.d = malloc(sizeof(float) * (size_t)(m * a.nb));
        a.c = malloc(sizeof(int32_t) * (size_t)(m * a.nb));
        for (int64_t r = 0; r < m; r++)
            quantize_row_q8(xf + r * ks, a.nb, a.q + r * ks, a.d + r * a.nb, a.c + r * a.nb);
    }
    int64_t blocks = (n + 3) / 4, ldw = qtype == Q_I4_BLK ? kp / 2 : k;
    int64_t lds = qtype == Q_I4_BLK ? kp / block : 1;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t b = 0; b < blocks; b++) {
        int64_t n0 = b * 4, rows = n - n0 < 4 ? n - n0 : 4;
        for (int64_t r = 0; r < m; r++) {
            float s[4];
            if (qtype == Q_I4_BLK && act8) {
                dot4_i4_q8((const uint8_t *)qw + n0 * ldw, ldw, (const uint16_t *)scale + n0 * lds,
                           lds, block / 32, rows, a.q + r * ks, a.d + r * a.nb, a.c + r * a.nb,
                           a.nb, s);
            } else if (qtype == Q_I4_BLK) {
                dot4_i4((const uint8_t *)qw + n0 * ldw, ldw, (const uint16_t *)scale + n0 * lds,
                        lds, rows, xf + r * ks, kp, block, s);
            } else {
                if (act8)
                    dot4_i8_q8((const int8_t *)qw + n0 * k, k, rows, a.q + r * ks,
                               a.d + r * a.nb, k, s);
                else
                    dot4_i8((const int8_t *)qw + n0 * k, k, rows, xf + r * ks, k, s);
                for (int64_t j = 0; j < rows; j++) s[j] *= ((const float *)scale)[n0 + j];
            }
            for (int64_t j = 0; j < rows; j++) {
                float v = s[j] + (bias ? load(bias, n0 + j, dt) : 0.0f);
                if (residual) v = load(residual, r * n + n0 + j, dt) + rnd(v, dt);
                store(y, r * n + n0 + j, v, dt);
            }
        }
    }
    free(a.q), free(a.d), free(a.c);
    free(xf);
}
