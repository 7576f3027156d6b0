package builtin

import "math/rand/v2"

// Inputs are generated from a seed with PCG, so the CPU and GPU implementations (and gpucheck)
// see the same numbers for the same params.

func newRand(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

// UniformSlice returns n values uniform in [-1, 1).
func UniformSlice(seed, stream uint64, n int) []float32 {
	r := newRand(seed, stream)
	s := make([]float32, n)
	for i := range s {
		s[i] = 2*r.Float32() - 1
	}
	return s
}

// NormalSlice returns n values from N(0, std²).
func NormalSlice(seed, stream uint64, n int, std float64) []float32 {
	r := newRand(seed, stream)
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(r.NormFloat64() * std)
	}
	return s
}
