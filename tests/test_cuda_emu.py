"""The CPU emulator of the GPU (cuda_emu.h) can fail: a kernel that reads
what another thread or block has not yet written gives the wrong numbers
under one of its schedules (threads of a block in reverse or shuffled order;
several blocks resident at once), as it may on a GPU, while the correct
kernel gives the right numbers under all of them. test_cuda_codegen.py runs
the generated kernels under these schedules."""
import numpy as np
import pytest

import cuda_emu

pytestmark = pytest.mark.skipif(not cuda_emu.available(), reason="g++ is not installed")

SCHEDULES = [("index", 1), ("reverse", 1), ("shuffle", 1), ("index", 8), ("shuffle", 8)]

# each thread reads the value its neighbour below put in shared memory
SHIFT = """extern "C" __global__ void __launch_bounds__(64) shift(const float* x, float* y) {
  __shared__ float s[64];
  const int t = threadIdx.x;
  s[t] = x[t];
  BARRIER
  y[t] = s[t > 0 ? t - 1 : 0];
}
"""

# every block leaves its numbers in part; the last block to finish, told by
# a counter, adds them all (the pattern of split-K and of the column sums)
TOTAL = """extern "C" __global__ void __launch_bounds__(32) total(const float* x, float* part,
                                                           int* count, float* out) {
  __shared__ int last;
  const int t = threadIdx.x, i = blockIdx.x * 32 + threadIdx.x;
  part[i] = x[i];
  __threadfence();
  BARRIER
  if (t == 0) last = atomicAdd(count, 1) == gridDim.x - 1;
  __syncthreads();
  if (!last) return;
  __threadfence();
  if (t == 0) {
    float s = 0.f;
    for (int j = 0; j < gridDim.x * 32; ++j) s += __ldcg(&part[j]);
    out[0] = s;
    count[0] = 0;
  }
}
"""


def _run(source, name, schedule, arrays, grid, block, seed):
    """arrays: name -> host array (float32 or int32), uploaded; the arrays
    after one launch, downloaded."""
    order, resident = schedule
    dev = cuda_emu.EmuDevice(order=order, seed=seed, resident=resident)
    fn = dev.function(dev.module(source), name)
    bufs = {k: dev.alloc(a.nbytes) for k, a in arrays.items()}
    for k, a in arrays.items():
        dev.upload(bufs[k], a)
    dev.prepare(fn, grid, block, [("p", bufs[k]) for k in arrays])()
    out = {k: np.empty_like(a) for k, a in arrays.items()}
    for k in arrays:
        dev.download(out[k], bufs[k])
    return out


_FRESH = np.random.default_rng(0)


def _inputs(n):
    """n whole numbers, drawn afresh for each launch (a kernel reading shared
    memory before it is written finds another launch's numbers there), small
    enough that float32 sums of them are exact in any order."""
    return _FRESH.choice(np.arange(1, 50_000, dtype=np.float32), n, replace=False)


def _shift(schedule, barrier, seed=0):
    x = _inputs(64)
    src = SHIFT.replace("BARRIER", "__syncthreads();" if barrier else "")
    y = _run(src, "shift", schedule, {"x": x, "y": np.zeros(64, np.float32)}, (1, 1, 1),
             (64, 1, 1), seed)["y"]
    return np.array_equal(y, np.concatenate([x[:1], x[:-1]]))


def _total(schedule, barrier, seed=0):
    x = _inputs(8 * 32)
    src = TOTAL.replace("BARRIER", "__syncthreads();" if barrier else "")
    out = _run(src, "total", schedule,
               {"x": x, "part": np.zeros(8 * 32, np.float32), "count": np.zeros(1, np.int32),
                "out": np.zeros(1, np.float32)}, (8, 1, 1), (32, 1, 1), seed)
    return out["out"][0] == x.sum() and out["count"][0] == 0


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: f"{s[0]}-{s[1]}")
def test_correct_kernels_give_the_right_numbers_under_every_schedule(schedule):
    for seed in range(3):
        assert _shift(schedule, barrier=True, seed=seed)
        assert _total(schedule, barrier=True, seed=seed)


