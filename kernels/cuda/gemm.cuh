// gemm.cuh is the tiled SGEMM core shared by matrix_multiply.cu (plain and fused-epilogue GEMMs
// for the MLP) and image_processing.cu (implicit-GEMM convolution). Everything is row-major:
// C[M,N] = op(A)[M,K] · op(B)[K,N].
//
// One thread block computes a BM×BN tile of C; each thread an TM×TN micro-tile held in registers.
// K is walked in slices of BK=8: the next slice is fetched from global memory into registers while
// the current one is multiplied out of shared memory (double buffering, one barrier per slice).
// A thread's micro-tile is split into 4-wide groups spread across the tile (rows ty*4 + g*TY*4),
// so that the float4 reads of shared memory by a quarter warp hit consecutive addresses (no bank
// conflicts) and the float4 stores of C are coalesced.
//
// The operands are read through loader policies (row-major, transposed, im2col gather) and the
// result is written through an epilogue policy (plain store, bias+ReLU, ReLU mask + column sums,
// NCHW scatter), so every variant shares the same inner loop.
#pragma once

#define GEMM_BK 8
#define GEMM_PAD 4 // shared rows padded by 4 floats: transposed stores are conflict-free, float4 reads stay aligned

template <int BM, int BN, int TM, int TN>
struct TileShape {
	static constexpr int TX = BN / TN; // threads along n
	static constexpr int TY = BM / TM; // threads along m
	static constexpr int THREADS = TX * TY;
	static constexpr int A_PER = BM * GEMM_BK / THREADS; // A elements each thread fetches per slice
	static constexpr int B_PER = BN * GEMM_BK / THREADS;
	static_assert(TM % 4 == 0 && TN % 4 == 0, "micro-tiles are made of float4 groups");
	static_assert(A_PER * THREADS == BM * GEMM_BK && B_PER * THREADS == BN * GEMM_BK, "slices divide evenly");
};

__device__ __forceinline__ float lane4(const float4& v, int c) {
	return c == 0 ? v.x : c == 1 ? v.y : c == 2 ? v.z : v.w;
}

// Loaders fetch one BK-deep slice of an operand per call to next(), into registers, and store it
// into shared memory as s[k][m] (or s[k][n]). Each thread's part of the slice is fixed by its index,
// so addresses and bounds are worked out once in the constructor and next() only advances along k.
// Threads are laid out along the operand's contiguous dimension, so global reads are coalesced.

// op(A) = A, A stored [M,K] with leading dimension lda: k is contiguous. A thread reads column
// tid%8 of rows tid/8 + j·THREADS/8; the slice is stored transposed.
template <int BM, int THREADS>
struct LoadARow {
	static constexpr int PER = BM * GEMM_BK / THREADS, STEP = THREADS / GEMM_BK;
	const float* p;
	long long rowstep;
	int k, K;
	unsigned rows; // bit j: row j is inside the matrix
	__device__ __forceinline__ LoadARow(const float* A, int lda, int M, int K_, int m0, int tid) : K(K_) {
		const int m = m0 + tid / GEMM_BK;
		k = tid % GEMM_BK;
		p = A + (long long)m * lda + k;
		rowstep = (long long)STEP * lda;
		rows = 0;
#pragma unroll
		for (int j = 0; j < PER; ++j) rows |= (m + j * STEP < M ? 1u : 0u) << j;
	}
	__device__ __forceinline__ void next(float (&r)[PER]) {
#pragma unroll
		for (int j = 0; j < PER; ++j) r[j] = (k < K && (rows >> j & 1)) ? __ldg(p + j * rowstep) : 0.f;
		p += GEMM_BK;
		k += GEMM_BK;
	}
	__device__ __forceinline__ void store(float (*s)[BM + GEMM_PAD], const float (&r)[PER], int tid) const {
#pragma unroll
		for (int j = 0; j < PER; ++j) s[tid % GEMM_BK][tid / GEMM_BK + j * STEP] = r[j];
	}
};

// op(A) = Aᵀ, A stored [K,M]: m is contiguous. A thread reads column m0 + tid%BM of rows
// tid/BM + j·THREADS/BM.
template <int BM, int THREADS>
struct LoadATrans {
	static_assert(THREADS % BM == 0, "threads cover whole rows of the slice");
	static constexpr int PER = BM * GEMM_BK / THREADS, STEP = THREADS / BM;
	const float* p;
	long long ld;
	int k, K;
	bool col;
	__device__ __forceinline__ LoadATrans(const float* A, int lda, int M, int K_, int m0, int tid) : ld(lda), K(K_) {
		const int m = m0 + tid % BM;
		k = tid / BM;
		col = m < M;
		p = A + (long long)k * lda + m;
	}
	__device__ __forceinline__ void next(float (&r)[PER]) {
#pragma unroll
		for (int j = 0; j < PER; ++j) r[j] = (col && k + j * STEP < K) ? __ldg(p + j * STEP * ld) : 0.f;
		p += GEMM_BK * ld;
		k += GEMM_BK;
	}
	__device__ __forceinline__ void store(float (*s)[BM + GEMM_PAD], const float (&r)[PER], int tid) const {
#pragma unroll
		for (int j = 0; j < PER; ++j) s[tid / BM + j * STEP][tid % BM] = r[j];
	}
};

