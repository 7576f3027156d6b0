// cuda_emu.h runs CUDA kernels on the CPU, one std::thread per CUDA thread, blocks one after
// another, so their index arithmetic can be tested without a GPU. Only what the kernels of
// kernels/cuda use is emulated; performance is irrelevant.
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __launch_bounds__(...)
#define __shared__ static
#define __align__(n) __attribute__((aligned(n)))

struct float4 { float x, y, z, w; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
struct dim3 { unsigned x = 1, y = 1, z = 1; };

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* block_barrier;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline float warp_xchg[1024];
inline int warp_xchg_i[1024];
inline std::mutex atomic_mu;

inline int flat_tid() { return threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y; }
inline void __syncthreads() { block_barrier->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { warp_barriers[flat_tid() / 32]->arrive_and_wait(); }
template <class T> inline T __ldg(const T* p) { return *p; }
inline float atomicAdd(float* p, float v) { std::lock_guard<std::mutex> g(atomic_mu); float o = *p; *p = o + v; return o; }
inline int atomicAdd(int* p, int v) { std::lock_guard<std::mutex> g(atomic_mu); int o = *p; *p = o + v; return o; }
inline float __shfl_xor_sync(unsigned, float v, int mask) {
	int t = flat_tid(), base = t & ~31;
	__syncwarp();
	warp_xchg[t] = v;
	__syncwarp();
	float r = warp_xchg[base + ((t - base) ^ mask)];
	__syncwarp();
	return r;
}
inline int __shfl_xor_sync(unsigned, int v, int mask) {
	int t = flat_tid(), base = t & ~31;
	__syncwarp();
	warp_xchg_i[t] = v;
	__syncwarp();
	int r = warp_xchg_i[base + ((t - base) ^ mask)];
	__syncwarp();
	return r;
}

// launch runs kernel(args...) over grid × block; threads of a block run concurrently.
template <class F, class... A>
void launch(dim3 grid, dim3 block, F kernel, A... args) {
	gridDim = grid;
	blockDim = block;
	const int n = block.x * block.y * block.z;
	for (unsigned bz = 0; bz < grid.z; ++bz)
		for (unsigned by = 0; by < grid.y; ++by)
			for (unsigned bx = 0; bx < grid.x; ++bx) {
				std::barrier<> bar(n);
				block_barrier = &bar;
				warp_barriers.clear();
				for (int w = 0; w < (n + 31) / 32; ++w) warp_barriers.emplace_back(new std::barrier<>(std::min(32, n - 32 * w)));
				std::vector<std::thread> ts;
				for (int t = 0; t < n; ++t)
					ts.emplace_back([=] {
						blockIdx = {bx, by, bz};
						threadIdx = {unsigned(t % block.x), unsigned(t / block.x % block.y), unsigned(t / (block.x * block.y))};
						kernel(args...);
					});
				for (auto& t : ts) t.join();
			}
}
