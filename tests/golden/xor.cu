// nncompile: CUDA for graph xor (generated; every kernel takes the batch size nb last)
// feeds:   in0 = x f32[nb, 2], in1 = y f32[nb, 1]
// storage: st0 = h.bias, st1 = h.weight, st2 = p.bias, st3 = p.weight
// buffers: buf0 f32[(4 * nb)], buf1 f32[nb], buf2 f32[nb], buf3 f32[nb], buf4 f32[1], buf5 f32[1], buf6 f32[(4 * nb)]
// launch plan, in order:
//   k00_gemm               gemm M=nb N=4 K=2 batches=1 tiles t64
//   k01_gemm               gemm M=nb N=1 K=4 batches=1 tiles t64, with its column sums
//   k02_reduce             sum of nb each, 1 outputs, block (256, 1)
//   k03_gemm               gemm M=nb N=4 K=1 batches=1 tiles t64, with its column sums
//   k04_gemm               gemm M=2 N=4 K=nb batches=1 tiles t64
//   k05_gemm               gemm M=4 N=1 K=nb batches=1 tiles t64
//   k06_elementwise        grid flat(1)


// ---- GEMM: tiled FP32 with register blocking --------------------------------
// Each block computes a BM x BN tile of C with 256 threads; each thread a
// TM x TN micro-tile whose rows are (i / 4) * 64 + ty * 4 + i % 4 (columns
// likewise), so neighbouring threads read neighbouring float4s in shared memory.
template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct GemmTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int THREADS = (BM / TM) * (BN / TN);
  static_assert(THREADS == 256 && BM * BK == 4 * THREADS && BN * BK == 4 * THREADS,
                "each thread loads one float4 of A and one of B per k-tile");
};
typedef GemmTile<64, 64, 16, 4, 4> Tile64;
typedef GemmTile<128, 128, 8, 8, 8> Tile128;

// op(X)(r, k) of a row-major matrix X with row stride ld: X[r][k] when
// KCONTIG, else X[k][r] (the transposed read). VEC: rows start 16-byte aligned.
template <bool KCONTIG, bool VEC>
struct MatrixOperand {
  static constexpr bool kcontig = KCONTIG, vec = VEC;
  const float* __restrict__ p;
  int ld;
  __device__ __forceinline__ float at(int r, int k) const {
    return KCONTIG ? p[r * ld + k] : p[k * ld + r];
  }
  __device__ __forceinline__ float4 at4(int r, int k) const {
    return *reinterpret_cast<const float4*>(KCONTIG ? p + r * ld + k : p + k * ld + r);
  }
};

// This thread's four values of an R x BK tile of op starting at (r0, k0);
// zero outside rows < rows and k < k_end.
template <class T, int R, class Op>
__device__ __forceinline__ void gemm_fetch(const Op& op, int r0, int rows, int k0, int k_end,
                                           float (&v)[4]) {
  const int t = threadIdx.x;
  if (Op::kcontig) {
    const int r = r0 + t / (T::BK / 4), k = k0 + (t % (T::BK / 4)) * 4;
    if (Op::vec && r < rows && k + 3 < k_end) {
      const float4 q = op.at4(r, k);
      v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
    } else {
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = (r < rows && k + u < k_end) ? op.at(r, k + u) : 0.f;
    }
  } else {
    const int k = k0 + t / (R / 4), r = r0 + (t % (R / 4)) * 4;
    if (Op::vec && k < k_end && r + 3 < rows) {
      const float4 q = op.at4(r, k);
      v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
    } else {
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = (k < k_end && r + u < rows) ? op.at(r + u, k) : 0.f;
    }
  }
}

// Store what gemm_fetch loaded into S[BK][R] (k-major, as the inner loop reads it).
template <class T, int R, class Op>
__device__ __forceinline__ void gemm_stash(float (*S)[R], const float (&v)[4]) {
  const int t = threadIdx.x;
  if (Op::kcontig) {
    const int r = t / (T::BK / 4), k = (t % (T::BK / 4)) * 4;
#pragma unroll
    for (int u = 0; u < 4; ++u) S[k + u][r] = v[u];
  } else {
    const int k = t / (R / 4), r = (t % (R / 4)) * 4;
    *reinterpret_cast<float4*>(&S[k][r]) = make_float4(v[0], v[1], v[2], v[3]);
  }
}