// op(B) = B, B stored [K,N]: n is contiguous, the mirror image of LoadATrans.
template <int BN, int THREADS>
struct LoadBRow : LoadATrans<BN, THREADS> {
	__device__ __forceinline__ LoadBRow(const float* B, int ldb, int N, int K, int n0, int tid)
	    : LoadATrans<BN, THREADS>(B, ldb, N, K, n0, tid) {}
};

// op(B) = Bᵀ, B stored [N,K]: k is contiguous, the mirror image of LoadARow.
template <int BN, int THREADS>
struct LoadBTrans : LoadARow<BN, THREADS> {
	__device__ __forceinline__ LoadBTrans(const float* B, int ldb, int N, int K, int n0, int tid)
	    : LoadARow<BN, THREADS>(B, ldb, N, K, n0, tid) {}
};

// gemm_tile computes the tile of C at (m0, n0) and hands it to the epilogue ep, four columns at a
// time. The epilogue has M and N, column(n) (whatever its stores need to know about columns
// n..n+3), finish(m, n, v) (the values to store, e.g. with bias and ReLU), store(col, m, n, v),
// and, when kColSum, colsum(n, s) receiving this thread's sum of column n.
template <int BM, int BN, int TM, int TN, class LA, class LB, class EP>
__device__ __forceinline__ void gemm_tile(LA& la, LB& lb, const EP& ep, int K, int m0, int n0) {
	using T = TileShape<BM, BN, TM, TN>;
	__shared__ __align__(16) float As[2][GEMM_BK][BM + GEMM_PAD];
	__shared__ __align__(16) float Bs[2][GEMM_BK][BN + GEMM_PAD];

	const int tid = threadIdx.x;
	const int tx = tid % T::TX, ty = tid / T::TX;

	float acc[TM][TN];
#pragma unroll
	for (int i = 0; i < TM; ++i)
#pragma unroll
		for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

	static_assert(LA::PER == T::A_PER && LB::PER == T::B_PER, "loaders match the tile");
	float ra[T::A_PER], rb[T::B_PER];
	la.next(ra);
	lb.next(rb);
	la.store(As[0], ra, tid);
	lb.store(Bs[0], rb, tid);
	__syncthreads();

	const int slices = (K + GEMM_BK - 1) / GEMM_BK;
	for (int t = 0; t < slices; ++t) {
		const int cur = t & 1;
		const bool more = t + 1 < slices;
		if (more) { // fetch the next slice while this one is multiplied
			la.next(ra);
			lb.next(rb);
		}
#pragma unroll
		for (int kk = 0; kk < GEMM_BK; ++kk) {
			float4 a4[TM / 4], b4[TN / 4];
#pragma unroll
			for (int g = 0; g < TM / 4; ++g)
				a4[g] = *reinterpret_cast<const float4*>(&As[cur][kk][g * T::TY * 4 + ty * 4]);
#pragma unroll
			for (int g = 0; g < TN / 4; ++g)
				b4[g] = *reinterpret_cast<const float4*>(&Bs[cur][kk][g * T::TX * 4 + tx * 4]);
#pragma unroll
			for (int i = 0; i < TM; ++i) {
				const float a = lane4(a4[i / 4], i % 4);
#pragma unroll
				for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a, lane4(b4[j / 4], j % 4), acc[i][j]);
			}
		}
		if (more) {
			la.store(As[cur ^ 1], ra, tid);
			lb.store(Bs[cur ^ 1], rb, tid);
		}
		__syncthreads();
	}

	// Epilogue, one group of four columns at a time, so that what an epilogue derives from the
	// column alone (the NCHW scatter's image and pixel offsets) is worked out once per group.
