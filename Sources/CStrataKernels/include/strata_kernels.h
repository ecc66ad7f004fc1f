// CStrataKernels: Strata's hand-written SIMD kernels, the one C module besides the OpenBLAS
// system library. Only StrataTensor/Kernels.swift imports it.
//
// Every kernel exists in three instruction-set paths, compiled into this module
// with __attribute__((target(...))) (no compiler flags needed, none set by the package):
//   STRATA_ISA_AVX512   AVX-512 F/BW/VL (+F16C, FMA): 16-lane, masked tails
//   STRATA_ISA_AVX2     AVX2 + FMA + F16C: 8-lane, scalar tails
//   STRATA_ISA_PORTABLE plain C (any CPU)
// The best path the CPU supports is chosen once (__builtin_cpu_supports); STRATA_KERNELS=
// portable|avx2|avx512 in the environment, or strata_kernels_set_isa, forces one (tests and
// benchmarks run every path this machine has).
#ifndef STRATA_KERNELS_H
#define STRATA_KERNELS_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { STRATA_ISA_PORTABLE = 0, STRATA_ISA_AVX2 = 1, STRATA_ISA_AVX512 = 2 };

/// Weight storage types of the linear kernels (activations and accumulation are always f32).
/// The quantized ones (from STRATA_W_Q8_0 on) are ggml's block layouts: a row of k weights is
/// k / (the type's block) blocks; k must be a multiple of the block. Each type is one row of the
/// traits table (qtypes.h, qtypes.c): its block, its decoding and which kernels it runs.
enum {
    STRATA_W_F32 = 0, STRATA_W_F16 = 1, STRATA_W_BF16 = 2,
    STRATA_W_Q8_0 = 3, STRATA_W_Q4_0 = 4, STRATA_W_Q4_K = 5, STRATA_W_Q6_K = 6,
    STRATA_W_Q4_1 = 7, STRATA_W_Q5_0 = 8, STRATA_W_Q5_K = 9, STRATA_W_IQ4_NL = 10, STRATA_W_IQ4_XS = 11, STRATA_W_MXFP4 = 12,
    STRATA_W_COUNT = 13
};

/// Weights per block of `wtype` (1 for f32/f16/bf16) and bytes per block (the element size for
/// those); 0 for a number that is no type.
long strata_qblock_elements(int wtype);
long strata_qblock_bytes(int wtype);
/// 1 when `wtype` runs kernels written for it (Q8_0, Q4_0, Q4_K, Q6_K); 0 when it runs the
/// generic ones (its codes unpacked to bytes per weight row, quant_generic.c).
int strata_qtype_specialized(int wtype);
/// The 8-bit path quantizes x per this many values for weights of `wtype` (32 or 256).
long strata_qtype_x_block(int wtype);
/// ggml's name of `wtype`, lowercased ("q5_k"; Swift's DType.rawValue), or NULL for a number that is no type.
const char *strata_qtype_name(int wtype);
/// `count` weights (a multiple of the block) of quantized `wtype` at `src` into f32 `dst`.
void strata_dequantize(int wtype, const void *src, float *dst, long count);


/// 1 when this CPU can run `isa`.
int strata_isa_supported(int isa);
/// The best path this CPU supports.
int strata_isa_best(void);
/// The path in use (the best one, unless forced).
int strata_kernels_isa(void);
/// Forces a path; returns 0, or -1 (and changes nothing) when the CPU cannot run it.
int strata_kernels_set_isa(int isa);

/// A linear layer with few rows: y[r, j] (+)= sum_i x[r, i] * W[j, i] for r < m, j < n.
/// W is [n, k] row-major (the HF [out, in] layout) in `wtype` storage; x is [m, k] with row
/// stride ldx (floats); y is [m, n] with row stride ldy. Each weight byte is read once for all
/// m rows: the kernel walks W four rows at a time and multiplies each block of rows against
/// every x row while it is in L1.
typedef struct {
    const void *w;
    int wtype;
    int accumulate;
    long n, k;
    const float *x;
    long ldx, m;
    float *y;
    long ldy;
    /// Quantized weights: STRATA_ACT_F32 or STRATA_ACT_Q8, or -1 for the process-wide mode.
    int act;
} strata_linear_args;

