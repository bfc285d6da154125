/* cpu/blas.h: the CBLAS the CPU backend's matmuls run on (matmul.c), where configure found one (HAVE_CBLAS).
 *
 * It is loaded on first use rather than linked, for two reasons. OpenBLAS starts a pool of threads, each with a
 * working buffer of its own, as soon as it is loaded (before main), reading OPENBLAS_NUM_THREADS only then; the
 * matmuls split their work over OpenMP threads that each call a one-threaded sgemm, so the pool would only compete
 * with them for the cores, and under an address-space limit (ulimit -v) a pool thread whose buffer does not fit
 * retries its allocation forever: the program hangs, at the latest when exit() waits for that thread. Loaded here,
 * with OPENBLAS_NUM_THREADS=1 set first, it starts no thread. And a program that runs no matmul never maps it.
 *
 * Every thread that calls sgemm needs such a buffer too (OpenBLAS: 128 MiB of address space, allocated on the
 * thread's first call and kept), and its allocation retries forever as well. scp_cpu_blas_ready therefore makes
 * them up front, for every OpenMP thread, after checking that they fit: a limit that is too tight ends the program
 * with an out-of-memory message instead of a hang. */
#ifndef SCP_CPU_BLAS_H
#define SCP_CPU_BLAS_H

#include "config.h"

#ifdef HAVE_CBLAS
/* OpenBLAS's cblas.h includes <complex.h>, whose macro I would rename parameters: after everything else. */
#include <cblas.h>

/* Load the BLAS (first call; dies with a message when it cannot be loaded), start `threads` OpenMP threads and
 * reserve the BLAS's buffer of each; dies with an out-of-memory message when the address space left cannot hold
 * them. Cheap once done for as many threads. Called outside parallel regions, before each product. */
void scp_cpu_blas_ready(int threads);

/* cblas_sgemm of the loaded BLAS (set by scp_cpu_blas_ready). */
extern __typeof__(cblas_sgemm) *scp_cpu_sgemm;
#endif

#endif
