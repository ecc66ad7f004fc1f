// Open MPI's C interface for StrataMPI (Debian's libopenmpi-dev, found through pkg-config
// `ompi-c`). MPI's handles and constants are macros Swift cannot import: these functions name them.
#ifndef STRATA_CMPI_SHIM_H
#define STRATA_CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm strata_mpi_comm_world(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype strata_mpi_byte(void) { return MPI_BYTE; }
static inline MPI_Datatype strata_mpi_double(void) { return MPI_DOUBLE; }
static inline MPI_Errhandler strata_mpi_errors_return(void) { return MPI_ERRORS_RETURN; }
static inline MPI_Status *strata_mpi_status_ignore(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Request strata_mpi_request_null(void) { return MPI_REQUEST_NULL; }
static inline int strata_mpi_thread_serialized(void) { return MPI_THREAD_SERIALIZED; }
static inline int strata_mpi_max_processor_name(void) { return MPI_MAX_PROCESSOR_NAME; }
static inline int strata_mpi_max_error_string(void) { return MPI_MAX_ERROR_STRING; }
static inline int strata_mpi_success(void) { return MPI_SUCCESS; }
static inline int strata_mpi_any_source(void) { return MPI_ANY_SOURCE; }

#endif
