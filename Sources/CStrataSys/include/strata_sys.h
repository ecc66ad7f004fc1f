// CStrataSys: the few libc constants Swift's Glibc module does not expose, read from the
// platform's own headers. Only StrataTensor/FileIO.swift imports it.
#ifndef STRATA_SYS_H
#define STRATA_SYS_H
/// O_DIRECT from <fcntl.h> (0 where the platform has none).
int strata_sys_o_direct(void);
#endif
