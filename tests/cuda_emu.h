// cuda_emu.h: just enough CUDA to run nncompile's generated kernels on the CPU.
//
// One OS thread per CUDA thread, the blocks of a launch one after another (so
// __shared__ can be a function-local static). __syncthreads is a barrier over
// the block's live threads, warp shuffles go through a per-warp buffer and
// barrier, atomics and fences are the host's. A barrier that waits longer
// than 60 s (a kernel whose threads do not all reach __syncthreads) aborts.
#pragma once
#include <math.h>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
struct alignas(16) float4 { float x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;

struct EmuBarrier {
  std::mutex m;
  std::condition_variable cv;
  int expected, count = 0;
  long generation = 0;
  explicit EmuBarrier(int n) : expected(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m);
    long g = generation;
    if (++count == expected) { count = 0; ++generation; cv.notify_all(); return; }
    if (!cv.wait_for(lock, std::chrono::seconds(60), [&] { return generation != g; })) {
      std::fprintf(stderr, "cuda_emu: a barrier waited 60 s (divergent __syncthreads?)\n");
      std::abort();
    }
  }
  void drop() {   // a thread has exited: it no longer takes part
    std::unique_lock<std::mutex> lock(m);
    --expected;
    if (count > 0 && count == expected) { count = 0; ++generation; cv.notify_all(); }
  }
};

struct EmuBlock {
  std::unique_ptr<EmuBarrier> block;
  std::vector<std::unique_ptr<EmuBarrier>> warps;
  float lanes[32][32];
};
static thread_local EmuBlock* emu_block;
static thread_local int emu_thread;

static inline void __syncthreads() { emu_block->block->wait(); }
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
static inline float __shfl_xor_sync(unsigned, float v, int mask) {
  const int w = emu_thread / 32, l = emu_thread % 32;
  emu_block->lanes[w][l] = v;
  emu_block->warps[w]->wait();
  const float r = emu_block->lanes[w][l ^ mask];
  emu_block->warps[w]->wait();
  return r;
}
static inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
static inline float __ldcg(const float* p) { return *(const volatile float*)p; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

typedef void (*emu_trampoline)(void**);

extern "C" int emu_launch(emu_trampoline fn, void** args, unsigned gx, unsigned gy, unsigned gz,
                          unsigned bx, unsigned by, unsigned bz) {
  gridDim = {gx, gy, gz};
  blockDim = {bx, by, bz};
  const int threads = (int)(bx * by * bz);
  for (unsigned z = 0; z < gz; ++z)
    for (unsigned y = 0; y < gy; ++y)
      for (unsigned x = 0; x < gx; ++x) {
        EmuBlock blk;
        blk.block.reset(new EmuBarrier(threads));
        for (int w = 0; w * 32 < threads; ++w)
          blk.warps.emplace_back(new EmuBarrier(threads - w * 32 < 32 ? threads - w * 32 : 32));
        std::vector<std::thread> pool;
        pool.reserve(threads);
        for (int t = 0; t < threads; ++t)
          pool.emplace_back([&, t] {
            emu_block = &blk;
            emu_thread = t;
            threadIdx = {(unsigned)t % bx, (unsigned)t / bx % by, (unsigned)t / (bx * by)};
            blockIdx = {x, y, z};
            fn(args);
            blk.block->drop();
            blk.warps[t / 32]->drop();
          });
        for (auto& th : pool) th.join();
      }
  return 0;
}
