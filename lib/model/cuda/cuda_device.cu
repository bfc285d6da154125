// cuda_device.cu: device discovery through the CUDA runtime.
#include "model/cuda/cuda_device.h"

#include <cstdio>
#include <cuda_runtime.h>

extern "C" int scp_cuda_device_count(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();  // clear the sticky "no driver" error
        return 0;
    }
    return n;
}

extern "C" int scp_cuda_device_describe(int i, char *buf, int n)
{
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, i) != cudaSuccess) return -1;
    snprintf(buf, (size_t)n, "%s, sm_%d%d, %.1f GiB", p.name, p.major, p.minor, p.totalGlobalMem / 1073741824.0);
    return 0;
}
