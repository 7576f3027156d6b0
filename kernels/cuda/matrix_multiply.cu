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
