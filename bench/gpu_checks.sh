#!/usr/bin/env bash
# The GPU checks of issues 4 and 5, one device call each (a call may run 600 s,
# and each step here is cut at 540 s so its log still comes back), from the
# repository root, in order of priority:
#
#   bash ../shared/gpu/build-wheels.sh                        # once, on the CPU machine
#   run(carry=[".whl"], timeout_s=600, command="bash bench/gpu_checks.sh tests")
#   run(carry=[".whl"], timeout_s=600, command="bash bench/gpu_checks.sh mlp")
#   run(carry=[".whl"], timeout_s=600, command="bash bench/gpu_checks.sh gemm")
#   run(carry=[".whl"], timeout_s=600, command="bash bench/gpu_checks.sh lenet")
#   run(carry=[".whl"], timeout_s=600, command="bash bench/gpu_checks.sh mlp-autotune")
#   run(carry=[".whl"], timeout_s=600, command="bash bench/gpu_checks.sh lenet-autotune")
#
# tests: a pycuda-on-torch smoke test, then every `gpu` test (ops forward and
#        backward against numpy on shapes 1, 7, 33, 129; each sample's loss
#        history against the CPU's, lenet.nn's included; digits_mlp's accuracy;
#        early stopping and grad_rms against the CPU; CUDA graph capture;
#        GEMMs launched in parts, a 70 000-example conv batch past 65535
#        blocks in z, split-K with a column sum).
# mlp, lenet: bench_cuda_mlp / bench_cuda_lenet against PyTorch eager and
#        torch.compile's default mode; mlp-autotune, lenet-autotune: against
#        mode="max-autotune" (its autotuning takes minutes: a call of its own).
# gemm:  bench_cuda_gemm against cuBLAS FP32.
# bench: all five benchmark steps in one go (for a machine without the limit).
# Logs and results go to $OUT (the device tool copies them back), or to
# bench/results when OUT is unset; a benchmark cut short leaves what it had
# measured in NAME.partial.json. Exit status: the first failing step's.
set -u
what=${1:-tests}
case "$what" in
    tests|bench|mlp|gemm|lenet|mlp-autotune|lenet-autotune) ;;
    *) echo "unknown step '$what': tests, mlp, gemm, lenet, mlp-autotune, lenet-autotune or bench" >&2
       exit 2 ;;
esac
out=${OUT:-bench/results}
mkdir -p "$out"
source .whl/prelude.sh || exit 1
export PYTHONUNBUFFERED=1
export PATH="$PATH:/usr/local/cuda/bin"       # pycuda's SourceModule runs nvcc from PATH
status=0
step() {    # step NAME COMMAND...: run, log to $out/NAME.log, remember a failure
    local name=$1
    shift
    echo "== $name: $*"
    timeout 540 "$@" > "$out/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$out/$name.log"
    echo "== $name: exit $rc"
    [ $status -eq 0 ] && status=$rc
}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
if [ "$what" = tests ]; then
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
has() { [ "$what" = "$1" ] || { [ "$what" = bench ] && [ "$1" != tests ]; }; }
has mlp && step cuda_mlp python3 -m bench.bench_cuda_mlp --modes eager,default \
    --out "$out/cuda_mlp.json"
has gemm && step cuda_gemm python3 -m bench.bench_cuda_gemm --out "$out/cuda_gemm.json"
has lenet && step cuda_lenet python3 -m bench.bench_cuda_lenet --modes eager,default \
    --out "$out/cuda_lenet.json"
has mlp-autotune && step cuda_mlp_autotune python3 -m bench.bench_cuda_mlp \
    --modes max-autotune --skip-compile --out "$out/cuda_mlp_autotune.json"
has lenet-autotune && step cuda_lenet_autotune python3 -m bench.bench_cuda_lenet \
    --modes max-autotune --skip-compile --out "$out/cuda_lenet_autotune.json"
exit $status
