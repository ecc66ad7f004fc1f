// CStrataAllocCounter: counts heap allocations made by one thread, for the test that a decode
// step allocates nothing. Linked into the test executable only (not a product): it defines
// malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign over glibc's __libc_*
// entry points, so every allocation of the process (the Swift runtime's included) passes
// through it; only the calling thread's are counted, between begin and end.
#ifndef STRATA_ALLOC_COUNTER_H
#define STRATA_ALLOC_COUNTER_H
/// 1 when allocations are counted; 0 under a sanitizer (which intercepts malloc itself).
int strata_alloc_counter_available(void);
/// Starts counting this thread's allocations from zero.
void strata_alloc_count_begin(void);
/// Stops counting; returns how many allocations this thread made since begin.
long strata_alloc_count_end(void);
#endif
