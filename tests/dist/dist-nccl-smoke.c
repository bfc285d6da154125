/* dist-nccl-smoke.c: the NCCL path of dist/dist.h on a real GPU: a one-rank communicator (no launcher: the MPI
 * broadcast of the unique id is skipped), an in-place all-reduce of 3M floats ordered after the work queued on
 * the default stream, and the polled wait. With one rank the sum is the vector itself, so the values must come
 * back unchanged; the test exercises communicator creation, stream ordering, completion and teardown. The device
 * memory is the cuda-fp32 table's (the CUDA plugin, model/cuda_plugin.h, which also holds NCCL).
 * Skips (77) without a CUDA device (CI builds it with nvcc and runs it on no GPU). */
#include "../tap.h"

#include "dist/dist.h"
#include "core/error.h"
#include "model/cuda_plugin.h"

#include <stdlib.h>

int main(void)
{
    if (scp_cuda_plugin_devices() < 1) {
        printf("1..0 # SKIP no CUDA device\n");
        return 77;
    }
    const scp_backend *be = scp_cuda_plugin_backend("cuda-fp32");
    if (!tap_ok(be != NULL, "the cuda-fp32 table: %s", be ? "found" : scp_last_error())) return tap_done();
    scp_dist d;
    scp_dist_single(&d);
    d.timeout = 60;
    int rc = scp_dist_nccl_init(&d);
    if (!tap_ok(rc == 0, "one-rank NCCL communicator on device 0: %s", rc == 0 ? "created" : scp_last_error()))
        return tap_done();
    const int64_t n = 3 * 1000 * 1000 + 17;
    float *h = malloc(sizeof *h * (size_t)n);
    for (int64_t i = 0; i < n; i++) h[i] = (float)(i % 1000) * 0.5f - 7.0f;
    float *dev = be->alloc(sizeof *h * (size_t)n);
    be->upload(dev, h, sizeof *h * (size_t)n);
    tap_ok(scp_dist_nccl_allreduce_f32(&d, dev, n, NULL) == 0, "ncclAllReduce of %lld floats queued", (long long)n);
    tap_ok(scp_dist_nccl_wait(&d) == 0, "all-reduce completed");
    float *back = malloc(sizeof *back * (size_t)n);
    be->download(back, dev, sizeof *h * (size_t)n);
    int same = 1;
    for (int64_t i = 0; i < n; i++) same &= back[i] == h[i];
    tap_ok(same, "one rank: the sum is the vector itself, bit for bit");
    scp_dist_nccl_free(&d);
    tap_ok(d.nccl == NULL, "communicator destroyed");
    be->free(dev);
    free(h);
    free(back);
    return tap_done();
}