// acc = sum over k in [k_begin, k_end) of A(m, k) B(k, n) for this thread's
// micro-tile of the tile at (m0, n0). Two shared-memory buffers: the next
// k-tile is fetched into registers while the current one is multiplied.
template <class T, class OpA, class OpB>
__device__ __forceinline__ void gemm_mainloop(const OpA& a, const OpB& b, int M, int N,
                                              int k_begin, int k_end, int m0, int n0,
                                              float (&acc)[T::TM][T::TN]) {
  __shared__ __align__(16) float As[2][T::BK][T::BM];
  __shared__ __align__(16) float Bs[2][T::BK][T::BN];
  const int tx = threadIdx.x % (T::BN / T::TN), ty = threadIdx.x / (T::BN / T::TN);
#pragma unroll
  for (int i = 0; i < T::TM; ++i)
#pragma unroll
    for (int j = 0; j < T::TN; ++j) acc[i][j] = 0.f;
  if (k_begin >= k_end) return;
  float ra[4], rb[4];
  gemm_fetch<T, T::BM>(a, m0, M, k_begin, k_end, ra);
  gemm_fetch<T, T::BN>(b, n0, N, k_begin, k_end, rb);
  gemm_stash<T, T::BM, OpA>(As[0], ra);
  gemm_stash<T, T::BN, OpB>(Bs[0], rb);
  __syncthreads();
  int cur = 0;
  for (int k0 = k_begin; k0 < k_end; k0 += T::BK) {
    const bool more = k0 + T::BK < k_end;
    if (more) {
      gemm_fetch<T, T::BM>(a, m0, M, k0 + T::BK, k_end, ra);
      gemm_fetch<T, T::BN>(b, n0, N, k0 + T::BK, k_end, rb);
    }
#pragma unroll
    for (int k = 0; k < T::BK; ++k) {
      float fa[T::TM], fb[T::TN];
#pragma unroll
      for (int i = 0; i < T::TM; i += 4) {
        const float4 q = *reinterpret_cast<const float4*>(
            &As[cur][k][(i / 4) * (T::BM / T::TM) * 4 + ty * 4]);
        fa[i] = q.x; fa[i + 1] = q.y; fa[i + 2] = q.z; fa[i + 3] = q.w;
      }
#pragma unroll
      for (int j = 0; j < T::TN; j += 4) {
        const float4 q = *reinterpret_cast<const float4*>(
            &Bs[cur][k][(j / 4) * (T::BN / T::TN) * 4 + tx * 4]);
        fb[j] = q.x; fb[j + 1] = q.y; fb[j + 2] = q.z; fb[j + 3] = q.w;
      }
#pragma unroll
      for (int i = 0; i < T::TM; ++i)
#pragma unroll
        for (int j = 0; j < T::TN; ++j) acc[i][j] = fmaf(fa[i], fb[j], acc[i][j]);
    }
    if (more) {
      gemm_stash<T, T::BM, OpA>(As[cur ^ 1], ra);
      gemm_stash<T, T::BN, OpB>(Bs[cur ^ 1], rb);
    }
    __syncthreads();
    cur ^= 1;
  }
}

// Split-K: every split of a tile leaves its partial sums in ws; the block that
// finishes last adds them in split order (so the result does not depend on
// which block came last), resets the tile's counter and runs the epilogue.
// Returns false in the blocks that are not last.
template <class T>
__device__ __forceinline__ bool gemm_splitk(float (&acc)[T::TM][T::TN], float* __restrict__ ws,
                                            int* __restrict__ counters, int tile, int split,
                                            int splits) {
  __shared__ int last;
  const int tx = threadIdx.x % (T::BN / T::TN), ty = threadIdx.x / (T::BN / T::TN);
  float* part = ws + (size_t)tile * splits * (T::BM * T::BN);
#pragma unroll
  for (int i = 0; i < T::TM; ++i)
#pragma unroll
    for (int j = 0; j < T::TN; ++j)
      part[split * (T::BM * T::BN) + ((i / 4) * (T::BM / T::TM) * 4 + ty * 4 + i % 4) * T::BN +
           (j / 4) * (T::BN / T::TN) * 4 + tx * 4 + j % 4] = acc[i][j];
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) last = atomicAdd(&counters[tile], 1) == splits - 1;
  __syncthreads();
  if (!last) return false;
  __threadfence();
