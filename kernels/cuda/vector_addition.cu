// vector_addition.cu: c = a + b over float32 vectors, a memory-bandwidth benchmark. Each thread
// moves 16 bytes per load (float4) over a grid-stride loop, two float4 pairs in flight per step;
// the host sizes the grid to fill the GPU once (SMs × resident blocks), not to cover n. The up to
// three elements past the last whole float4 are added by the first threads of the grid.
extern "C" __global__ void __launch_bounds__(256) vadd_f32(const float* __restrict__ a, const float* __restrict__ b,
                                                           float* __restrict__ c, long long n) {
	const float4* __restrict__ a4 = reinterpret_cast<const float4*>(a);
	const float4* __restrict__ b4 = reinterpret_cast<const float4*>(b);
	float4* __restrict__ c4 = reinterpret_cast<float4*>(c);
	const long long n4 = n >> 2;
	const long long stride = (long long)gridDim.x * blockDim.x;
	const long long first = (long long)blockIdx.x * blockDim.x + threadIdx.x;
	long long i = first;
	for (; i + stride < n4; i += 2 * stride) {
		const float4 x0 = a4[i], y0 = b4[i], x1 = a4[i + stride], y1 = b4[i + stride];
		c4[i] = make_float4(x0.x + y0.x, x0.y + y0.y, x0.z + y0.z, x0.w + y0.w);
		c4[i + stride] = make_float4(x1.x + y1.x, x1.y + y1.y, x1.z + y1.z, x1.w + y1.w);
	}
	if (i < n4) {
		const float4 x = a4[i], y = b4[i];
		c4[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
	}
	const long long t = (n4 << 2) + first;
	if (t < n) c[t] = a[t] + b[t];
}