/// The quantized linear's output rows [j0, j1) on `isa` (quant.c; the AVX2 path runs the portable
/// code for now); strata_linear_rows_isa calls it for quantized weights.
void strata_qlinear_rows_isa(int isa, const strata_linear_args *a, long j0, long j1);

/// Activations of the quantized linear: f32 (exact: every weight dequantized to f32, quant.c) or
/// quantized to 8 bits per weight block with integer dot products (llama.cpp's arithmetic,
/// quant_q8.c; AVX-512 VNNI, else a portable definition). Default f32; the environment variable
/// STRATA_ACTIVATIONS=q8|f32 or strata_set_activations sets it.
enum { STRATA_ACT_F32 = 0, STRATA_ACT_Q8 = 1 };
int strata_activations(void);
void strata_set_activations(int mode);
/// Most x rows the 8-bit path takes in one call.
#define STRATA_Q8_MAX_ROWS 16
/// 1 when this CPU runs the 8-bit path's VNNI kernel.
/// Whether the 8-bit-activation path runs a SIMD kernel on the path in use (AVX-512 VNNI, or
/// AVX2's vpmaddubsw on the AVX2 path and on AVX-512 without VNNI), not the portable definition.
int strata_q8_fast_supported(void);
int strata_q8_vnni_supported(void);
/// The 8-bit products' peak on path `isa`: multiply-adds per second of the pool's threads
/// together, each running the AVX2 kernel's inner instructions (vpmaddubsw, vpmaddwd, vpaddd) on
/// six independent accumulators from registers for about `seconds`; 0 where the path runs no
/// SIMD 8-bit kernel (portable) or on AVX-512 VNNI (not measured: no host to run it).
double strata_q8_peak(int isa, double seconds);
/// The 8-bit path's output rows [j0, j1) on `isa` (avx512 with VNNI; else the portable definition).
void strata_qlinear_q8_rows_isa(int isa, const strata_linear_args *a, long j0, long j1);
/// The 8-bit path's whole linear, `chunks` chunks of `per` rows on the pool (the VNNI kernel when
/// it takes the arguments, else the portable definition).
void strata_qlinear_q8(const strata_linear_args *a, long chunks, long per);

/// 1 when this CPU runs the bf16 GEMM (AVX-512 BF16).
int strata_bf16_gemm_supported(void);
/// The linear for many rows with bf16 products: x rounded to bf16; W used in place (bf16),
/// rounded from f16, or dequantized band by band (`band` rows, through `scratch` of band * k
/// floats) and rounded to bf16; vdpbf16ps tiles over the pool. Returns -1 (nothing done) when
/// the CPU or the arguments do not allow it (f32 weights, K not a multiple of 32).
int strata_qlinear_bf16_gemm(const strata_linear_args *a, float *scratch, long band);

/// The output rows [j0, j1) of the linear on the path in use, on the calling thread.
void strata_linear_rows(const strata_linear_args *a, long j0, long j1);
/// The same on a given path (tests); the path must be supported.
void strata_linear_rows_isa(int isa, const strata_linear_args *a, long j0, long j1);
/// The whole linear, its output rows split across the pool's threads.
void strata_linear(const strata_linear_args *a);
/// Up to STRATA_LINEAR_GROUP linears over the same x (same x, ldx, m, k; e.g. a layer's q, k and
/// v projections) as one job on the pool: their chunks are numbered member after member in one job, so
/// the threads go from one matrix to the next without waiting at each end, and the 8-bit path
/// quantizes x once. Falls back to one strata_linear per member when they do not share x or,
/// for the 8-bit path, the weight type.
#define STRATA_LINEAR_GROUP 4
void strata_linear_group(const strata_linear_args *a, int count);
/// Linears each with its own x, rows and shape (a mixture's experts: every chosen expert's gate and
/// up over its own rows, then every expert's down) as one job on the pool: each member's output rows
/// in one chunk or a few, sized so the threads get about four chunks each, so k small matrices
/// cost one wait instead of k and each thread runs whole experts' rows. Every member must be one
/// the few-row kernels take (rows within their limit); members past STRATA_LINEAR_BATCH run as
/// further jobs. The same arithmetic per output as strata_linear (each output row computed whole by
/// one thread, the 8-bit path quantizing x as it does).
#define STRATA_LINEAR_BATCH 64
void strata_linear_batch(const strata_linear_args *a, int count);

