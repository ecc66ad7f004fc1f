// What every kernel file stands on (and none of them above it): which instruction-set path
// runs, the quantized linear's activations mode, per-thread scratch buffers, and the worker pool.
// kernels.c (the linear's dispatch) calls the quantized kernels; they and it call only this.
#define _GNU_SOURCE
#include "strata_kernels.h"
#include "common.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

// ---- the path ----------------------------------------------------------------------------

int strata_isa_supported(int isa) {
    switch (isa) {
    case STRATA_ISA_PORTABLE: return 1;
#if STRATA_X86
    case STRATA_ISA_AVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    case STRATA_ISA_AVX512:
        __builtin_cpu_init();
        return strata_isa_supported(STRATA_ISA_AVX2) && __builtin_cpu_supports("avx512f") &&
               __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
    default: return 0;
    }
}

int strata_isa_best(void) {
    if (strata_isa_supported(STRATA_ISA_AVX512)) return STRATA_ISA_AVX512;
    if (strata_isa_supported(STRATA_ISA_AVX2)) return STRATA_ISA_AVX2;
    return STRATA_ISA_PORTABLE;
}

static _Atomic int g_isa = -1;

int strata_kernels_isa(void) {
    int isa = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (isa >= 0) return isa;
    isa = strata_isa_best();
    const char *env = getenv("STRATA_KERNELS");
    if (env) {
        int want = -1;
        if (strcmp(env, "portable") == 0) want = STRATA_ISA_PORTABLE;
        else if (strcmp(env, "avx2") == 0) want = STRATA_ISA_AVX2;
        else if (strcmp(env, "avx512") == 0) want = STRATA_ISA_AVX512;
        if (want >= 0 && strata_isa_supported(want)) isa = want;
    }
    atomic_store_explicit(&g_isa, isa, memory_order_relaxed);
    return isa;
}

static _Atomic int g_act = -1;

int strata_activations(void) {
    int m = atomic_load_explicit(&g_act, memory_order_relaxed);
    if (m >= 0) return m;
    const char *env = getenv("STRATA_ACTIVATIONS");
    m = env && strcmp(env, "q8") == 0 ? STRATA_ACT_Q8 : STRATA_ACT_F32;
    atomic_store_explicit(&g_act, m, memory_order_relaxed);
    return m;
}

void strata_set_activations(int mode) { atomic_store_explicit(&g_act, mode == STRATA_ACT_Q8 ? 1 : 0, memory_order_relaxed); }

int strata_kernels_set_isa(int isa) {
    if (!strata_isa_supported(isa)) return -1;
    atomic_store_explicit(&g_isa, isa, memory_order_relaxed);
    return 0;
}

// ---- per-thread scratch buffers --------------------------------------------------------------

static pthread_key_t tls_keys[STRATA_TLS_SLOTS];
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static void tls_make_keys(void) {
    for (int i = 0; i < STRATA_TLS_SLOTS; i++) pthread_key_create(&tls_keys[i], free);
}

void *strata_tls_grow(strata_tls_buf *b, int slot, size_t bytes) {
    if (bytes <= b->cap) return b->p;
    pthread_once(&tls_once, tls_make_keys);
    free(b->p);
    b->p = NULL;
    b->cap = 0;
    void *m = NULL;
    if (posix_memalign(&m, 64, bytes) != 0) { pthread_setspecific(tls_keys[slot], NULL); return NULL; }
    b->p = m;
    b->cap = bytes;
    pthread_setspecific(tls_keys[slot], m);  // freed by the key's destructor when the thread ends
    return m;
}

