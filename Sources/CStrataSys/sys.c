// See include/strata_sys.h.
#define _GNU_SOURCE
#include "strata_sys.h"
#include <fcntl.h>

int strata_sys_o_direct(void) {
#ifdef O_DIRECT
    return O_DIRECT;
#else
    return 0;
#endif
}
