// matrix_multiply.cu: the SGEMM kernels of the PTX path (used when cuBLAS cannot be loaded, or
// when asked for). matrix_multiply uses the plain NN kernels; the MLP uses the fused variants:
// forward with bias+ReLU, and backward with the ReLU mask and bias gradient folded into dH.
//
// Two tile shapes per variant: 128×128 (8×8 per thread, 256 threads) for large products, and
// 64×64 (4×8 per thread, 128 threads) when the large tiles would leave SMs idle. Arguments are
// the same for every entry point, so the host launches them through one code path:
//   (M, N, K, A, lda, B, ldb, C, ldc, aux, aux2)
// aux is the bias (bias_relu) or the forward activations H (relugrad); aux2 the bias gradient.
#include "gemm.cuh"

#define GEMM_ARGS                                                                                 \
	int M, int N, int K, const float *__restrict__ A, int lda, const float *__restrict__ B, int ldb, \
	    float *__restrict__ C, int ldc, const float *__restrict__ aux, float *__restrict__ aux2

// The grid is (N tiles, M tiles): blocks along x share a row of A tiles, which stays in L2.
#define DEFINE_GEMM_(name, BM, BN, TM, TN, blocks, LA, LB, EPI)                                       \
	extern "C" __global__ void __launch_bounds__((BM / TM) * (BN / TN), blocks) name(GEMM_ARGS) {       \
		constexpr int threads = (BM / TM) * (BN / TN);                                                 \
		const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;                                          \
		LA<BM, threads> la(A, lda, M, K, m0, threadIdx.x);                                             \
		LB<BN, threads> lb(B, ldb, N, K, n0, threadIdx.x);                                             \
		const EPI ep(C, ldc, M, N, aux, aux2);                                                         \
		gemm_tile<BM, BN, TM, TN>(la, lb, ep, K, m0, n0);                                              \
	}

#define DEFINE_GEMM(...) DEFINE_GEMM_(__VA_ARGS__) // expands LARGE/SMALL first


#define LARGE 128, 128, 8, 8, 2
#define SMALL 64, 64, 4, 8, 4

// C = A·B
DEFINE_GEMM(sgemm_nn_128, LARGE, LoadARow, LoadBRow, EpiPlain)
DEFINE_GEMM(sgemm_nn_64, SMALL, LoadARow, LoadBRow, EpiPlain)
// C = Aᵀ·B (weight gradients: Hᵀ·dZ, Xᵀ·dH)
DEFINE_GEMM(sgemm_tn_128, LARGE, LoadATrans, LoadBRow, EpiPlain)
DEFINE_GEMM(sgemm_tn_64, SMALL, LoadATrans, LoadBRow, EpiPlain)
// C = relu(A·B + aux)
DEFINE_GEMM(sgemm_nn_bias_relu_128, LARGE, LoadARow, LoadBRow, EpiBiasRelu)
DEFINE_GEMM(sgemm_nn_bias_relu_64, SMALL, LoadARow, LoadBRow, EpiBiasRelu)
// C = (A·Bᵀ) ⊙ [aux > 0], aux2 += colsum(C)
DEFINE_GEMM(sgemm_nt_relugrad_128, LARGE, LoadARow, LoadBTrans, EpiReluGradColSum)
DEFINE_GEMM(sgemm_nt_relugrad_64, SMALL, LoadARow, LoadBTrans, EpiReluGradColSum)

// Split-K, for products with too few tiles to fill the GPU and a K long enough to cut (1000² on
// an H100/H200, the MLP's X·W1 and H·W2; the host decides, see ptx.PlanGemm): block (x, y, z)
// computes its tile's partial product over the K slice [z·kchunk, min(K, (z+1)·kchunk)) into
// W[z], an [M,N] matrix with leading dimension N. kchunk is a multiple of GEMM_BK, and every slice
// is non-empty. splitk_reduce then sums the slices in a fixed order, so results do not depend on
// how the blocks were scheduled, and applies the epilogue.
#define DEFINE_GEMM_SPLITK_(name, BM, BN, TM, TN, blocks)                                                      \
	extern "C" __global__ void __launch_bounds__((BM / TM) * (BN / TN), blocks)                                 \
	    name(int M, int N, int K, int kchunk, const float *__restrict__ A, int lda, const float *__restrict__ B, \
	         int ldb, float *__restrict__ W) {                                                                  \
		constexpr int threads = (BM / TM) * (BN / TN);                                                          \
		const int m0 = blockIdx.y * BM, n0 = blockIdx.x * BN;                                                   \
		const int k0 = blockIdx.z * kchunk, kn = K - k0 < kchunk ? K - k0 : kchunk;                             \
		LoadARow<BM, threads> la(A + k0, lda, M, kn, m0, threadIdx.x);                                          \
		LoadBRow<BN, threads> lb(B + (long long)k0 * ldb, ldb, N, kn, n0, threadIdx.x);                         \
		const EpiPlain ep(W + (long long)blockIdx.z * M * N, N, M, N, nullptr, nullptr);                        \
		gemm_tile<BM, BN, TM, TN>(la, lb, ep, kn, m0, n0);                                                      \
	}
#define DEFINE_GEMM_SPLITK(...) DEFINE_GEMM_SPLITK_(__VA_ARGS__)

DEFINE_GEMM_SPLITK(sgemm_nn_splitk_128, LARGE)
DEFINE_GEMM_SPLITK(sgemm_nn_splitk_64, SMALL)

// C[m, n] = Σ_z W[z][m, n], plus bias[n] when bias is not null, through a ReLU when relu: the
// epilogues EpiPlain and EpiBiasRelu for split products. Grid (N/256, M), 256 threads. The host
// keeps splits·M·N below 2³¹ (the workspace is capped far below that).
extern "C" __global__ void splitk_reduce(const float *__restrict__ W, int splits, int M, int N, float *__restrict__ C, int ldc,
                                         const float *__restrict__ bias, int relu) {
	const int n = blockIdx.x * blockDim.x + threadIdx.x, m = blockIdx.y;
	if (n >= N || m >= M) return;
	const int mn = M * N;
	const float* w = W + m * N + n;
	float s = 0.f;
	for (int z = 0; z < splits; ++z) s += w[z * mn];
	if (bias != nullptr) s += bias[n];
	if (relu) s = fmaxf(s, 0.f);
	C[(long long)m * ldc + n] = s;
}
