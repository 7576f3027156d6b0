// kernels_test.cc runs the kernels of kernels/cuda on the CPU (cuda_emu.h) against plain float64
// references: every GEMM variant and tile shape on odd sizes, both convolution kernels, vector
// addition and the MLP kernels. Built and run by emu_test.go.
#include "cuda_emu.h"
#include <cstdio>
#include <array>
#include <random>
#include "vector_addition.cu"
#include "matrix_multiply.cu"
#include "image_processing.cu"
#include "neural_network.cu"

static int failures = 0;
static std::mt19937 rng(1);
static std::vector<float> rnd(size_t n) {
	std::uniform_real_distribution<float> u(-1, 1);
	std::vector<float> v(n);
	for (auto& x : v) x = u(rng);
	return v;
}
static void expect(bool ok, const char* what, double got, double want) {
	if (!ok) {
		++failures;
		std::printf("FAIL %s: got %g want %g\n", what, got, want);
	}
}
static unsigned cdiv(long a, long b) { return unsigned((a + b - 1) / b); }

typedef void (*gemm_fn)(int, int, int, const float*, int, const float*, int, float*, int, const float*, float*);

// mode 0 plain, 1 bias+relu, 2 relu-grad+colsum; ta: A stored [K,M]; tb: B stored [N,K].
static void check_gemm(const char* name, gemm_fn fn, int tile, int threads, bool ta, bool tb, int mode, int M, int N, int K) {
	int lda = ta ? M + 1 : K + 3, ldb = tb ? K + 2 : N + 1, ldc = N + (mode == 2 ? 0 : 4);
	auto A = rnd(size_t(ta ? K : M) * lda), B = rnd(size_t(tb ? N : K) * ldb), aux = rnd(size_t(M) * ldc);
	std::vector<float> C(size_t(M) * ldc, 7.f), sums(N, 0.f);
	auto a = [&](int m, int k) { return ta ? A[size_t(k) * lda + m] : A[size_t(m) * lda + k]; };
	auto b = [&](int k, int n) { return tb ? B[size_t(n) * ldb + k] : B[size_t(k) * ldb + n]; };
	launch(dim3{cdiv(N, tile), cdiv(M, tile)}, dim3{unsigned(threads)}, fn, M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc,
	       aux.data(), sums.data());
	std::vector<double> colsum(N, 0);
	double worst = 0;
	for (int m = 0; m < M; ++m)
		for (int n = 0; n < ldc; ++n) {
			double want;
			if (n >= N) {
				want = 7; // padding columns untouched
			} else {
				want = 0;
				for (int k = 0; k < K; ++k) want += double(a(m, k)) * b(k, n);
				if (mode == 1) want = std::max(want + aux[n], 0.0);
				if (mode == 2) want = aux[size_t(m) * ldc + n] > 0 ? want : 0, colsum[n] += want;
			}
			worst = std::max(worst, std::fabs(C[size_t(m) * ldc + n] - want));
		}
	char what[128];
	std::snprintf(what, sizeof what, "%s M=%d N=%d K=%d", name, M, N, K);
	expect(worst < 1e-4 * (K + 1), what, worst, 0);
	if (mode == 2)
		for (int n = 0; n < N; ++n) expect(std::fabs(sums[n] - colsum[n]) < 1e-3 * (M + 1), "colsum", sums[n], colsum[n]);
}

typedef void (*splitk_fn)(int, int, int, int, const float*, int, const float*, int, float*);

