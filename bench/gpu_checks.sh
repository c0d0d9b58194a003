#!/usr/bin/env bash
# The GPU checks of issues 4 and 5 in one device call, from the repository root:
#
#   bash ../shared/gpu/build-wheels.sh                       # once, on the CPU machine
#   run(carry=[".whl"], timeout_s=600, command="bash bench/gpu_checks.sh tests")
#   run(carry=[".whl"], timeout_s=600, command="bash bench/gpu_checks.sh bench")
#
# tests: a pycuda-on-torch smoke test, then every `gpu` test (ops forward and
#        backward against numpy on shapes 1, 7, 33, 129; each sample's loss
#        history against the CPU's; digits_mlp's accuracy; LeNet).
# bench: bench_cuda_mlp, bench_cuda_gemm and bench_cuda_lenet (issue 4 and 5
#        targets), their JSON beside their logs.
# Logs and results go to $OUT (the device tool copies them back), or to
# bench/results when OUT is unset. Exit status: the first failing step's.
set -u
what=${1:-all}
out=${OUT:-bench/results}
mkdir -p "$out"
source .whl/prelude.sh || exit 1
export PYTHONUNBUFFERED=1
status=0
step() {    # step NAME COMMAND...: run, log to $out/NAME.log, remember a failure
    local name=$1
    shift
    echo "== $name: $*"
    "$@" > "$out/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $rc"
    [ $status -eq 0 ] && status=$rc
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ "$what" = tests ] || [ "$what" = all ]; then
    step smoke python3 - <<'PY'
import numpy as np, torch, pycuda.autoprimaryctx  # noqa: F401
from pycuda.compiler import SourceModule
f = SourceModule("__global__ void twice(float *x, int n) { int i = blockIdx.x*blockDim.x"
                 " + threadIdx.x; if (i < n) x[i] *= 2.f; }").get_function("twice")
t = torch.arange(1024, dtype=torch.float32, device="cuda")
f(np.uintp(t.data_ptr()), np.int32(t.numel()), block=(256, 1, 1), grid=(4, 1))
torch.cuda.synchronize()
assert torch.equal(t.cpu(), 2 * torch.arange(1024.))
print("pycuda on a torch tensor: OK")
PY
    step gpu_tests python3 -m pytest -m gpu -q -rs tests/test_cuda_gpu.py
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
    step cuda_mlp python3 -m bench.bench_cuda_mlp --out "$out/cuda_mlp.json"
    step cuda_gemm python3 -m bench.bench_cuda_gemm --out "$out/cuda_gemm.json"
    step cuda_lenet python3 -m bench.bench_cuda_lenet --out "$out/cuda_lenet.json"
fi
exit $status
