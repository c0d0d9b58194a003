// cuda_emu.h: just enough CUDA to run nncompile's generated kernels on the CPU.
//
// Each CUDA thread of a block is a fiber (ucontext) of one OS thread; a fiber
// runs until it reaches a barrier (__syncthreads, or a warp shuffle's warp
// barrier) or returns, then the next runnable one runs. Blocks run one after
// another, so __shared__ can be a function-local static. A barrier counts only
// threads that have not returned, as on the GPU. If no fiber can run while some
// wait (a __syncthreads that not all threads reach), the emulator aborts.
#pragma once
#include <math.h>
#include <ucontext.h>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

static dim3 threadIdx, blockIdx, blockDim, gridDim;

typedef void (*emu_trampoline)(void**);
struct EmuBarrier { int expected = 0, arrived = 0; };
struct EmuFiber { ucontext_t ctx; int state = 0; EmuBarrier* wait = nullptr; dim3 idx; int id = 0; };

static ucontext_t emu_scheduler;
static std::vector<EmuFiber> emu_fibers;
static std::vector<char> emu_stacks;
static EmuFiber* emu_current;
static EmuBarrier emu_block_barrier, emu_warp_barrier[32];
static float emu_lanes[32][32];
static emu_trampoline emu_fn;
static void** emu_args;
static const size_t EMU_STACK = 1 << 16;

static void emu_release(EmuBarrier* b) {
  for (auto& f : emu_fibers)
    if (f.state == 1 && f.wait == b) { f.state = 0; f.wait = nullptr; }
  b->arrived = 0;
}
static void emu_wait(EmuBarrier* b) {
  if (++b->arrived == b->expected) { emu_release(b); return; }
  emu_current->state = 1;
  emu_current->wait = b;
  swapcontext(&emu_current->ctx, &emu_scheduler);
}
static void emu_drop(EmuBarrier* b) {
  --b->expected;
  if (b->arrived > 0 && b->arrived == b->expected) emu_release(b);
}
static void emu_entry() {
  emu_fn(emu_args);
  emu_current->state = 2;
  emu_drop(&emu_block_barrier);
  emu_drop(&emu_warp_barrier[emu_current->id / 32]);
}

static inline void __syncthreads() { emu_wait(&emu_block_barrier); }
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
static inline float __shfl_xor_sync(unsigned, float v, int mask) {
  const int w = emu_current->id / 32, l = emu_current->id % 32;
  emu_lanes[w][l] = v;
  emu_wait(&emu_warp_barrier[w]);
  const float r = emu_lanes[w][l ^ mask];
  emu_wait(&emu_warp_barrier[w]);
  return r;
}
static inline int atomicAdd(int* p, int v) { int old = *p; *p = old + v; return old; }
static inline float __ldcg(const float* p) { return *(const volatile float*)p; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

extern "C" int emu_launch(emu_trampoline fn, void** args, unsigned gx, unsigned gy, unsigned gz,
                          unsigned bx, unsigned by, unsigned bz) {
  gridDim = {gx, gy, gz};
  blockDim = {bx, by, bz};
  emu_fn = fn;
  emu_args = args;
  const int threads = (int)(bx * by * bz);
  emu_fibers.assign(threads, EmuFiber());
  if (emu_stacks.size() < threads * EMU_STACK) emu_stacks.resize(threads * EMU_STACK);
  for (unsigned z = 0; z < gz; ++z)
    for (unsigned y = 0; y < gy; ++y)
      for (unsigned x = 0; x < gx; ++x) {
        blockIdx = {x, y, z};
        emu_block_barrier = {threads, 0};
        for (int w = 0; w * 32 < threads; ++w)
          emu_warp_barrier[w] = {threads - w * 32 < 32 ? threads - w * 32 : 32, 0};
        for (int t = 0; t < threads; ++t) {
          EmuFiber& f = emu_fibers[t];
          f.state = 0;
          f.wait = nullptr;
          f.id = t;
          f.idx = {(unsigned)t % bx, (unsigned)t / bx % by, (unsigned)t / (bx * by)};
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = emu_stacks.data() + t * EMU_STACK;
          f.ctx.uc_stack.ss_size = EMU_STACK;
          f.ctx.uc_link = &emu_scheduler;
          makecontext(&f.ctx, emu_entry, 0);
        }
        for (;;) {
          bool ran = false, waiting = false;
          for (auto& f : emu_fibers) {
            if (f.state == 0) {
              emu_current = &f;
              threadIdx = f.idx;
              swapcontext(&emu_scheduler, &f.ctx);
              ran = true;
            }
            waiting |= f.state == 1;
          }
          if (!ran && !waiting) break;
          if (!ran) {
            std::fprintf(stderr, "cuda_emu: deadlock (a __syncthreads not every thread reaches)\n");
            std::abort();
          }
        }
      }
  return 0;
}
