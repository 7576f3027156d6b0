// image_processing.cu: 2D convolution (NCHW, stride 1, zero padding K/2, no bias) as an implicit
// GEMM: out[f, p] = Σ_k w[f, k] · col[k, p], where k runs over (c, ky, kx) and p over the output
// pixels (n, y, x) of the whole batch. The im2col matrix col is never built: the B loader gathers
// each element from the input image as the GEMM core (gemm.cuh) asks for it, and the epilogue
// scatters the result tile back into NCHW.
//
// The gather uses a per-k table built by the host, {c·H·W + dy·W + dx, dy, dx}, so that the inner
// loop does one table read and two bounds checks instead of divisions. The divisions that remain
// (a pixel's image and position: once per thread, and once per group of four outputs) are done
// in Index, int when the sizes allow it: a 64-bit division costs a GPU several times a 32-bit one.
#include "gemm.cuh"

struct ConvTap {
	long long delta; // input offset of the tap relative to the output pixel's own position
	int dy, dx;
};

// div_mod returns a / b and a % b computed in Index (int when the host has checked that the
// input and output have fewer than 2³¹ elements, see ptx.PlanConv), as long long. Offsets stay
// 64-bit: only the division is narrowed, so addresses keep their 64-bit arithmetic.
template <class Index>
__device__ __forceinline__ long long div_mod(long long a, long long b, long long& rem) {
	const Index q = (Index)a / (Index)b;
	rem = (long long)((Index)a - q * (Index)b);
	return (long long)q;
}

// Gathers a slice of col: thread tid owns pixel p0 + tid%BN and rows tid/BN + j·THREADS/BN.
template <int BN, int THREADS, class Index>
struct LoadIm2col {
	static_assert(THREADS % BN == 0, "threads cover whole rows of the slice");
	static constexpr int PER = BN * GEMM_BK / THREADS, STEP = THREADS / BN;
	const float* base; // the input at the pixel's own position, channel 0
	const ConvTap* taps;
	int k, K, y, x, H, W;
	bool valid;
	__device__ __forceinline__ LoadIm2col(const float* in, const ConvTap* taps_, int C, int H_, int W_, long long P,
	                                      int K_, long long p0, int tid)
	    : taps(taps_), K(K_), H(H_), W(W_) {
		const long long p = p0 + tid % BN, hw = (long long)H * W;
		valid = p < P;
		long long yx = 0;
		const long long img = valid ? div_mod<Index>(p, hw, yx) : 0;
		y = (int)yx / W;
		x = (int)yx - y * W;
		base = in + img * C * hw + yx;
		k = tid / BN;
	}
	__device__ __forceinline__ void next(float (&r)[PER]) {
#pragma unroll
		for (int j = 0; j < PER; ++j) {
			const int kj = k + j * STEP;
			float v = 0.f;
			if (valid && kj < K) {
				const ConvTap t = taps[kj];
				if ((unsigned)(y + t.dy) < (unsigned)H && (unsigned)(x + t.dx) < (unsigned)W) v = __ldg(base + t.delta);
			}
			r[j] = v;
		}
		k += GEMM_BK;
	}
	__device__ __forceinline__ void store(float (*s)[BN + GEMM_PAD], const float (&r)[PER], int tid) const {
#pragma unroll
		for (int j = 0; j < PER; ++j) s[tid / BN + j * STEP][tid % BN] = r[j];
	}
};

// Writes a tile (filters × pixels p0+n) into out[img, f, y, x]. A group of four pixels is stored
// as one float4 when the four are in one image and 16-byte aligned, which holds whenever H·W is a
// multiple of 4 (tiles and groups start at multiples of 4). Pixel indices are 64-bit (a large
// batch has more than 2³¹ of them), divided in Index; inside a tile they fit an int.
template <class Index>
struct EpiNCHW {
	struct Column {
		long long base; // offset of (img, f = 0, yx)
		bool vec;
	};
	float* out;
	long long hw, P, p0;
	int M, N; // filters; pixels in this tile
	__device__ __forceinline__ EpiNCHW(float* out_, long long hw_, long long P_, long long p0_, int F, int BN)
	    : out(out_), hw(hw_), P(P_), p0(p0_), M(F), N((int)(P_ - p0_ < BN ? P_ - p0_ : BN)) {}
	static constexpr bool kColSum = false;
	__device__ __forceinline__ float4 finish(int, int, float4 v) const { return v; }
	__device__ __forceinline__ void colsum(int, float) const {}
	__device__ __forceinline__ Column column(int n) const {
		long long yx;
		const long long img = div_mod<Index>(p0 + n, hw, yx);
		return {img * M * hw + yx, (hw & 3) == 0 && n + 3 < N};
	}
	__device__ __forceinline__ void store(const Column& col, int f, int n, float4 v) const {
		if (col.vec) {
			*reinterpret_cast<float4*>(out + col.base + f * hw) = v;
			return;
		}
		const float vs[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
		for (int c = 0; c < 4; ++c) {
			if (n + c >= N) break;
			long long yx;
			const long long img = div_mod<Index>(p0 + n + c, hw, yx);
			out[(img * M + f) * hw + yx] = vs[c];
		}
	}
};

// Grid: (pixel tiles, filter tiles). Arguments: in [N,C,H,W], w [F, C·K·K], out [N,F,H,W],
// taps [C·K·K], C, H, W, F, C·K·K, P = N·H·W. The plain names divide in int, the _i64 ones in
// long long (ptx.PlanConv picks).
#define DEFINE_CONV(name, BM, BN, TM, TN, blocks, Index)                                                          \
	extern "C" __global__ void __launch_bounds__((BM / TM) * (BN / TN), blocks)                            \
	    name(const float* __restrict__ in, const float* __restrict__ w, float* __restrict__ out,           \
	         const ConvTap* __restrict__ taps, int C, int H, int W, int F, int CKK, long long P) {         \
		constexpr int threads = (BM / TM) * (BN / TN);                                                     \
		const int f0 = blockIdx.y * BM;                                                                    \
		const long long p0 = (long long)blockIdx.x * BN;                                                   \
		LoadARow<BM, threads> la(w, CKK, F, CKK, f0, threadIdx.x);                                         \
		LoadIm2col<BN, threads, Index> lb(in, taps, C, H, W, P, CKK, p0, threadIdx.x);                     \
		const EpiNCHW<Index> ep(out, (long long)H * W, P, p0, F, BN);                                      \
		gemm_tile<BM, BN, TM, TN>(la, lb, ep, CKK, f0, 0);                                                 \
	}

// 64 filters per block for the common first layers (3→64), 128 when there are many filters.
DEFINE_CONV(conv2d_igemm_64, 64, 128, 8, 8, 3, int)
DEFINE_CONV(conv2d_igemm_128, 128, 128, 8, 8, 2, int)
DEFINE_CONV(conv2d_igemm_64_i64, 64, 128, 8, 8, 3, long long)
DEFINE_CONV(conv2d_igemm_128_i64, 128, 128, 8, 8, 2, long long)
