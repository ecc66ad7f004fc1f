// See include/strata_sys.h.
#define _GNU_SOURCE
#include "strata_sys.h"
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

int strata_sys_o_direct(void) {
#ifdef O_DIRECT
    return O_DIRECT;
#else
    return 0;
#endif
}

#define SLOTS 256
#define PATH_MAX_LEN 512

typedef struct {
    _Atomic(const char *) base;   // NULL: free
    size_t length;
    char path[PATH_MAX_LEN];
} mapping_slot;

static mapping_slot slots[SLOTS];
static atomic_int installed;
static atomic_flag registering = ATOMIC_FLAG_INIT;

static void write_str(const char *s) {
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

static void on_sigbus(int sig, siginfo_t *info, void *ctx) {
    (void)sig; (void)ctx;
    const char *addr = (const char *)info->si_addr;
    for (int i = 0; i < SLOTS; i++) {
        const char *b = atomic_load(&slots[i].base);
        if (b != NULL && addr >= b && addr < b + slots[i].length) {
            write_str("\nstrata: ");
            write_str(slots[i].path);
            write_str(" shrank while it was mapped (truncated or replaced during the run): its data is gone; stopping\n");
            _exit(74);
        }
    }
    write_str("\nstrata: bus error outside any mapped model file; stopping\n");
    _exit(74);
}

void strata_sys_register_mapping(const void *base, size_t length, const char *path) {
    if (atomic_exchange(&installed, 1) == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sigbus;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, NULL);
    }
    while (atomic_flag_test_and_set(&registering)) { }   // registrations are rare: spin
    for (int i = 0; i < SLOTS; i++) {
        if (atomic_load(&slots[i].base) == NULL) {
            slots[i].length = length;
            strncpy(slots[i].path, path, PATH_MAX_LEN - 1);
            slots[i].path[PATH_MAX_LEN - 1] = 0;
            atomic_store(&slots[i].base, (const char *)base);   // published last: the handler sees a whole slot
            break;
        }
    }
    atomic_flag_clear(&registering);
}

void strata_sys_unregister_mapping(const void *base) {
    for (int i = 0; i < SLOTS; i++) {
        const char *b = atomic_load(&slots[i].base);
        if (b == (const char *)base) { atomic_store(&slots[i].base, NULL); return; }
    }
}