#pragma unroll
  for (int i = 0; i < T::TM; ++i)
#pragma unroll
    for (int j = 0; j < T::TN; ++j) acc[i][j] = 0.f;
  for (int s = 0; s < splits; ++s)
#pragma unroll
    for (int i = 0; i < T::TM; ++i)
#pragma unroll
      for (int j = 0; j < T::TN; ++j)
        acc[i][j] += __ldcg(&part[s * (T::BM * T::BN) +
                                  ((i / 4) * (T::BM / T::TM) * 4 + ty * 4 + i % 4) * T::BN +
                                  (j / 4) * (T::BN / T::TN) * 4 + tx * 4 + j % 4]);
  if (threadIdx.x == 0) counters[tile] = 0;
  return true;
}

// Column sums over all M rows, from each thread's sums over its TM rows (csum):
// the block adds its 16 row groups in order and leaves the sums of its rows in
// cws[tile row][N]; the last of the ny row tiles of a column tile to finish
// (counted in ccount) adds the tiles' sums in order, so the result does not
// depend on which came last. Returns true there, with thread t's column n0 + t
// sum in total.
template <class T>
__device__ __forceinline__ bool gemm_colsum(const float (&csum)[T::TN], float* __restrict__ cws,
                                            int* __restrict__ ccount, int N, int n0, int ty0,
                                            int ny, float& total) {
  __shared__ float part[T::BM / T::TM][T::BN];
  __shared__ int last;
  const int tx = threadIdx.x % (T::BN / T::TN), ty = threadIdx.x / (T::BN / T::TN);
  const int t = threadIdx.x;
#pragma unroll
  for (int j = 0; j < T::TN; ++j) part[ty][(j / 4) * (T::BN / T::TN) * 4 + tx * 4 + j % 4] = csum[j];
  __syncthreads();
  if (t < T::BN && n0 + t < N) {
    float s = 0.f;
    for (int y = 0; y < T::BM / T::TM; ++y) s += part[y][t];
    cws[(size_t)ty0 * N + n0 + t] = s;
  }
  __threadfence();
  __syncthreads();
  if (t == 0) last = atomicAdd(&ccount[blockIdx.x], 1) == ny - 1;
  __syncthreads();
  if (!last) return false;
  __threadfence();
  total = 0.f;
  if (t < T::BN && n0 + t < N)
    for (int m = 0; m < ny; ++m) total += __ldcg(&cws[(size_t)m * N + n0 + t]);
  if (t == 0) ccount[blockIdx.x] = 0;
  return true;
}

// %h = fused[gemm: matmul, add, tanh](%x, %h.weight, %h.bias)  ->  buf0
extern "C" __global__ void __launch_bounds__(256, 2)
k00_gemm_t64(const float* __restrict__ in0, const float* __restrict__ st1, const float* __restrict__ st0, float* __restrict__ buf0, float* __restrict__ ws, int* __restrict__ counters,
    int nb, int splits, int kchunk,
    int ny, int y0, int z0)
{
  typedef Tile64 T;
  const int M = nb, N = 4, K = 2;
  // this block's row tile (of ny) and batch x split: a GEMM with more than
  // CUDA's 65535 blocks in y or z is launched in parts, from y0 and z0 on
  const int ty0 = blockIdx.y + y0, tz = blockIdx.z + z0;
  const int bat = tz / splits, split = tz % splits;
  const int m0 = ty0 * T::BM, n0 = blockIdx.x * T::BN;
  const int k_begin = split * kchunk, k_end = min(K, k_begin + kchunk);
  const MatrixOperand<true, false> a = {in0, 2};
  const MatrixOperand<false, true> b = {st1, 4};
  float acc[T::TM][T::TN];
  gemm_mainloop<T>(a, b, M, N, k_begin, k_end, m0, n0, acc);
  if (splits > 1 &&
      !gemm_splitk<T>(acc, ws, counters, (bat * ny + ty0) * gridDim.x + blockIdx.x,
                      split, splits))
    return;
  const int tx = threadIdx.x % (T::BN / T::TN), ty = threadIdx.x / (T::BN / T::TN);
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int row = m0 + (i / 4) * (T::BM / T::TM) * 4 + ty * 4 + i % 4;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int col = n0 + (j / 4) * (T::BN / T::TN) * 4 + tx * 4 + j % 4;
      if (row < M && col < N) {
        const float c = acc[i][j];
        const int idx = row * 4 + col;
        const float v6_0 = c;
        const float v6_1 = (v6_0 + st0[col]);
        const float v6 = tanhf(v6_1);
        buf0[idx] = v6;
      }
    }
  }
}

