// CStrataSys: the few libc pieces Swift's Glibc module does not expose, read from the
// platform's own headers. Only StrataTensor/FileIO.swift imports it.
#ifndef STRATA_SYS_H
#define STRATA_SYS_H
#include <stddef.h>
/// O_DIRECT from <fcntl.h> (0 where the platform has none).
int strata_sys_o_direct(void);

/// Mapped files a SIGBUS may hit: a file truncated while it is mapped makes the kernel raise
/// SIGBUS on the next read of the lost pages. The handler (installed once, at the first
/// registration) finds the mapping the fault address is in and exits with status 74 (EX_IOERR)
/// after writing "strata: PATH shrank while it was mapped (...)" to standard error, instead
/// of a raw bus error. Slots are fixed (no allocation in the handler); extra mappings are not
/// named.
void strata_sys_register_mapping(const void *base, size_t length, const char *path);
void strata_sys_unregister_mapping(const void *base);
#endif
