/* plugin.c: what the CUDA plugin offers (model/cuda_plugin.h): the two tables by name and the devices. The entry
 * point that hands this out is in plugin_host.c, so that a program may link this file and the kernels without it
 * (tests/gpu/emulated.sh). */
#include "model/cuda_plugin.h"
#include "model/cuda/backend_cuda.h"
#include "model/cuda/cuda_device.h"

const scp_cuda_plugin scp_cuda_plugin_functions = {
    .backend_named = scp_cuda_backend_named,
    .device_count = scp_cuda_device_count,
    .device_describe = scp_cuda_device_describe,
};
