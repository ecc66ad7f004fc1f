// See include/strata_alloc_counter.h. glibc only (its __libc_* allocator entry points).
#include "strata_alloc_counter.h"
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define STRATA_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STRATA_SANITIZED 1
#endif

// Sanitizers intercept malloc themselves: under them the counter stands aside (available() == 0).
#if (defined(__GLIBC__) || defined(__linux__)) && !defined(STRATA_SANITIZED)
int strata_alloc_counter_available(void) { return 1; }
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static __thread int counting;
static __thread long counted;

void strata_alloc_count_begin(void) { counted = 0; counting = 1; }
long strata_alloc_count_end(void) { counting = 0; return counted; }

void *malloc(size_t n) { if (counting) counted++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { if (counting) counted++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { if (counting) counted++; return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t align, size_t n) { if (counting) counted++; return __libc_memalign(align, n); }
void *aligned_alloc(size_t align, size_t n) { if (counting) counted++; return __libc_memalign(align, n); }
int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1)) != 0) return EINVAL;
    if (counting) counted++;
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
#else
int strata_alloc_counter_available(void) { return 0; }
void strata_alloc_count_begin(void) {}
long strata_alloc_count_end(void) { return -1; }
#endif
