package builtin

import (
	"fmt"

	"github.com/gpujobs/gpujobs/jobs"
)

// NeuralNetwork trains a two-layer MLP (Linear → ReLU → Linear, softmax cross-entropy, Adam) on
// seeded synthetic data whose labels come from a fixed random linear teacher, so the data is
// learnable and a falling loss shows that training works. Batches are taken in order, without
// shuffling, so runs are deterministic.
type NeuralNetwork struct {
	Epochs       int     `json:"epochs"`
	BatchSize    int     `json:"batch_size"`
	InputSize    int     `json:"input_size"`
	HiddenSize   int     `json:"hidden_size"`
	OutputSize   int     `json:"output_size"`
	Samples      int     `json:"samples"` // 0 means batch_size*100
	LearningRate float64 `json:"learning_rate"`
	Seed         uint64  `json:"seed"`
}

// NeuralNetworkKind is the kind's name.
const NeuralNetworkKind = "neural_network"

// Adam's constants, PyTorch's defaults.
const (
	AdamBeta1 = 0.9
	AdamBeta2 = 0.999
	AdamEps   = 1e-8
)

func neuralNetworkSpec() jobs.Spec {
	return jobs.Spec{
		Kind:    NeuralNetworkKind,
		Summary: "2-layer MLP trained with Adam on synthetic data, reports loss and samples/s",
		New: func() jobs.Params {
			return &NeuralNetwork{Epochs: 5, BatchSize: 64, InputSize: 784, HiddenSize: 256, OutputSize: 10, LearningRate: 1e-3, Seed: 42}
		},
		Headline:    gflops,
		Checkpoints: true,
	}
}

func (*NeuralNetwork) Kind() string { return NeuralNetworkKind }

// ResolveDefaults fills the defaults that depend on other fields.
func (p *NeuralNetwork) ResolveDefaults() {
	if p.Samples == 0 {
		p.Samples = p.BatchSize * 100
	}
}

func (p *NeuralNetwork) Validate() error {
	if err := checkAll(NeuralNetworkKind,
		rangeCheck{"epochs", p.Epochs, 1, 100000},
		rangeCheck{"batch_size", p.BatchSize, 1, 65536},
		rangeCheck{"input_size", p.InputSize, 1, 1 << 20},
		rangeCheck{"hidden_size", p.HiddenSize, 1, 1 << 16},
		rangeCheck{"output_size", p.OutputSize, 2, 1 << 16},
		rangeCheck{"samples", p.Samples, 1, 1 << 24},
	); err != nil {
		return err
	}
	if !(p.LearningRate > 0 && p.LearningRate <= 1) {
		return &jobs.ParamError{Kind: NeuralNetworkKind, Field: "learning_rate", Reason: fmt.Sprintf("%g is out of range, allowed (0, 1]", p.LearningRate)}
	}
	return jobs.CheckMem(NeuralNetworkKind, p.Work())
}

// StepsPerEpoch is the number of batches in one pass over the samples (the last may be short).
func (p *NeuralNetwork) StepsPerEpoch() int { return (p.Samples + p.BatchSize - 1) / p.BatchSize }

// ParamCount is the number of trainable parameters.
func (p *NeuralNetwork) ParamCount() int64 {
	in, hid, out := int64(p.InputSize), int64(p.HiddenSize), int64(p.OutputSize)
	return in*hid + hid + hid*out + out
}

func (p *NeuralNetwork) Work() jobs.Work {
	in, hid, out := float64(p.InputSize), float64(p.HiddenSize), float64(p.OutputSize)
	samples := float64(p.Samples) * float64(p.Epochs)
	// Forward: X·W1 and H·W2. Backward: dW2 = Hᵀ·dZ, dH = dZ·W2ᵀ, dW1 = Xᵀ·dH (no dX).
	perSample := 2*(in*hid+hid*out) + 2*(2*hid*out+in*hid)
	data := int64(p.Samples) * (int64(p.InputSize) + 1)
	batch := int64(p.BatchSize) * (2*int64(p.HiddenSize) + 2*int64(p.OutputSize))
	return jobs.Work{
		FLOPs:         perSample * samples,
		Bytes:         4 * samples * (in + 1),
		MemBytes:      4 * (data + 4*p.ParamCount() + batch),
		TransferBytes: 4 * (data + p.ParamCount()),
		Steps:         p.Epochs,
	}
}