// ---- the worker pool -----------------------------------------------------------------------
//
// A job's chunks are split into one contiguous range per thread (`ranges` of them, the job's
// threads); thread i claims from range i, front to back, and when it is empty steals from the
// front of the next ranges in turn. Each thread so walks adjacent chunks (adjacent output rows,
// adjacent weight bytes): its software prefetch runs on from one chunk into the next instead of
// every chunk starting a cold stream, and its claims touch a counter no other thread writes until
// it steals. One shared counter handing chunks out in turn cost Q4_K 2048-row linears 12% of
// their read speed against two halves (C harness over 512 MiB in 2048-row calls, 37 -> 42 GB/s).
//
// State: each range's counter is (generation << 32 | next chunk index); a worker may take a
// chunk only while the generation in it is the one it woke for, so a late worker can never run
// a chunk of the next job with the previous job's function. `done` counts finished chunks of
// the current job (each thread adds its count once, when it finds nothing left); the caller
// returns only when done == chunks, so the next job is published after every chunk of this one
// has run.

#define POOL_MAX 256

typedef struct {
    _Atomic uint64_t next;  // generation << 32 | next chunk index
    _Atomic long end;       // one past the range's last chunk
    char pad[64 - sizeof(uint64_t) - sizeof(long)];
} pool_range;

static struct {
    pthread_mutex_t start_mu;     // serializes pool_set_threads
    pthread_mutex_t run_mu;       // one job at a time (trylock: a second caller runs inline)
    pthread_mutex_t sleep_mu;
    pthread_cond_t sleep_cv;
    _Atomic(strata_task_fn) fn;
    _Atomic(void *) ctx;
    _Atomic int ranges;
    _Atomic long done;
    _Atomic uint32_t gen;
    _Atomic int sleepers;
    _Atomic long spin_ns;
    _Atomic long sleep_wakeups;
    int workers;                  // started worker threads
    _Atomic int wanted;           // threads per job, caller included
    pool_range range[POOL_MAX] __attribute__((aligned(64)));
} P = {
    .start_mu = PTHREAD_MUTEX_INITIALIZER,
    .run_mu = PTHREAD_MUTEX_INITIALIZER,
    .sleep_mu = PTHREAD_MUTEX_INITIALIZER,
    .sleep_cv = PTHREAD_COND_INITIALIZER,
    .spin_ns = 300000,
    .wanted = 1,
};

static _Thread_local int t_in_job = 0;

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000000000L + ts.tv_nsec;
}

INLINE void cpu_relax(void) {
#if STRATA_X86
    _mm_pause();
#endif
}

/// Claims and runs chunks of generation `g`, from range `self` first and then the others in turn,
/// until none is left; adds the chunks it ran to `done`.
static void run_chunks(uint32_t g, int self) {
    strata_task_fn fn = atomic_load_explicit(&P.fn, memory_order_acquire);
    void *ctx = atomic_load_explicit(&P.ctx, memory_order_acquire);
    const int ranges = atomic_load_explicit(&P.ranges, memory_order_acquire);
    long ran = 0;
    for (int step = 0; step < ranges; step++) {
        pool_range *R = &P.range[(self + step) % ranges];
        for (;;) {
            uint64_t v = atomic_load_explicit(&R->next, memory_order_acquire);
            if ((uint32_t)(v >> 32) != g) goto out;  // a newer job: this one is over
            if ((long)(v & 0xFFFFFFFFu) >= atomic_load_explicit(&R->end, memory_order_relaxed)) break;
            if (!atomic_compare_exchange_weak_explicit(&R->next, &v, v + 1, memory_order_acq_rel, memory_order_relaxed)) continue;
            fn(ctx, (long)(v & 0xFFFFFFFFu));
            ran++;
        }
    }
out:
    if (ran) atomic_fetch_add_explicit(&P.done, ran, memory_order_release);
}

