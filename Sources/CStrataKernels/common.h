// What the kernel files share (not part of the module's interface: include/ holds that): the
// platform test, the inline attribute, the portable f16 and bf16 widening, the load of an f16
// from bytes, and Q4_K's packed scales.
#ifndef STRATA_KERNELS_COMMON_H
#define STRATA_KERNELS_COMMON_H
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#define STRATA_X86 1
#include <immintrin.h>
#else
#define STRATA_X86 0
#endif

#define INLINE static inline __attribute__((always_inline))

/// Exact f16 bits -> f32 (zero, subnormals, Inf, NaN).
INLINE float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else if (exp == 0) {
        float v = (float)mant * 5.960464477539063e-08f;  // mant * 2^-24, exact
        memcpy(&bits, &v, 4);
        bits |= sign;
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

INLINE float bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/// The little-endian f16 at p (any alignment) as f32.
INLINE float f16_at(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return f16_to_f32(h);
}

/// Q4_K's 6-bit scale and min of sub-block j from the 12 packed bytes (ggml's get_scale_min_k4).
INLINE void k4_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}
#endif
