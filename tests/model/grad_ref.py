"""grad_ref.py: what the float64 PyTorch reference checks (grad-check.py, moe-grad-check.py) share: safetensors
read and written by hand (8 bytes of header length, a JSON header, the data), the HF building blocks of the
reference models, the norm-wise relative error, and the roundings of scp's bf16 storage."""
import json
import os
import struct
import subprocess

import numpy as np
import torch

DT = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def st_write(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dt = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32"}[a.dtype]
        b = a.tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name != "__metadata__":
            b, e = t["data_offsets"]
            out[name] = np.frombuffer(data[8 + n + b:8 + n + e], dtype=DT[t["dtype"]]).reshape(t["shape"])
    return out


def rms(x, w, eps):
    """HF's RMSNorm: x * rsqrt(mean(x^2) + eps) * w over the last axis."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    """HF's rotate_half: (a, b) -> (-b, a) on the two halves of the last axis."""
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def relerr(a, b):
    """Norm-wise relative error |a - b| / |b|."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


class RoundStored(torch.autograd.Function):
    """A value scp stores in bf16: rounded to bf16 going forward, and its gradient (also stored) going back."""

    @staticmethod
    def forward(ctx, x):
        return x.to(torch.bfloat16).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        return g.to(torch.bfloat16).to(g.dtype)


def storage_rounding(bf16):
    """The rounding a reference model applies where scp stores an activation: RoundStored for bf16 storage, none
    for fp32."""
    return RoundStored.apply if bf16 else (lambda x: x)


def bf16_weights(P):
    """The bf16 compute copy of each weight, as a bf16 backend's kernels read them; the gradient reaches the fp32
    master unrounded."""
    return {n: p + (p.detach().to(torch.bfloat16).to(p.dtype) - p.detach()) for n, p in P.items()}


def skip_without_gpu(backends, helper):
    """Skip the whole test (77) when one of `backends` is CUDA and the backend-ops beside `helper` (in
    tests/model/ of its build directory) sees no device."""
    if not any(b.startswith("cuda") for b in backends):
        return
    try:
        r = subprocess.run([os.path.join(os.path.dirname(helper), "backend-ops"), "--devices"], capture_output=True)
        n = int(r.stdout or 0)
    except (OSError, ValueError):
        n = 0
    if n == 0:
        import testlib
        testlib.skip_all("no CUDA device for %s" % ",".join(backends))


def selected(cases):
    """(index, case) of the cases to run: all of them, or those whose indices SCP_GRAD_CASES lists ("2,3,4"), for a
    caller that runs the models on slow tables (tests/gpu/emulated.sh) and keeps the cases its other checks do not
    cover."""
    pick = os.environ.get("SCP_GRAD_CASES")
    if not pick:
        return list(enumerate(cases))
    want = {int(x) for x in pick.split(",")}
    return [(k, c) for k, c in enumerate(cases) if k in want]
