// Package ptx holds the GPU kernels of kernels/cuda as generated code: PTX for compute_80 and
// fatbins with sm_90 SASS, built from the .cu sources in kernels/cuda by `make kernels` (nvcc
// 11.8) and committed, so building the GPU worker needs no nvcc. It has no build tag and no cgo,
// so the checks on the generated text run on any machine; it must not depend on CUDA itself.
package ptx

import (
	"embed"
	"fmt"
	"regexp"
)

//go:embed *.ptx *.fatbin
var generated embed.FS

// entryRe finds the kernels a PTX text declares.
var entryRe = regexp.MustCompile(`(?m)^\.visible \.entry ([A-Za-z_][A-Za-z0-9_]*)\(`)

// A Module is one .cu source compiled: the kernels the Go code launches from it.
type Module struct {
	Name    string
	Kernels []string
}

// Kernel entry points, by module. The Go code launches kernels only through these names, and a
// test checks that each one is an .entry of its module's PTX.
const (
	VectorAdd = "vadd_f32"

	SgemmNN128         = "sgemm_nn_128"
	SgemmNN64          = "sgemm_nn_64"
	SgemmTN128         = "sgemm_tn_128"
	SgemmTN64          = "sgemm_tn_64"
	SgemmNNBiasRelu128 = "sgemm_nn_bias_relu_128"
	SgemmNNBiasRelu64  = "sgemm_nn_bias_relu_64"
	SgemmNTReluGrad128 = "sgemm_nt_relugrad_128"
	SgemmNTReluGrad64  = "sgemm_nt_relugrad_64"
	SgemmNNSplitK128   = "sgemm_nn_splitk_128"
	SgemmNNSplitK64    = "sgemm_nn_splitk_64"
	SplitKReduce       = "splitk_reduce"

	Conv64     = "conv2d_igemm_64"
	Conv128    = "conv2d_igemm_128"
	Conv64I64  = "conv2d_igemm_64_i64"
	Conv128I64 = "conv2d_igemm_128_i64"

	BiasRelu       = "bias_relu"
	SoftmaxXent    = "softmax_xent"
	ReluGradColSum = "relu_grad_colsum"
	CountCorrect   = "count_correct"
	Adam           = "adam"

	FaultAssert = "fault_assert"
)

// Modules lists every module and its kernels.
var Modules = []Module{
	{Name: "vector_addition", Kernels: []string{VectorAdd}},
	{Name: "matrix_multiply", Kernels: []string{
		SgemmNN128, SgemmNN64, SgemmTN128, SgemmTN64,
		SgemmNNBiasRelu128, SgemmNNBiasRelu64, SgemmNTReluGrad128, SgemmNTReluGrad64,
		SgemmNNSplitK128, SgemmNNSplitK64, SplitKReduce,
	}},
	{Name: "image_processing", Kernels: []string{Conv64, Conv128, Conv64I64, Conv128I64}},
	{Name: "neural_network", Kernels: []string{BiasRelu, SoftmaxXent, ReluGradColSum, CountCorrect, Adam}},
	{Name: "faults", Kernels: []string{FaultAssert}},
}

// PTX returns the module's PTX text (compute_80).
func PTX(module string) (string, error) {
	b, err := generated.ReadFile(module + ".ptx")
	if err != nil {
		return "", fmt.Errorf("no PTX for module %q: %w", module, err)
	}
	return string(b), nil
}

// Fatbin returns the module's fatbin (sm_90 SASS and compute_80 PTX).
func Fatbin(module string) ([]byte, error) {
	b, err := generated.ReadFile(module + ".fatbin")
	if err != nil {
		return nil, fmt.Errorf("no fatbin for module %q: %w", module, err)
	}
	return b, nil
}