// Split-K: the partial products of `splits` K slices of kchunk, then splitk_reduce, with a plain
// (relu 0, no bias) or a bias+ReLU epilogue, into a C with padding columns that must stay as they were.
static void check_splitk(const char* name, splitk_fn fn, int tile, int threads, int M, int N, int K, int kchunk, bool bias_relu) {
	int lda = K + 3, ldb = N + 1, ldc = N + 4, splits = (K + kchunk - 1) / kchunk;
	auto A = rnd(size_t(M) * lda), B = rnd(size_t(K) * ldb), bias = rnd(N);
	std::vector<float> W(size_t(splits) * M * N, 5.f), C(size_t(M) * ldc, 7.f);
	launch(dim3{cdiv(N, tile), cdiv(M, tile), unsigned(splits)}, dim3{unsigned(threads)}, fn, M, N, K, kchunk, (const float*)A.data(), lda,
	       (const float*)B.data(), ldb, W.data());
	launch(dim3{cdiv(N, 256), unsigned(M)}, dim3{256}, splitk_reduce, (const float*)W.data(), splits, M, N, C.data(), ldc,
	       bias_relu ? (const float*)bias.data() : (const float*)nullptr, bias_relu ? 1 : 0);
	double worst = 0;
	for (int m = 0; m < M; ++m)
		for (int n = 0; n < ldc; ++n) {
			double want = 7;
			if (n < N) {
				want = 0;
				for (int k = 0; k < K; ++k) want += double(A[size_t(m) * lda + k]) * B[size_t(k) * ldb + n];
				if (bias_relu) want = std::max(want + bias[n], 0.0);
			}
			worst = std::max(worst, std::fabs(C[size_t(m) * ldc + n] - want));
		}
	char what[160];
	std::snprintf(what, sizeof what, "%s M=%d N=%d K=%d kchunk=%d splits=%d%s", name, M, N, K, kchunk, splits, bias_relu ? " bias+relu" : "");
	expect(worst < 1e-4 * (K + 1), what, worst, 0);
}

static void check_conv(const char* name, decltype(&conv2d_igemm_64) fn, int tileF, int threads, int Nn, int C, int H, int W, int F, int K) {
	auto in = rnd(size_t(Nn) * C * H * W), w = rnd(size_t(F) * C * K * K);
	std::vector<float> out(size_t(Nn) * F * H * W, 7.f);
	int ckk = C * K * K, pad = K / 2;
	std::vector<ConvTap> taps(ckk);
	for (int k = 0; k < ckk; ++k) {
		int c = k / (K * K), ky = k / K % K, kx = k % K;
		taps[k] = {(long long)c * H * W + (long long)(ky - pad) * W + (kx - pad), ky - pad, kx - pad};
	}
	long long P = (long long)Nn * H * W;
	launch(dim3{cdiv(P, 128), cdiv(F, tileF)}, dim3{unsigned(threads)}, fn, (const float*)in.data(), (const float*)w.data(), out.data(),
	       (const ConvTap*)taps.data(), C, H, W, F, ckk, P);
	double worst = 0;
	for (int n = 0; n < Nn; ++n)
		for (int f = 0; f < F; ++f)
			for (int y = 0; y < H; ++y)
				for (int x = 0; x < W; ++x) {
					double acc = 0;
					for (int c = 0; c < C; ++c)
						for (int ky = 0; ky < K; ++ky)
							for (int kx = 0; kx < K; ++kx) {
								int iy = y + ky - pad, ix = x + kx - pad;
								if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
								acc += double(in[((size_t(n) * C + c) * H + iy) * W + ix]) * w[((size_t(f) * C + c) * K + ky) * K + kx];
							}
					worst = std::max(worst, std::fabs(out[((size_t(n) * F + f) * H + y) * W + x] - acc));
				}
	char what[128];
	std::snprintf(what, sizeof what, "%s %dx%dx%dx%d F=%d K=%d", name, Nn, C, H, W, F, K);
	expect(worst < 1e-4 * (ckk + 1), what, worst, 0);
}

