// Q4_1 (ggml's block_q4_1): 32 weights in 20 bytes, f16 d, f16 m, u8 qs[16];
// w[i] = d * (qs[i] & 15) + m, w[i + 16] = d * (qs[i] >> 4) + m.
#include "strata_kernels.h"
#include "common.h"

void strata_dequant_q4_1(const uint8_t *b, float *y) {
    const float d = f16_at(b), m = f16_at(b + 2);
    const uint8_t *q = b + 4;
    for (int i = 0; i < 16; i++) {
        y[i] = d * (float)(q[i] & 15) + m;
        y[i + 16] = d * (float)(q[i] >> 4) + m;
    }
}

void strata_unpack_q4_1(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    for (long b = 0; b < nb; b++, w += 20, c += 32) {
        d[b] = f16_at(w);
        m[b] = f16_at(w + 2);
        for (int i = 0; i < 16; i++) { c[i] = (int8_t)(w[4 + i] & 15); c[i + 16] = (int8_t)(w[4 + i] >> 4); }
    }
}

#if STRATA_X86
__attribute__((target("avx2,fma,f16c"))) void strata_unpack_q4_1_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m) {
    const __m128i lo4 = _mm_set1_epi8(15);
    for (long b = 0; b < nb; b++, w += 20, c += 32) {
        d[b] = f16c_at(w);
        m[b] = f16c_at(w + 2);
        const __m128i q = _mm_loadu_si128((const __m128i *)(w + 4));
        _mm_storeu_si128((__m128i *)c, _mm_and_si128(q, lo4));
        _mm_storeu_si128((__m128i *)(c + 16), _mm_and_si128(_mm_srli_epi16(q, 4), lo4));
    }
}
#endif