/// Sum of the floats of [p, p + count) read with `isa`'s widest loads (8 independent
/// accumulators), prefetching `prefetch_bytes` ahead when that is > 0; the read kernel behind
/// the memory-bandwidth figure.
float strata_read_sum(int isa, const float *p, long count, long prefetch_bytes);
/// x[0..n) <- softmax(x) in place (max subtracted; e^x as Ops.fastExp): AVX-512 when that is the
/// path in use, else portable C.
void strata_softmax_row(float *x, long n);
/// The same on a given path (tests): avx512 where supported, every other path portable C.
void strata_softmax_row_isa(int isa, float *x, long n);

/// One query head against n cached key rows (attention.c): scores[j] = scale * sum_i q[i] k[j*ldk + i],
/// i < d, j < n.
void strata_attn_scores(const float *q, const float *k, long ldk, long n, long d, float scale, float *scores);
/// out[i] (+)= sum_j p[j] v[j*ldv + i] for i < d (accumulate 0: out is overwritten; n = 0 gives zeros).
void strata_attn_values(const float *p, const float *v, long ldv, long n, long d, float *out, int accumulate);
/// The same two on a given path (tests); an unsupported path runs portable C.
void strata_attn_scores_isa(int isa, const float *q, const float *k, long ldk, long n, long d, float scale, float *scores);
void strata_attn_values_isa(int isa, const float *p, const float *v, long ldv, long n, long d, float *out, int accumulate);
/// Decode attention of one query row for the `group` query heads that share one kv head (q and out
/// `[group, d]`, head h at + h * d), over keys [first, n) of that kv head. K and V are stored as
/// `type` (STRATA_W_F32, _F16, _BF16 or _Q8_0: d / 32 blocks per row, d a multiple of 32), a row of
/// d values per key: key j's K row at k + j * ld bytes without a table; through the paged pool's
/// table at k + table[j / block] * block_stride + (j % block) * ld (a kv head's rows of one block
/// lie together, ld apart). V rows likewise from v, ldv apart. Keys are walked in tiles widened (f32: copied)
/// into scratch that stays in L1 while every head of the group reads it (the K and V bytes come
/// from memory once per group, not once per head), with an online softmax: per head a running
/// max and sum, the output rescaled when the max grows.
/// softcap > 0: scores become softcap * tanh(score / softcap). first >= n gives zeros.
/// sinks (gpt-oss; NULL: none): per query head of the group a logit that joins the softmax's
/// denominator and attends to nothing (the weights of the keys sum to less than 1).
typedef struct {
    const float *q;
    const void *k, *v;
    long ld, ldv;
    int type;
    const long *table;
    long block, block_stride;
    long first, n;
    long group, d;
    float scale, softcap;
    float *out;
    const float *sinks;
} strata_attn_decode_args;
void strata_attn_decode(const strata_attn_decode_args *a);
/// The same on a given path (tests); an unsupported path runs portable C.
void strata_attn_decode_isa(int isa, const strata_attn_decode_args *a);
/// Keys [first, n) of one kv head stored as `type`, addressed from src as strata_attn_decode_args
/// addresses them from k, widened to f32 rows of d floats at dst (key j at dst + (j - first) * d):
/// what the prompt's attention reads with sgemm.
void strata_kv_gather(int isa, int type, const void *src, long ld, const long *table, long block, long block_stride,
                      long first, long n, long d, float *dst);

// ---- the worker pool -------------------------------------------------------------------
// Threads that stay ready between calls: after a job a worker spins (pause, yielding the core
// every 256 pauses) for `spin_us` microseconds, then sleeps on a condition variable. A job is split into `chunks`
// pieces, one contiguous range of them per thread (a thread whose range is empty steals from
// the others'); the call returns when all are done.
// A call from inside a job, or while another thread's job runs, runs its chunks inline.

typedef void (*strata_task_fn)(void *ctx, long chunk);
/// Total threads of a job, the caller included (1 = no workers). Starts workers as needed.
void strata_pool_set_threads(int n);
int strata_pool_threads(void);
/// Microseconds a worker spins after a job before it sleeps (default 300).
void strata_pool_set_spin_us(long us);
void strata_pool_run(strata_task_fn fn, void *ctx, long chunks);
/// Jobs whose workers were asleep (had to be woken by the condition variable), since start.
long strata_pool_sleep_wakeups(void);

#ifdef __cplusplus
}
#endif
#endif