// %p = fused[gemm: matmul, add, sigmoid](%h, %p.weight, %p.bias)  ->  buf1
// %12 = sub(%p, %y)  ->  buf2
// %30 = fused[elementwise: div, mul, mul, sub, mul, mul](%58, %12, %p)  ->  buf3
// %31 = sum(%30)  ->  buf4
extern "C" __global__ void __launch_bounds__(256, 2)
k01_gemm_t64(const float* __restrict__ buf0, const float* __restrict__ st3, const float* __restrict__ st2, float* __restrict__ buf1, const float* __restrict__ in1, float* __restrict__ buf2, float* __restrict__ buf3, float* __restrict__ buf4, float* __restrict__ ws, int* __restrict__ counters,
    float* __restrict__ cws, int* __restrict__ ccount, int nb, int splits, int kchunk,
    int ny, int y0, int z0)
{
  typedef Tile64 T;
  const int M = nb, N = 1, K = 4;
  // this block's row tile (of ny) and batch x split: a GEMM with more than
  // CUDA's 65535 blocks in y or z is launched in parts, from y0 and z0 on
  const int ty0 = blockIdx.y + y0, tz = blockIdx.z + z0;
  const int bat = tz / splits, split = tz % splits;
  const int m0 = ty0 * T::BM, n0 = blockIdx.x * T::BN;
  const int k_begin = split * kchunk, k_end = min(K, k_begin + kchunk);
  const MatrixOperand<true, true> a = {buf0, 4};
  const MatrixOperand<false, false> b = {st3, 1};
  float acc[T::TM][T::TN];
  gemm_mainloop<T>(a, b, M, N, k_begin, k_end, m0, n0, acc);
  if (splits > 1 &&
      !gemm_splitk<T>(acc, ws, counters, (bat * ny + ty0) * gridDim.x + blockIdx.x,
                      split, splits))
    return;
  const int tx = threadIdx.x % (T::BN / T::TN), ty = threadIdx.x / (T::BN / T::TN);
  float csum[T::TN];
#pragma unroll
  for (int j = 0; j < T::TN; ++j) csum[j] = 0.f;
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int row = m0 + (i / 4) * (T::BM / T::TM) * 4 + ty * 4 + i % 4;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int col = n0 + (j / 4) * (T::BN / T::TN) * 4 + tx * 4 + j % 4;
      if (row < M && col < N) {
        const float c = acc[i][j];
        const int idx = row * 1 + col;
        const float v11_0 = c;
        const float v11_1 = (v11_0 + st2[0]);
        const float v11 = (1.f / (1.f + expf(-v11_1)));
        buf1[idx] = v11;
        const float v12 = (v11 - in1[idx]);
        buf2[idx] = v12;
        const float v30_0 = (1.f / ((float)nb));
        const float v30_1 = (v12 * 2.f);
        const float v30_2 = (v30_0 * v30_1);
        const float v30_3 = (1.f - v11);
        const float v30_4 = (v11 * v30_3);
        const float v30 = (v30_2 * v30_4);
        buf3[idx] = v30;
        csum[j] += v30;
      }
    }
  }
  float colsum;
  if (gemm_colsum<T>(csum, cws, ccount, N, n0, ty0, ny, colsum) && threadIdx.x < T::BN &&
      n0 + (int)threadIdx.x < N) {
    const int cidx = n0 + threadIdx.x;
    const float v31 = colsum;
    buf4[cidx] = v31;
  }
}

