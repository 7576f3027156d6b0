// neural_network.cu: the elementwise and reduction kernels of the MLP's training step. The GEMMs
// come from matrix_multiply.cu (fused bias+ReLU and ReLU-gradient epilogues) or from cuBLAS, in
// which case bias_relu and relu_grad_colsum apply what the epilogues would have. One step is:
//   H = relu(X·W1 + b1); Z = H·W2; softmax_xent (adds b2, loss, dZ, db2); dW2 = Hᵀ·dZ;
//   dH = (dZ·W2ᵀ) ⊙ [H>0], db1 = colsum(dH); dW1 = Xᵀ·dH; adam (every parameter, one launch).
// Parameters, gradients and Adam's moments each live in one flat buffer [W1|b1|W2|b2], so Adam is
// a single elementwise pass; it also zeroes the gradients, which the bias reductions accumulate into.
#include <math.h>

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
	return v;
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
	return v;
}

// h = relu(h + b) over a [rows, cols] matrix.
extern "C" __global__ void bias_relu(float* __restrict__ h, const float* __restrict__ b, int rows, int cols) {
	const long long n = (long long)rows * cols;
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
		h[i] = fmaxf(h[i] + b[i % cols], 0.f);
}

// One warp per row of the logits z [rows, cols]: z += b2, then z becomes dL/dz = (softmax − onehot)/batch.
// The row's loss −log softmax[label] is added to *loss_sum (and to *loss_first when not null: the
// first batch of the run), and each column of dL/dz to db2 (which must start at zero).
extern "C" __global__ void softmax_xent(float* __restrict__ z, const float* __restrict__ b2, const int* __restrict__ labels,
                                        int rows, int cols, float inv_batch, float* loss_sum, float* loss_first,
                                        float* __restrict__ db2) {
	const int lane = threadIdx.x & 31;
	const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
	if (row >= rows) return;
	float* zr = z + (long long)row * cols;
	float mx = -INFINITY;
	for (int j = lane; j < cols; j += 32) {
		const float v = zr[j] + b2[j];
		zr[j] = v;
		mx = fmaxf(mx, v);
	}
	mx = warp_max(mx);
	float s = 0.f;
	for (int j = lane; j < cols; j += 32) s += expf(zr[j] - mx);
	s = warp_sum(s);
	const int y = labels[row];
	__syncwarp();
	const float zy = zr[y];
	__syncwarp(); // every lane has read zr[y] before any overwrites it
	if (lane == 0) {
		const float loss = logf(s) + mx - zy;
		atomicAdd(loss_sum, loss);
		if (loss_first) atomicAdd(loss_first, loss);
	}
	const float inv_s = 1.f / s;
	for (int j = lane; j < cols; j += 32) {
		float g = expf(zr[j] - mx) * inv_s;
		if (j == y) g -= 1.f;
		g *= inv_batch;
		zr[j] = g;
		atomicAdd(db2 + j, g);
	}
}

// dh = dh ⊙ [h > 0] and db1 += colsum(dh), for the cuBLAS path. Blocks of 32 columns × 8 row
// lanes; each lane walks rows with a stride, the 8 lanes are summed in shared memory, and one
// atomic per column and block goes to db1 (which must start at zero).
extern "C" __global__ void __launch_bounds__(256) relu_grad_colsum(float* __restrict__ dh, const float* __restrict__ h,
                                                                   int rows, int cols, float* __restrict__ db1) {
	__shared__ float part[8][33];
	const int col = blockIdx.x * 32 + threadIdx.x;
	float s = 0.f;
	if (col < cols) {
		for (int r = blockIdx.y * 8 + threadIdx.y; r < rows; r += 8 * gridDim.y) {
			const long long i = (long long)r * cols + col;
			const float v = h[i] > 0.f ? dh[i] : 0.f;
			dh[i] = v;
			s += v;
		}
	}
	part[threadIdx.y][threadIdx.x] = s;
	__syncthreads();
	if (threadIdx.y == 0 && col < cols) {
		float t = 0.f;
#pragma unroll
		for (int k = 0; k < 8; ++k) t += part[k][threadIdx.x];
		atomicAdd(db1 + col, t);
	}
}

// One warp per row: *correct += 1 when argmax(z + b2) (first maximum, as the CPU) equals the label.
extern "C" __global__ void count_correct(const float* __restrict__ z, const float* __restrict__ b2,
                                         const int* __restrict__ labels, int rows, int cols, int* correct) {
	const int lane = threadIdx.x & 31;
	const int row = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
	if (row >= rows) return;
	const float* zr = z + (long long)row * cols;
	float best = -INFINITY;
	int arg = cols; // larger than any index, so a lane without columns never wins
	for (int j = lane; j < cols; j += 32) {
		const float v = zr[j] + b2[j];
		if (v > best) best = v, arg = j;
	}
#pragma unroll
	for (int o = 16; o > 0; o >>= 1) {
		const float ob = __shfl_xor_sync(0xffffffffu, best, o);
		const int oa = __shfl_xor_sync(0xffffffffu, arg, o);
		if (ob > best || (ob == best && oa < arg)) best = ob, arg = oa;
	}
	if (lane == 0 && arg == labels[row]) atomicAdd(correct, 1);
}

// One Adam step (PyTorch's formulation, bias-corrected) over n parameters, then g = 0.
// step_size = lr / (1 − β1ᵗ) and sqrt_c2 = √(1 − β2ᵗ) come from the host; omb1 = 1 − β1 and
// omb2 = 1 − β2 too, rounded to float the way the CPU trainer rounds them.
extern "C" __global__ void adam(float* __restrict__ w, float* __restrict__ g, float* __restrict__ m, float* __restrict__ v,
                                long long n, float step_size, float sqrt_c2, float b1, float omb1, float b2, float omb2,
                                float eps) {
	for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
		const float gi = g[i];
		const float mi = b1 * m[i] + omb1 * gi;
		const float vi = b2 * v[i] + omb2 * gi * gi;
		m[i] = mi;
		v[i] = vi;
		w[i] -= step_size * mi / (sqrtf(vi) / sqrt_c2 + eps);
		g[i] = 0.f;
	}
}
