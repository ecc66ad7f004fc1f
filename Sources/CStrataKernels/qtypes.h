// The weight types' traits table (ggml's type_traits): one row per STRATA_W_* type, defined in
// qtypes.c from each type's own file. Every question the kernels ask of a type (its block, how
// a block decodes, which kernels run it) is answered here; there is no default: a type without
// a row fails qtypes.c's static assertion (the last type) or QuantKernelTests (a row of zeros).
#ifndef STRATA_QTYPES_H
#define STRATA_QTYPES_H
#include <stdint.h>
#include "strata_kernels.h"

/// nb blocks at w into one byte code per weight, c[nb * elements] (|c| <= 127), and per run of 32
/// weights a scale d and an offset m (nb * elements / 32 of each): weight i = d[i / 32] * c[i] +
/// m[i / 32], formed in f32 as a multiplication then an addition, which is the type's
/// dequantization to the bit (gguf-py's). What the generic kernels read (quant_generic.c).
typedef void (*strata_unpack_fn)(const uint8_t *w, long nb, int8_t *c, float *d, float *m);

enum { STRATA_LUT_F16 = 1, STRATA_LUT_E8M0 = 2 };

typedef struct {
    /// ggml's name ("q5_k").
    const char *name;
    /// Weights and bytes per block (1 and the element size for the float types).
    long elements, bytes;
    /// One block at b into `elements` floats: the definition (gguf-py's dequantize). NULL for
    /// the float types.
    void (*dequant)(const uint8_t *b, float *y);
    /// The generic kernels' decoding (NULL for the specialized types), and the same on AVX2
    /// (bit-identical to it; NULL: the portable one runs).
    strata_unpack_fn unpack, unpack_avx2;
    /// 1 when some offset m can be nonzero (the generic 8-bit kernel adds m times the sum of x).
    int has_offset;
    /// 1 when the codes are in [0, 63]: the generic 8-bit kernel multiplies them as unsigned bytes
    /// (vpmaddubsw as is); 0: signed, |c| against q signed by c.
    int unsigned_codes;
    /// 1 when quant.c and quant_q8.c hold kernels written for this type.
    int specialized;
    /// A codebook type of 32-weight blocks (IQ4_NL, MXFP4): its sixteen code values, the bytes
    /// before the block's 16 bytes of nibbles (low nibble: weight i, high: i + 16) and the
    /// block's scale. The AVX2 8-bit kernel then decodes each block in registers (a table
    /// shuffle) instead of through `unpack`, with the same integers and float operations. NULL:
    /// through `unpack`.
    const int8_t *lut;
    int lut_skip;
    /// How the block's first bytes hold its scale: STRATA_LUT_F16 (IQ4_NL) or STRATA_LUT_E8M0
    /// (MXFP4's exponent, 2^(e - 128)). Data, not a function: the kernel decodes it inline.
    int lut_scale;
    /// The activations it pairs with on the 8-bit path: x quantized to int8 per this many values
    /// (ggml's vec_dot_type: Q8_0's 32 or Q8_K's 256; 32 for the generic kernels).
    long x_block;
} strata_qtype;

extern const strata_qtype strata_qtypes[STRATA_W_COUNT];

// Each type's file defines these (referenced by the table).
void strata_dequant_q8_0(const uint8_t *b, float *y);
void strata_dequant_q4_0(const uint8_t *b, float *y);
void strata_dequant_q4_k(const uint8_t *b, float *y);
void strata_dequant_q6_k(const uint8_t *b, float *y);
void strata_dequant_q4_1(const uint8_t *b, float *y);
void strata_unpack_q4_1(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_unpack_q4_1_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_dequant_q5_0(const uint8_t *b, float *y);
void strata_unpack_q5_0(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_unpack_q5_0_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_dequant_q5_k(const uint8_t *b, float *y);
void strata_unpack_q5_k(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_unpack_q5_k_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_dequant_iq4_nl(const uint8_t *b, float *y);
void strata_unpack_iq4_nl(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_unpack_iq4_nl_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_dequant_iq4_xs(const uint8_t *b, float *y);
void strata_unpack_iq4_xs(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_unpack_iq4_xs_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_dequant_mxfp4(const uint8_t *b, float *y);
void strata_unpack_mxfp4(const uint8_t *w, long nb, int8_t *c, float *d, float *m);
void strata_unpack_mxfp4_avx2(const uint8_t *w, long nb, int8_t *c, float *d, float *m);

/// IQ4_NL's and IQ4_XS's sixteen code values (ggml's kvalues_iq4nl), iq4_nl.c; MXFP4's (ggml's
/// kvalues_mxfp4), mxfp4.c; their blocks' scales.
extern const int8_t strata_iq4_values[16];
extern const int8_t strata_mxfp4_values[16];

/// The exact (f32-activation) linear of any quantized type on the portable path, block by block
/// through its `dequant` (quant.c).
void strata_qrows_portable(const strata_linear_args *a, long j0, long j1);

/// The generic kernels (quant_generic.c) for a non-specialized type: f32 activations on `isa`'s
/// output rows [j0, j1), and the 8-bit path's whole linear (`chunks` chunks of `per` rows on the
/// pool) and its rows on `isa`.
void strata_qgeneric_rows_isa(int isa, const strata_linear_args *a, long j0, long j1);
void strata_qgeneric_q8(const strata_linear_args *a, long chunks, long per);
void strata_qgeneric_q8_rows_isa(int isa, const strata_linear_args *a, long j0, long j1);
#endif