static void *worker_main(void *arg) {
    const int index = (int)(long)arg;  // 1 ... workers
    t_in_job = 1;
    uint32_t seen = atomic_load_explicit(&P.gen, memory_order_acquire);
    for (;;) {
        uint32_t g = atomic_load_explicit(&P.gen, memory_order_acquire);
        if (g == seen) {
            long until = now_ns() + atomic_load_explicit(&P.spin_ns, memory_order_relaxed);
            int spins = 0;
            while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen) {
                cpu_relax();
                if (++spins == 256) {
                    // every 256 pauses: give the core to another runnable thread (OpenBLAS's
                    // workers during a GEMM) and check the clock
                    spins = 0;
                    sched_yield();
                    if (now_ns() > until) break;
                }
            }
            if (g == seen) {
                pthread_mutex_lock(&P.sleep_mu);
                atomic_fetch_add(&P.sleepers, 1);
                while ((g = atomic_load_explicit(&P.gen, memory_order_acquire)) == seen) pthread_cond_wait(&P.sleep_cv, &P.sleep_mu);
                atomic_fetch_sub(&P.sleepers, 1);
                pthread_mutex_unlock(&P.sleep_mu);
            }
        }
        seen = g;
        if (index < atomic_load_explicit(&P.wanted, memory_order_relaxed)) run_chunks(g, index);
    }
    return NULL;
}

void strata_pool_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > POOL_MAX) n = POOL_MAX;
    pthread_mutex_lock(&P.start_mu);
    while (P.workers < n - 1) {
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, worker_main, (void *)(long)(P.workers + 1)) != 0) {
            pthread_attr_destroy(&attr);
            break;  // fewer workers: jobs still complete (the caller runs what is left)
        }
        pthread_attr_destroy(&attr);
        P.workers++;
    }
    atomic_store(&P.wanted, n < P.workers + 1 ? n : P.workers + 1);
    pthread_mutex_unlock(&P.start_mu);
}

int strata_pool_threads(void) { return atomic_load(&P.wanted); }

void strata_pool_set_spin_us(long us) { atomic_store(&P.spin_ns, (us < 0 ? 0 : us) * 1000L); }

long strata_pool_sleep_wakeups(void) { return atomic_load(&P.sleep_wakeups); }

void strata_pool_run(strata_task_fn fn, void *ctx, long chunks) {
    if (chunks <= 0) return;
    if (chunks == 1 || t_in_job || atomic_load_explicit(&P.wanted, memory_order_relaxed) <= 1 ||
        pthread_mutex_trylock(&P.run_mu) != 0) {
        for (long c = 0; c < chunks; c++) fn(ctx, c);
        return;
    }
    uint32_t g = atomic_load_explicit(&P.gen, memory_order_relaxed) + 1;
    int ranges = atomic_load_explicit(&P.wanted, memory_order_relaxed);
    if (ranges > chunks) ranges = (int)chunks;
    // close the claim counters first (new generation, no chunk left), so a worker still holding
    // the previous generation cannot claim while the job's fields below are rewritten (ranges
    // past `ranges` keep their ends: every chunk of theirs was claimed before this call)
    for (int i = 0; i < ranges; i++)
        atomic_store_explicit(&P.range[i].next, ((uint64_t)g << 32) | 0xFFFFFFFFu, memory_order_seq_cst);
    atomic_store_explicit(&P.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&P.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&P.ranges, ranges, memory_order_relaxed);
    atomic_store_explicit(&P.done, 0, memory_order_relaxed);
    for (int i = 0; i < ranges; i++) {
        atomic_store_explicit(&P.range[i].end, chunks * (i + 1) / ranges, memory_order_relaxed);
        atomic_store_explicit(&P.range[i].next, ((uint64_t)g << 32) | (uint64_t)(chunks * i / ranges), memory_order_release);
    }
    atomic_store_explicit(&P.gen, g, memory_order_release);
    if (atomic_load(&P.sleepers) > 0) {
        atomic_fetch_add_explicit(&P.sleep_wakeups, 1, memory_order_relaxed);
        pthread_mutex_lock(&P.sleep_mu);
        pthread_cond_broadcast(&P.sleep_cv);
        pthread_mutex_unlock(&P.sleep_mu);
    }
    t_in_job = 1;
    run_chunks(g, 0);
    t_in_job = 0;
    while (atomic_load_explicit(&P.done, memory_order_acquire) < chunks) cpu_relax();
    pthread_mutex_unlock(&P.run_mu);
}