// %14 = fused[reduce: square, sum](%12)  ->  registers
// %loss = div(%14, %58)  ->  buf5
extern "C" __global__ void __launch_bounds__(256)
k02_reduce(const float* __restrict__ buf2, float* __restrict__ buf5, int nb)
{
  __shared__ float part[256][1];
  const int lane_r = threadIdx.x, lane_o = threadIdx.y;
  const int o = blockIdx.x * 1 + lane_o;
  const int outs = 1, count = nb;
  float acc = 0.f;
  if (o < outs) {
    for (int r = lane_r; r < count; r += 256) {
      const float v14_0 = (buf2[r]*buf2[r]);
      const float val = v14_0;
      acc = acc + val;
    }
  }
  part[lane_r][lane_o] = acc;
  __syncthreads();
#pragma unroll
  for (int s = 128; s > 0; s >>= 1) {
    if (lane_r < s) part[lane_r][lane_o] = part[lane_r][lane_o] + part[lane_r + s][lane_o];
    __syncthreads();
  }
  if (lane_r == 0 && o < outs) {
    const float c = part[0][lane_o];
    const float v14 = c;
    const float v16 = (v14 / ((float)nb));
    buf5[o] = v16;
  }
}

// %39 = fused[gemm: matmul, square, sub, mul](%30, %p.weight, %h)  ->  buf6
// %40 = sum(%39)  ->  registers
// %49 = fused[elementwise: mul, sub](%40, %h.bias)  ->  st0
extern "C" __global__ void __launch_bounds__(256, 2)
k03_gemm_t64(const float* __restrict__ buf3, const float* __restrict__ st3, const float* __restrict__ buf0, float* __restrict__ buf6, float* __restrict__ st0, float* __restrict__ ws, int* __restrict__ counters,
    float* __restrict__ cws, int* __restrict__ ccount, int nb, int splits, int kchunk,
    int ny, int y0, int z0)
{
  typedef Tile64 T;
  const int M = nb, N = 4, K = 1;
  // this block's row tile (of ny) and batch x split: a GEMM with more than
  // CUDA's 65535 blocks in y or z is launched in parts, from y0 and z0 on
  const int ty0 = blockIdx.y + y0, tz = blockIdx.z + z0;
  const int bat = tz / splits, split = tz % splits;
  const int m0 = ty0 * T::BM, n0 = blockIdx.x * T::BN;
  const int k_begin = split * kchunk, k_end = min(K, k_begin + kchunk);
  const MatrixOperand<true, false> a = {buf3, 1};
  const MatrixOperand<true, false> b = {st3, 1};
  float acc[T::TM][T::TN];
  gemm_mainloop<T>(a, b, M, N, k_begin, k_end, m0, n0, acc);
  if (splits > 1 &&
      !gemm_splitk<T>(acc, ws, counters, (bat * ny + ty0) * gridDim.x + blockIdx.x,
                      split, splits))
    return;
  const int tx = threadIdx.x % (T::BN / T::TN), ty = threadIdx.x / (T::BN / T::TN);
  float csum[T::TN];
#pragma unroll
  for (int j = 0; j < T::TN; ++j) csum[j] = 0.f;
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int row = m0 + (i / 4) * (T::BM / T::TM) * 4 + ty * 4 + i % 4;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int col = n0 + (j / 4) * (T::BN / T::TN) * 4 + tx * 4 + j % 4;
      if (row < M && col < N) {
        const float c = acc[i][j];
        const int idx = row * 4 + col;
        const float v39_0 = c;
        const float v39_1 = (buf0[idx]*buf0[idx]);
        const float v39_2 = (1.f - v39_1);
        const float v39 = (v39_0 * v39_2);
        buf6[idx] = v39;
        csum[j] += v39;
      }
    }
  }
  float colsum;
  if (gemm_colsum<T>(csum, cws, ccount, N, n0, ty0, ny, colsum) && threadIdx.x < T::BN &&
      n0 + (int)threadIdx.x < N) {
    const int cidx = n0 + threadIdx.x;
    const float v40 = colsum;
    const float v49_0 = (v40 * 0.5f);
    const float v49 = (st0[cidx] - v49_0);
    st0[cidx] = v49;
  }
}

