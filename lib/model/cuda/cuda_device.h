/* cuda_device.h: what the CUDA runtime sees (used by --version and by tests/gpu to decide whether to skip). */
#ifndef SCP_CUDA_DEVICE_H
#define SCP_CUDA_DEVICE_H

#ifdef __cplusplus
extern "C" {
#endif

/* Number of usable CUDA devices; 0 when there is no driver or no GPU (never an error). */
int scp_cuda_device_count(void);
/* "NVIDIA H100 80GB HBM3, sm_90, 79.1 GiB" into buf; returns -1 if device i is absent. */
int scp_cuda_device_describe(int i, char *buf, int n);

#ifdef __cplusplus
}
#endif
#endif
