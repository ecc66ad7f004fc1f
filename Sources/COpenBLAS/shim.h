// The one C boundary of Strata: OpenBLAS's CBLAS (plus its thread and config
// entry points) and LAPACKE. Only StrataTensor/BLAS.swift imports this module.
#ifndef STRATA_COPENBLAS_SHIM_H
#define STRATA_COPENBLAS_SHIM_H
#include <cblas.h>
#include <lapacke.h>
#endif
