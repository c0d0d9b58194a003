// cuda_emu.h: just enough CUDA to run nncompile's generated kernels on the CPU.
//
// A launch keeps up to R blocks resident at once (emu_set_order), as the
// GPU's multiprocessors do; each CUDA thread of a resident block is a fiber
// (ucontext) of the one OS thread. A fiber runs until it reaches a barrier
// (__syncthreads, or a warp shuffle's warp barrier) or returns; then the
// next runnable fiber runs, of the same block or another. A barrier counts
// only threads that have not returned, as on the GPU. If no fiber can run
// while some wait (a __syncthreads that not all threads reach), the emulator
// aborts. cuda_emu.py rewrites each __shared__ declaration into an array with
// one copy per resident slot (emu_slot), so resident blocks do not share it.
//
// The order in which blocks start and fibers run is 0 by index or 1 reversed
// (in rounds: every runnable fiber runs once, then those a barrier released
// run in the next round), or 2 shuffled from a seed: the blocks start in a
// random order, each resident block gets a random speed (a weight from 1 to
// 32) and a way of picking its fibers (lowest index first, highest first, or
// at random), drawn again each time its __syncthreads releases; every turn
// goes to a block drawn by weight, then to the fiber its way picks. So some blocks run far ahead of others (and thread 0, which
// often signals that a block is done, may run long before its neighbours),
// and a fiber that a barrier released may run again before others have run
// at all. A kernel that reads shared or global memory another thread
// writes without a barrier between them, or a block that reads what another
// block has not finished writing (a split-K tile's partial sums before its
// counter says so), then gives different numbers under different orders, as
// it may under the GPU's scheduler.
#pragma once
#include <math.h>
#include <ucontext.h>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
// A float4 read or written at an address that is not a multiple of 16 is a
// fault on the GPU (misaligned address): here it is noted, and emu_launch
// returns 1 with emu_fault() saying where.
static char emu_fault_text[160];
static void emu_aligned(const void* p, const char* what) {
  if ((uintptr_t)p % 16 != 0 && !emu_fault_text[0])
    std::snprintf(emu_fault_text, sizeof emu_fault_text,
                  "misaligned address: a float4 %s at %p", what, p);
}
extern "C" const char* emu_fault() { return emu_fault_text; }

struct alignas(16) float4 {
  float x, y, z, w;
  float4() = default;
  float4(float a, float b, float c, float d) : x(a), y(b), z(c), w(d) {}
  float4(const float4& o) : x(o.x), y(o.y), z(o.z), w(o.w) { emu_aligned(&o, "read"); }
  float4& operator=(const float4& o) {
    emu_aligned(&o, "read");
    emu_aligned(this, "written");
    x = o.x; y = o.y; z = o.z; w = o.w;
    return *this;
  }
};
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }

#define EMU_SLOTS 8
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))

static dim3 threadIdx, blockIdx, gridDim, blockDim;
static int emu_slot;                      // the resident block of the running fiber

typedef void (*emu_trampoline)(void**);
struct EmuBarrier { int expected = 0, arrived = 0; };
struct EmuFiber { ucontext_t ctx; int state = 0; EmuBarrier* wait = nullptr; dim3 idx; int id = 0; };
static const size_t EMU_STACK = 1 << 16;

// A resident block: its fibers, barriers and warp-shuffle lanes.
struct EmuBlock {
  std::vector<unsigned> queue;    // the blocks this slot runs, in turn
  size_t next = 0;
  bool active = false;
  int finished = 0;               // fibers that have returned
  std::vector<int> ready;         // its runnable fibers
  unsigned weight = 1;            // its speed, when shuffled
  int pick = 0;                   // and its way: 0 lowest index first, 1 highest, 2 at random
  dim3 idx;
  std::vector<EmuFiber> fibers;
  EmuBarrier barrier, warp_barrier[32];
  float lanes[32][32];
};

static ucontext_t emu_scheduler;
static EmuBlock* emu_block;
static EmuFiber* emu_current;
static emu_trampoline emu_fn;
static void** emu_args;
static int emu_order_kind = 0, emu_resident = 1;
static unsigned long long emu_rng = 1;

// order: 0 by index, 1 reversed, 2 shuffled from seed; resident: blocks at once
extern "C" void emu_set_order(int kind, unsigned seed, int resident) {
  emu_order_kind = kind;
  emu_resident = std::clamp(resident, 1, EMU_SLOTS);
  emu_rng = 0x9E3779B97F4A7C15ull * (seed + 1ull);
}
static unsigned long long emu_next_random() {
  emu_rng ^= emu_rng << 13; emu_rng ^= emu_rng >> 7; emu_rng ^= emu_rng << 17;
  return emu_rng;
}
// p in the chosen order
template <class V> static void emu_permute(std::vector<V>& p) {
  if (emu_order_kind == 1) std::reverse(p.begin(), p.end());
  if (emu_order_kind == 2)
    for (size_t i = p.size(); i > 1; --i) std::swap(p[i - 1], p[emu_next_random() % i]);
}

static void emu_draw_speed(EmuBlock& b);
static void emu_release(EmuBarrier* b) {
  if (b == &emu_block->barrier) emu_draw_speed(*emu_block);
  for (auto& f : emu_block->fibers)
    if (f.state == 1 && f.wait == b) {
      f.state = 0;
      f.wait = nullptr;
      emu_block->ready.push_back(f.id);
    }
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
  emu_drop(&emu_block->barrier);
  emu_drop(&emu_block->warp_barrier[emu_current->id / 32]);
}