int main() {
	for (auto s : {std::array<int, 3>{1, 1, 1}, {7, 5, 3}, {70, 129, 33}, {130, 65, 17}, {64, 10, 256}}) {
		int M = s[0], N = s[1], K = s[2];
		check_gemm("sgemm_nn_128", sgemm_nn_128, 128, 256, false, false, 0, M, N, K);
		check_gemm("sgemm_nn_64", sgemm_nn_64, 64, 128, false, false, 0, M, N, K);
		check_gemm("sgemm_tn_128", sgemm_tn_128, 128, 256, true, false, 0, M, N, K);
		check_gemm("sgemm_tn_64", sgemm_tn_64, 64, 128, true, false, 0, M, N, K);
		check_gemm("sgemm_nn_bias_relu_128", sgemm_nn_bias_relu_128, 128, 256, false, false, 1, M, N, K);
		check_gemm("sgemm_nn_bias_relu_64", sgemm_nn_bias_relu_64, 64, 128, false, false, 1, M, N, K);
		check_gemm("sgemm_nt_relugrad_128", sgemm_nt_relugrad_128, 128, 256, false, true, 2, M, N, K);
		check_gemm("sgemm_nt_relugrad_64", sgemm_nt_relugrad_64, 64, 128, false, true, 2, M, N, K);
	}
	// Split-K on the shapes ptx.PlanGemm splits (scaled down where the emulator would take too
	// long), with a last slice shorter than the others, and a K that is not a multiple of 8.
	for (auto s : {std::array<int, 4>{64, 10, 256, 64}, {70, 129, 333, 72}, {7, 5, 100, 8}, {64, 256, 784, 72}, {1, 1, 17, 16}}) {
		for (bool br : {false, true}) {
			check_splitk("sgemm_nn_splitk_64", sgemm_nn_splitk_64, 64, 128, s[0], s[1], s[2], s[3], br);
			check_splitk("sgemm_nn_splitk_128", sgemm_nn_splitk_128, 128, 256, s[0], s[1], s[2], s[3], br);
		}
	}
	for (auto s : {std::array<int, 6>{2, 3, 9, 9, 4, 3}, {1, 2, 5, 5, 70, 5}, {3, 1, 7, 7, 3, 1}, {1, 1, 2, 2, 2, 15}, {2, 2, 8, 8, 5, 3}}) {
		check_conv("conv2d_igemm_64", conv2d_igemm_64, 64, 128, s[0], s[1], s[2], s[3], s[4], s[5]);
		check_conv("conv2d_igemm_128", conv2d_igemm_128, 128, 256, s[0], s[1], s[2], s[3], s[4], s[5]);
		check_conv("conv2d_igemm_64_i64", conv2d_igemm_64_i64, 64, 128, s[0], s[1], s[2], s[3], s[4], s[5]);
		check_conv("conv2d_igemm_128_i64", conv2d_igemm_128_i64, 128, 256, s[0], s[1], s[2], s[3], s[4], s[5]);
	}
	for (long long n : {1LL, 3LL, 5LL, 1000LL, 1003LL, 4099LL}) {
		auto a = rnd(n), b = rnd(n);
		std::vector<float> c(n + 4, 9.f);
		launch(dim3{2}, dim3{256}, vadd_f32, (const float*)a.data(), (const float*)b.data(), c.data(), n);
		for (long long i = 0; i < n; ++i) expect(c[i] == a[i] + b[i], "vadd", c[i], a[i] + b[i]);
		expect(c[n] == 9.f, "vadd writes past n", c[n], 9);
	}
	{ // softmax_xent, count_correct
		int rows = 13, cols = 37;
		auto z = rnd(rows * cols), b2 = rnd(cols);
		std::vector<int> labels(rows);
		for (int r = 0; r < rows; ++r) labels[r] = (r * 7) % cols;
		auto z0 = z;
		std::vector<float> db2(cols, 0.f);
		float loss = 0, first = 0;
		launch(dim3{cdiv(rows, 8)}, dim3{256}, softmax_xent, z.data(), (const float*)b2.data(), (const int*)labels.data(), rows, cols,
		       1.f / rows, &loss, &first, db2.data());
		double wl = 0;
		std::vector<double> wdb(cols, 0);
		int wcorrect = 0;
		for (int r = 0; r < rows; ++r) {
			double mx = -1e30, s = 0;
			int arg = 0;
			for (int j = 0; j < cols; ++j) {
				double v = z0[r * cols + j] + b2[j];
				if (v > mx) mx = v, arg = j;
			}
			wcorrect += arg == labels[r];
			for (int j = 0; j < cols; ++j) s += std::exp(z0[r * cols + j] + b2[j] - mx);
			wl += std::log(s) + mx - (z0[r * cols + labels[r]] + b2[labels[r]]);
			for (int j = 0; j < cols; ++j) {
				double g = (std::exp(z0[r * cols + j] + b2[j] - mx) / s - (j == labels[r])) / rows;
				expect(std::fabs(z[r * cols + j] - g) < 1e-6, "softmax grad", z[r * cols + j], g);
				wdb[j] += g;
			}
		}
		expect(std::fabs(loss - wl) < 1e-4, "softmax loss", loss, wl);
		expect(std::fabs(first - wl) < 1e-4, "softmax first loss", first, wl);
		for (int j = 0; j < cols; ++j) expect(std::fabs(db2[j] - wdb[j]) < 1e-6, "softmax db2", db2[j], wdb[j]);
		int correct = 0;
		launch(dim3{cdiv(rows, 8)}, dim3{256}, count_correct, (const float*)z0.data(), (const float*)b2.data(), (const int*)labels.data(),
		       rows, cols, &correct);
		expect(correct == wcorrect, "count_correct", correct, wcorrect);
	}
	{ // bias_relu, relu_grad_colsum
		int rows = 67, cols = 45;
		auto h = rnd(rows * cols), b = rnd(cols), dh = rnd(rows * cols);
		auto h0 = h, dh0 = dh;
		launch(dim3{3}, dim3{256}, bias_relu, h.data(), (const float*)b.data(), rows, cols);
		for (int i = 0; i < rows * cols; ++i) expect(h[i] == std::max(h0[i] + b[i % cols], 0.f), "bias_relu", h[i], 0);
		std::vector<float> db(cols, 0.f);
		launch(dim3{cdiv(cols, 32), 2}, dim3{32, 8}, relu_grad_colsum, dh.data(), (const float*)h0.data(), rows, cols, db.data());
		for (int j = 0; j < cols; ++j) {
			double s = 0;
			for (int r = 0; r < rows; ++r) {
				int i = r * cols + j;
				float want = h0[i] > 0 ? dh0[i] : 0;
				expect(dh[i] == want, "relu_grad", dh[i], want);
				s += want;
			}
			expect(std::fabs(db[j] - s) < 1e-4, "relu_grad colsum", db[j], s);
		}
	}
	{ // adam
		long long n = 1000;
		auto w = rnd(n), g = rnd(n), m = rnd(n), v = rnd(n);
		for (auto& x : v) x = std::fabs(x);
		auto w0 = w, g0 = g, m0 = m, v0 = v;
		launch(dim3{2}, dim3{256}, adam, w.data(), g.data(), m.data(), v.data(), n, 0.01f, 0.5f, 0.9f, 0.1f, 0.999f, 0.001f, 1e-8f);
		for (long long i = 0; i < n; ++i) {
			float mi = 0.9f * m0[i] + 0.1f * g0[i], vi = 0.999f * v0[i] + 0.001f * g0[i] * g0[i];
			float wi = w0[i] - 0.01f * mi / (std::sqrt(vi) / 0.5f + 1e-8f);
			expect(std::fabs(w[i] - wi) < 1e-6 && g[i] == 0 && std::fabs(m[i] - mi) < 1e-7, "adam", w[i], wi);
		}
	}
	std::printf(failures ? "%d FAILURES\n" : "all kernels match\n", failures);
	return failures != 0;
}
