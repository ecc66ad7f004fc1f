// MXFP4 (ggml's block_mxfp4, OCP microscaling FP4): 32 weights in 17 bytes, u8 e (an E8M0
// exponent), u8 qs[16]; a nibble is an E2M1 value, held doubled as an integer code in
// {0, 1, 2, 3, 4, 6, 8, 12} with a sign bit, and the scale halved to match:
// d = 2^(e - 128) (ggml's e8m0_to_fp32_half; every e gives a finite power of two),
// w[i] = d * v[qs[i] & 15], w[i + 16] = d * v[qs[i] >> 4]. gpt-oss's experts are stored so.
#include "strata_kernels.h"
#include "common.h"

const int8_t strata_mxfp4_values[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};


void strata_dequant_mxfp4(const uint8_t *b, float *y) {
    const float d = strata_e8m0_half(b[0]);
    const uint8_t *q = b + 1;
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)strata_mxfp4_values[q[i] & 15];
        y[i + 16] = d * (float)strata_mxfp4_values[q[i] >> 4];
    }
}

void strata_unpack_mxfp4(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    for (long b = 0; b < nb; b++, w += 17, c += 32) {
        d[b] = strata_e8m0_half(w[0]);
        m[b] = 0;
        for (int i = 0; i < 16; i++) { c[i] = strata_mxfp4_values[w[1 + i] & 15]; c[i + 16] = strata_mxfp4_values[w[1 + i] >> 4]; }
    }
}

#if STRATA_X86
__attribute__((target("avx2,fma,f16c"))) void strata_unpack_mxfp4_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    const __m256i values = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)strata_mxfp4_values));
    const __m256i lo4 = _mm256_set1_epi8(15);
    for (long b = 0; b < nb; b++, w += 17, c += 32) {
        d[b] = strata_e8m0_half(w[0]);
        m[b] = 0;
        const __m128i q = _mm_loadu_si128((const __m128i *)(w + 1));
        const __m256i idx = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), lo4);
        _mm256_storeu_si256((__m256i *)c, _mm256_shuffle_epi8(values, idx));
    }
}
#endif