// %47 = fused[gemm: matmul, mul, sub](%x, %39, %h.weight)  ->  st1
extern "C" __global__ void __launch_bounds__(256, 2)
k04_gemm_t64(const float* __restrict__ in0, const float* __restrict__ buf6, float* __restrict__ st1, float* __restrict__ ws, int* __restrict__ counters,
    int nb, int splits, int kchunk,
    int ny, int y0, int z0)
{
  typedef Tile64 T;
  const int M = 2, N = 4, K = nb;
  // this block's row tile (of ny) and batch x split: a GEMM with more than
  // CUDA's 65535 blocks in y or z is launched in parts, from y0 and z0 on
  const int ty0 = blockIdx.y + y0, tz = blockIdx.z + z0;
  const int bat = tz / splits, split = tz % splits;
  const int m0 = ty0 * T::BM, n0 = blockIdx.x * T::BN;
  const int k_begin = split * kchunk, k_end = min(K, k_begin + kchunk);
  const MatrixOperand<false, false> a = {in0, 2};
  const MatrixOperand<false, true> b = {buf6, 4};
  float acc[T::TM][T::TN];
  gemm_mainloop<T>(a, b, M, N, k_begin, k_end, m0, n0, acc);
  if (splits > 1 &&
      !gemm_splitk<T>(acc, ws, counters, (bat * ny + ty0) * gridDim.x + blockIdx.x,
                      split, splits))
    return;
  const int tx = threadIdx.x % (T::BN / T::TN), ty = threadIdx.x / (T::BN / T::TN);
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int row = m0 + (i / 4) * (T::BM / T::TM) * 4 + ty * 4 + i % 4;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int col = n0 + (j / 4) * (T::BN / T::TN) * 4 + tx * 4 + j % 4;
      if (row < M && col < N) {
        const float c = acc[i][j];
        const int idx = row * 4 + col;
        const float v47_0 = c;
        const float v47_1 = (v47_0 * 0.5f);
        const float v47 = (st1[idx] - v47_1);
        st1[idx] = v47;
      }
    }
  }
}

// %51 = fused[gemm: matmul, mul, sub](%h, %30, %p.weight)  ->  st3
extern "C" __global__ void __launch_bounds__(256, 2)
k05_gemm_t64(const float* __restrict__ buf0, const float* __restrict__ buf3, float* __restrict__ st3, float* __restrict__ ws, int* __restrict__ counters,
    int nb, int splits, int kchunk,
    int ny, int y0, int z0)
{
  typedef Tile64 T;
  const int M = 4, N = 1, K = nb;
  // this block's row tile (of ny) and batch x split: a GEMM with more than
  // CUDA's 65535 blocks in y or z is launched in parts, from y0 and z0 on
  const int ty0 = blockIdx.y + y0, tz = blockIdx.z + z0;
  const int bat = tz / splits, split = tz % splits;
  const int m0 = ty0 * T::BM, n0 = blockIdx.x * T::BN;
  const int k_begin = split * kchunk, k_end = min(K, k_begin + kchunk);
  const MatrixOperand<false, true> a = {buf0, 4};
  const MatrixOperand<false, false> b = {buf3, 1};
  float acc[T::TM][T::TN];
  gemm_mainloop<T>(a, b, M, N, k_begin, k_end, m0, n0, acc);
  if (splits > 1 &&
      !gemm_splitk<T>(acc, ws, counters, (bat * ny + ty0) * gridDim.x + blockIdx.x,
                      split, splits))
    return;
  const int tx = threadIdx.x % (T::BN / T::TN), ty = threadIdx.x / (T::BN / T::TN);
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int row = m0 + (i / 4) * (T::BM / T::TM) * 4 + ty * 4 + i % 4;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int col = n0 + (j / 4) * (T::BN / T::TN) * 4 + tx * 4 + j % 4;
      if (row < M && col < N) {
        const float c = acc[i][j];
        const int idx = row * 1 + col;
        const float v51_0 = c;
        const float v51_1 = (v51_0 * 0.5f);
        const float v51 = (st3[idx] - v51_1);
        st3[idx] = v51;
      }
    }
  }
}

// %53 = fused[elementwise: mul, sub](%31, %p.bias)  ->  st2
extern "C" __global__ void __launch_bounds__(256)
k06_elementwise(const float* __restrict__ buf4, float* __restrict__ st2, int nb)
{
  const int total = 1;
  for (int i = blockIdx.x * 256 + threadIdx.x; i < total; i += gridDim.x * 256) {
    const int idx = i;
    const float v53_0 = (buf4[idx] * 0.5f);
    const float v53 = (st2[idx] - v53_0);
    st2[idx] = v53;
  }
}