def test_a_missing_barrier_in_a_block_shows_when_its_threads_run_out_of_order():
    """In index order thread t - 1 has written before thread t reads: right
    by luck. Reversed it has not, nor under some of the shuffles."""
    assert _shift(("index", 1), barrier=False)
    assert not _shift(("reverse", 1), barrier=False)
    assert not all(_shift(("shuffle", 1), barrier=False, seed=seed) for seed in range(10))


def test_a_block_reading_another_blocks_unfinished_work_shows_with_blocks_resident_at_once():
    """Without the barrier, thread 0 counts its block as done before the
    block's other threads have written their part. With one block at a time
    the other threads finish before the next block starts: right by luck.
    With eight resident blocks whose threads take turns, the last block sums
    parts not yet written, under some of the shuffles."""
    for order in ("index", "reverse", "shuffle"):
        assert _total((order, 1), barrier=False)
    right = [_total(("shuffle", 8), barrier=False, seed=seed) for seed in range(10)]
    assert not all(right)


def test_each_resident_block_gets_its_own_shared_memory():
    src = ("__shared__ __align__(16) float As[2][T::BK][T::BM];\n"
           "  __shared__ int last;\n  __shared__ float part[{{ k }}][4];")
    out = cuda_emu._per_slot(src)
    assert out == (
        "static __align__(16) float As_emu[EMU_SLOTS][2][T::BK][T::BM]; "
        "auto& As = As_emu[emu_slot];\n"
        "  static int last_emu[EMU_SLOTS]; auto& last = last_emu[emu_slot];\n"
        "  static float part_emu[EMU_SLOTS][{{ k }}][4]; auto& part = part_emu[emu_slot];")
    with pytest.raises(ValueError, match="__shared__"):
        cuda_emu._per_slot("extern __shared__ float dynamic[];")


VEC = """extern "C" __global__ void __launch_bounds__(32) copy4(const float* x, float* y) {
  const int t = threadIdx.x;
  *reinterpret_cast<float4*>(y + 4 * t) = *reinterpret_cast<const float4*>(x + 4 * t + OFFSET);
}
"""


@pytest.mark.parametrize("offset", [0, 4, 1, 2])
def test_a_float4_at_an_address_not_a_multiple_of_16_is_a_fault(offset):
    """As on the GPU (CUDA_ERROR_MISALIGNED_ADDRESS): buffers start 256-byte
    aligned, so x + 4t + offset is aligned only when offset is a multiple of 4."""
    x = np.arange(132, dtype=np.float32)
    src = VEC.replace("OFFSET", str(offset))
    if offset % 4:
        with pytest.raises(RuntimeError, match="misaligned address: a float4 read"):
            _run(src, "copy4", ("index", 1), {"x": x, "y": np.zeros(128, np.float32)},
                 (1, 1, 1), (32, 1, 1), 0)
        return
    y = _run(src, "copy4", ("index", 1), {"x": x, "y": np.zeros(128, np.float32)},
             (1, 1, 1), (32, 1, 1), 0)["y"]
    np.testing.assert_array_equal(y, x[offset:offset + 128])


def test_an_upload_from_page_locked_memory_reads_it_when_the_queue_runs():
    """As a DMA from page-locked memory: the GPU reads the host buffer when
    the copy's turn comes, so the host may not refill it before it
    synchronizes; other memory is staged at once and may be reused."""
    dev = cuda_emu.EmuDevice()
    buf, out = dev.alloc(16), np.zeros(4, np.float32)
    pinned = dev.pinned(4)
    pinned[:] = 1
    dev.upload(buf, pinned)
    pinned[:] = 2                      # too soon: the upload has not run
    dev.download(out, buf)
    assert out.tolist() == [2, 2, 2, 2]
    pageable = np.ones(4, np.float32)
    dev.upload(buf, pageable)
    pageable[:] = 3
    dev.download(out, buf)
    assert out.tolist() == [1, 1, 1, 1]
    dev.upload(buf, pinned)
    dev.synchronize()
    pinned[:] = 4                      # after synchronizing: safe
    dev.download(out, buf)
    assert out.tolist() == [2, 2, 2, 2]