static inline void __syncthreads() { emu_wait(&emu_block->barrier); }
static inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
static inline float __shfl_xor_sync(unsigned, float v, int mask) {
  const int w = emu_current->id / 32, l = emu_current->id % 32;
  emu_block->lanes[w][l] = v;
  emu_wait(&emu_block->warp_barrier[w]);
  const float r = emu_block->lanes[w][l ^ mask];
  emu_wait(&emu_block->warp_barrier[w]);
  return r;
}
static inline int atomicAdd(int* p, int v) { int old = *p; *p = old + v; return old; }
static inline float __ldcg(const float* p) { return *(const volatile float*)p; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }

// slot i's fiber stacks, kept from launch to launch (not zeroed: pages are
// touched only as the fibers use them)
static char* emu_stacks(size_t i, size_t bytes) {
  static std::vector<std::pair<size_t, std::unique_ptr<char[]>>> pool(EMU_SLOTS);
  if (pool[i].first < bytes) pool[i] = {bytes, std::unique_ptr<char[]>(new char[bytes])};
  return pool[i].second.get();
}

static void emu_draw_speed(EmuBlock& b) {
  b.weight = emu_order_kind == 2 ? 1u << emu_next_random() % 6 : 1;
  b.pick = emu_order_kind == 2 ? emu_next_random() % 3 : 0;
}

// make slot i's next block resident, or leave the slot empty
static void emu_start(EmuBlock& b, size_t i) {
  b.active = b.next < b.queue.size();
  if (!b.active) return;
  const unsigned n = b.queue[b.next++];
  b.finished = 0;
  emu_draw_speed(b);
  b.idx = {n % gridDim.x, n / gridDim.x % gridDim.y, n / (gridDim.x * gridDim.y)};
  const int threads = (int)b.fibers.size();
  b.barrier = {threads, 0};
  for (int w = 0; w * 32 < threads; ++w)
    b.warp_barrier[w] = {threads - w * 32 < 32 ? threads - w * 32 : 32, 0};
  char* stacks = emu_stacks(i, threads * EMU_STACK);
  for (int t = 0; t < threads; ++t) {
    EmuFiber& f = b.fibers[t];
    f.state = 0;
    f.wait = nullptr;
    f.id = t;
    f.idx = {(unsigned)t % blockDim.x, (unsigned)t / blockDim.x % blockDim.y,
             (unsigned)t / (blockDim.x * blockDim.y)};
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stacks + t * EMU_STACK;
    f.ctx.uc_stack.ss_size = EMU_STACK;
    f.ctx.uc_link = &emu_scheduler;
    makecontext(&f.ctx, emu_entry, 0);
    b.ready.push_back(t);
  }
}


extern "C" int emu_launch(emu_trampoline fn, void** args, unsigned gx, unsigned gy, unsigned gz,
                          unsigned bx, unsigned by, unsigned bz) {
  gridDim = {gx, gy, gz};
  blockDim = {bx, by, bz};
  emu_fn = fn;
  emu_args = args;
  emu_fault_text[0] = 0;
  const int threads = (int)(bx * by * bz);
  std::vector<unsigned> order(gx * gy * gz);
  for (unsigned i = 0; i < order.size(); ++i) order[i] = i;
  emu_permute(order);
  const size_t n = std::min(order.size(), (size_t)emu_resident);
  std::vector<EmuBlock> slots(n);
  for (size_t i = 0; i < order.size(); ++i) slots[i % n].queue.push_back(order[i]);
  for (size_t i = 0; i < n; ++i) {
    slots[i].fibers.assign(threads, EmuFiber());
    emu_start(slots[i], i);
  }
  std::vector<std::pair<int, int>> round;
  for (;;) {
    round.clear();
    if (emu_order_kind == 2) {            // a block drawn by weight, then one of its fibers
      unsigned total = 0;
      for (auto& b : slots) total += b.ready.empty() ? 0 : b.weight;
      if (total == 0) break;
      unsigned r = emu_next_random() % total;
      size_t i = 0;
      while (slots[i].ready.empty() || r >= slots[i].weight) {
        r -= slots[i].ready.empty() ? 0 : slots[i].weight;
        ++i;
      }
      std::vector<int>& ready = slots[i].ready;
      size_t k = slots[i].pick == 2 ? emu_next_random() % ready.size() : 0;
      for (size_t j = 1; slots[i].pick < 2 && j < ready.size(); ++j)
        if ((ready[j] < ready[k]) == (slots[i].pick == 0)) k = j;
      round.push_back({(int)i, ready[k]});
      ready[k] = ready.back();
      ready.pop_back();
    } else {                              // a round: every runnable fiber once
      for (size_t i = 0; i < n; ++i) {
        for (int t : slots[i].ready) round.push_back({(int)i, t});
        slots[i].ready.clear();
      }
      if (round.empty()) break;
      std::sort(round.begin(), round.end());
      emu_permute(round);
    }
    for (auto [i, t] : round) {
      EmuBlock& b = slots[i];
      EmuFiber& f = b.fibers[t];
      emu_slot = i;
      emu_block = &b;
      emu_current = &f;
      blockIdx = b.idx;
      threadIdx = f.idx;
      swapcontext(&emu_scheduler, &f.ctx);
      if (f.state == 2 && ++b.finished == threads) emu_start(b, i);
    }
  }
  for (auto& b : slots)
    if (b.active) {
      std::fprintf(stderr, "cuda_emu: deadlock (a __syncthreads not every thread reaches)\n");
      std::abort();
    }
  return emu_fault_text[0] ? 1 : 0;
}