#pragma unroll
	for (int g = 0; g < TN / 4; ++g) {
		const int n = n0 + g * T::TX * 4 + tx * 4;
		if (n >= ep.N) continue;
		const auto col = ep.column(n);
		float4 sum = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
		for (int i = 0; i < TM; ++i) {
			const int m = m0 + (i / 4) * T::TY * 4 + ty * 4 + i % 4;
			if (m >= ep.M) continue;
			float4 v = make_float4(acc[i][g * 4], acc[i][g * 4 + 1], acc[i][g * 4 + 2], acc[i][g * 4 + 3]);
			v = ep.finish(m, n, v);
			ep.store(col, m, n, v);
			sum.x += v.x;
			sum.y += v.y;
			sum.z += v.z;
			sum.w += v.w;
		}
		if (EP::kColSum) {
			ep.colsum(n, sum.x);
			if (n + 1 < ep.N) ep.colsum(n + 1, sum.y);
			if (n + 2 < ep.N) ep.colsum(n + 2, sum.z);
			if (n + 3 < ep.N) ep.colsum(n + 3, sum.w);
		}
	}
}

// Stores into a row-major C with leading dimension ldc, a float4 at a time where alignment and
// bounds allow it.
struct StoreRow {
	float* C;
	long long ldc;
	int M, N;
	__device__ __forceinline__ StoreRow(float* C_, int ldc_, int M_, int N_) : C(C_), ldc(ldc_), M(M_), N(N_) {}
	__device__ __forceinline__ int column(int n) const { return n; }
	__device__ __forceinline__ void store(int, int m, int n, float4 v) const {
		float* p = C + (long long)m * ldc + n;
		if (n + 3 < N && (ldc & 3) == 0) {
			*reinterpret_cast<float4*>(p) = v;
			return;
		}
		p[0] = v.x;
		if (n + 1 < N) p[1] = v.y;
		if (n + 2 < N) p[2] = v.z;
		if (n + 3 < N) p[3] = v.w;
	}
};

// Reads four consecutive elements of a row-major matrix shaped like C, zero past N.
__device__ __forceinline__ float4 load4(const float* X, long long ldx, int N, int m, int n) {
	const float* p = X + (long long)m * ldx + n;
	if (n + 3 < N && (ldx & 3) == 0) return *reinterpret_cast<const float4*>(p);
	return make_float4(p[0], n + 1 < N ? p[1] : 0.f, n + 2 < N ? p[2] : 0.f, n + 3 < N ? p[3] : 0.f);
}

__device__ __forceinline__ float4 bias4(const float* b, int N, int n) {
	return make_float4(b[n], n + 1 < N ? b[n + 1] : 0.f, n + 2 < N ? b[n + 2] : 0.f, n + 3 < N ? b[n + 3] : 0.f);
}

// C = A·B.
struct EpiPlain : StoreRow {
	static constexpr bool kColSum = false;
	__device__ __forceinline__ EpiPlain(float* C, int ldc, int M, int N, const float*, float*) : StoreRow(C, ldc, M, N) {}
	__device__ __forceinline__ float4 finish(int, int, float4 v) const { return v; }
	__device__ __forceinline__ void colsum(int, float) const {}
};

// C = relu(A·B + bias), the hidden layer's forward pass in one kernel.
struct EpiBiasRelu : StoreRow {
	const float* bias;
	static constexpr bool kColSum = false;
	__device__ __forceinline__ EpiBiasRelu(float* C, int ldc, int M, int N, const float* b, float*)
	    : StoreRow(C, ldc, M, N), bias(b) {}
	__device__ __forceinline__ float4 finish(int, int n, float4 v) const {
		const float4 b = bias4(bias, N, n);
		return make_float4(fmaxf(v.x + b.x, 0.f), fmaxf(v.y + b.y, 0.f), fmaxf(v.z + b.z, 0.f), fmaxf(v.w + b.w, 0.f));
	}
	__device__ __forceinline__ void colsum(int, float) const {}
};

// C = (A·B) ⊙ [H > 0] and colsums += column sums of C: the gradient through the ReLU and the
// hidden bias's gradient, in the kernel that computes dH. colsums must start at zero.
struct EpiReluGradColSum : StoreRow {
	const float* H; // the forward activations, shaped and strided like C
	float* colsums;
	static constexpr bool kColSum = true;
	__device__ __forceinline__ EpiReluGradColSum(float* C, int ldc, int M, int N, const float* H_, float* sums)
	    : StoreRow(C, ldc, M, N), H(H_), colsums(sums) {}
	__device__ __forceinline__ float4 finish(int m, int n, float4 v) const {
		const float4 h = load4(H, ldc, N, m, n);
		return make_float4(h.x > 0.f ? v.x : 0.f, h.y > 0.f ? v.y : 0.f, h.z > 0.f ? v.z : 0.f, h.w > 0.f ? v.w : 0.f);
	}
	__device__ __forceinline__ void colsum(int n, float s) const { atomicAdd(colsums + n, s); }
};
