//go:build cuda

package cuda

import (
	"context"
	"math"
	"time"

	"gorgonia.org/cu"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
	"github.com/gpujobs/gpujobs/kernels"
	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// mlp is the MLP's device state. The samples, labels and every parameter stay on the device for
// the whole run; only a loss per epoch comes back. Parameters, gradients and Adam's two moments
// each occupy one flat buffer laid out [W1|b1|W2|b2], each tensor starting on a 256-byte
// boundary, so that Adam updates all of them in one launch.
type mlp struct {
	p                *builtin.NeuralNetwork
	in, hid, out     int
	x, labels        cu.DevicePtr // all samples, on the device
	w, g, m, v       cu.DevicePtr // flat buffers of n floats
	n                int64
	off              [4]int64 // float offsets of W1, b1, W2, b2 in a flat buffer
	h, dh, z         cu.DevicePtr
	loss             cu.DevicePtr // [epochs] sums of per-sample losses, then the first batch's
	correct          cu.DevicePtr
	lossFirstIndex   int64 // index in loss of the first batch's sum
	step             int   // Adam steps taken
	lr, b1, omb1, b2 float32
	omb2, eps        float32
}

// at is a pointer to the tensor i (0 W1, 1 b1, 2 W2, 3 b2) inside a flat buffer.
func (n *mlp) at(buf cu.DevicePtr, i int) cu.DevicePtr { return buf + cu.DevicePtr(4*n.off[i]) }

// neuralNetwork is builtin.NeuralNetwork on the GPU: the same data, initial weights, batches (in
// order, the last one short) and Adam as the CPU trainer, so the loss falls the same way. A step
// is 7 launches with the PTX GEMMs (bias+ReLU and the ReLU gradient fused into them) or 9 with
// cuBLAS; see neural_network.cu.
func (j *Job) neuralNetwork(ctx context.Context, p *builtin.NeuralNetwork, report jobs.Reporter) (jobs.Output, error) {
	t0 := time.Now()
	d := kernels.MLPInputs(p)
	n := &mlp{p: p, in: p.InputSize, hid: p.HiddenSize, out: p.OutputSize,
		lr: float32(p.LearningRate), b1: builtin.AdamBeta1, omb1: 1 - builtin.AdamBeta1,
		b2: builtin.AdamBeta2, omb2: 1 - builtin.AdamBeta2, eps: builtin.AdamEps}
	sizes := [4]int64{int64(n.in) * int64(n.hid), int64(n.hid), int64(n.hid) * int64(n.out), int64(n.out)}
	for i, sz := range sizes {
		n.off[i] = n.n
		n.n += (sz + 63) &^ 63
	}
	bs := int64(p.BatchSize)
	bufs, err := j.allocAll(4*int64(p.Samples)*int64(n.in), 4*int64(p.Samples), 4*4*n.n,
		4*bs*int64(n.hid), 4*bs*int64(n.hid), 4*bs*int64(n.out), 4*int64(p.Epochs+1), 4)
	if err != nil {
		return jobs.Output{}, err
	}
	n.x, n.labels, n.w, n.h, n.dh, n.z, n.loss, n.correct = bufs[0], bufs[1], bufs[2], bufs[3], bufs[4], bufs[5], bufs[6], bufs[7]
	n.g, n.m, n.v = n.w+cu.DevicePtr(4*n.n), n.w+cu.DevicePtr(8*n.n), n.w+cu.DevicePtr(12*n.n)
	n.lossFirstIndex = int64(p.Epochs)

	params := make([]float32, n.n)
	for i, t := range [][]float32{d.W1, d.B1, d.W2, d.B2} {
		copy(params[n.off[i]:], t)
	}
	if err := upload(j, n.x, d.X); err != nil {
		return jobs.Output{}, err
	}
	if err := upload(j, n.labels, d.Labels); err != nil {
		return jobs.Output{}, err
	}
	if err := upload(j, n.w, params); err != nil {
		return jobs.Output{}, err
	}
	if err := j.zero(n.g, 3*n.n); err != nil { // gradients and both moments
		return jobs.Output{}, err
	}
	if err := j.zero(n.loss, int64(p.Epochs+1)); err != nil {
		return jobs.Output{}, err
	}
	setup := time.Since(t0) - j.transfer

	steps := p.StepsPerEpoch()
	var elapsed time.Duration
	var epochLoss float64
	sum := make([]float32, 1)
	for e := 1; e <= p.Epochs; e++ {
		if err := j.s.start.Record(j.s.stream); err != nil {
			return jobs.Output{}, check("cuEventRecord", err)
		}
		for s := 0; s < steps && ctx.Err() == nil; s++ {
			lo, hi := s*p.BatchSize, min((s+1)*p.BatchSize, p.Samples)
			first := e == 1 && s == 0
			if err := j.mlpStep(n, lo, hi, e-1, first); err != nil {
				return jobs.Output{}, err
			}
		}
		if err := j.s.stop.Record(j.s.stream); err != nil {
			return jobs.Output{}, check("cuEventRecord", err)
		}
		t, err := j.elapsed()
		if err != nil {
			return jobs.Output{}, err
		}
		elapsed += t
		if err := stopped(ctx, builtin.NeuralNetworkKind, e-1, p.Epochs); err != nil {
			return jobs.Output{}, err
		}
		if err := download(j, sum, n.loss+cu.DevicePtr(4*(e-1))); err != nil {
			return jobs.Output{}, err
		}
		epochLoss = float64(sum[0]) / float64(p.Samples)
		report(jobs.Progress{Iteration: e, Total: p.Epochs, Loss: &epochLoss})
		if err := stopped(ctx, builtin.NeuralNetworkKind, e, p.Epochs); err != nil {
			return jobs.Output{}, err
		}
	}
	if err := download(j, sum, n.loss+cu.DevicePtr(4*n.lossFirstIndex)); err != nil {
		return jobs.Output{}, err
	}
	initial := float64(sum[0]) / float64(min(p.BatchSize, p.Samples))
	acc, err := j.mlpAccuracy(n)
	if err != nil {
		return jobs.Output{}, err
	}
	w := p.Work()
	return jobs.Output{
		SetupTime:      setup,
		ProcessingTime: elapsed,
		TransferTime:   j.transfer,
		Metrics: map[string]float64{
			"initial_loss":    initial,
			"final_loss":      epochLoss,
			"accuracy":        acc,
			"samples_per_sec": jobs.Rate(float64(p.Samples)*float64(p.Epochs), elapsed),
			"gflops":          jobs.Rate(w.FLOPs, elapsed) / 1e9,
		},
		GEMM:      j.gemmName(),
		Precision: "fp32",
	}, nil
}

// mlpForward computes H = relu(X·W1 + b1) and Z = H·W2 for rows [lo, hi) of the samples (b2 is
// added by the kernel that reads Z).
func (j *Job) mlpForward(n *mlp, lo, hi int) error {
	b := hi - lo
	x := n.x + cu.DevicePtr(4*int64(lo)*int64(n.in))
	if j.blas != nil {
		if err := j.sgemm(false, false, b, n.hid, n.in, x, n.in, n.at(n.w, 0), n.hid, n.h, n.hid); err != nil {
			return err
		}
		cells := int64(b) * int64(n.hid)
		if err := j.launch(ptx.BiasRelu, dim3{x: j.gridFor(cells, 256, 8)}, dim3{x: 256},
			ptrArg(n.h), ptrArg(n.at(n.w, 1)), intArg(b), intArg(n.hid)); err != nil {
			return err
		}
	} else if err := j.ptxGemm(ptx.SgemmNNBiasRelu128, ptx.SgemmNNBiasRelu64, splitBiasRelu, b, n.hid, n.in,
		x, n.in, n.at(n.w, 0), n.hid, n.h, n.hid, n.at(n.w, 1), 0); err != nil {
		return err
	}
	return j.sgemm(false, false, b, n.out, n.hid, n.h, n.hid, n.at(n.w, 2), n.out, n.z, n.out)
}

// mlpStep is one training step on rows [lo, hi): forward, softmax cross-entropy (its loss summed
// into loss[epoch], and into the first-batch slot when first), backward, Adam.
func (j *Job) mlpStep(n *mlp, lo, hi, epoch int, first bool) error {
	b := hi - lo
	x := n.x + cu.DevicePtr(4*int64(lo)*int64(n.in))
	if err := j.mlpForward(n, lo, hi); err != nil {
		return err
	}
	var lossFirst cu.DevicePtr
	if first {
		lossFirst = n.loss + cu.DevicePtr(4*n.lossFirstIndex)
	}
	if err := j.launch(ptx.SoftmaxXent, dim3{x: ceilDiv(b, 8)}, dim3{x: 256},
		ptrArg(n.z), ptrArg(n.at(n.w, 3)), ptrArg(n.labels+cu.DevicePtr(4*lo)), intArg(b), intArg(n.out),
		f32Arg(1/float32(b)), ptrArg(n.loss+cu.DevicePtr(4*epoch)), ptrArg(lossFirst), ptrArg(n.at(n.g, 3))); err != nil {
		return err
	}
	// dW2 = Hᵀ·dZ
	if err := j.sgemm(true, false, n.hid, n.out, b, n.h, n.hid, n.z, n.out, n.at(n.g, 2), n.out); err != nil {
		return err
	}
	// dH = (dZ·W2ᵀ) ⊙ [H > 0], db1 = colsum(dH)
	if j.blas != nil {
		if err := j.sgemm(false, true, b, n.hid, n.out, n.z, n.out, n.at(n.w, 2), n.out, n.dh, n.hid); err != nil {
			return err
		}
		if err := j.launch(ptx.ReluGradColSum, dim3{x: ceilDiv(n.hid, 32), y: min(ceilDiv(b, 64), 64)}, dim3{x: 32, y: 8},
			ptrArg(n.dh), ptrArg(n.h), intArg(b), intArg(n.hid), ptrArg(n.at(n.g, 1))); err != nil {
			return err
		}
	} else if err := j.ptxGemm(ptx.SgemmNTReluGrad128, ptx.SgemmNTReluGrad64, noSplit, b, n.hid, n.out,
		n.z, n.out, n.at(n.w, 2), n.out, n.dh, n.hid, n.h, n.at(n.g, 1)); err != nil {
		return err
	}
	// dW1 = Xᵀ·dH
	if err := j.sgemm(true, false, n.in, n.hid, b, x, n.in, n.dh, n.hid, n.at(n.g, 0), n.hid); err != nil {
		return err
	}
	// Adam on every parameter, as kernels.MLP does it: the same float32 constants, the bias
	// corrections computed in float64 and rounded once.
	n.step++
	c1 := 1 - math.Pow(builtin.AdamBeta1, float64(n.step))
	c2 := 1 - math.Pow(builtin.AdamBeta2, float64(n.step))
	stepSize := float32(float64(n.lr) / c1)
	sqrtC2 := float32(math.Sqrt(c2))
	return j.launch(ptx.Adam, dim3{x: j.gridFor(n.n, 256, 4)}, dim3{x: 256},
		ptrArg(n.w), ptrArg(n.g), ptrArg(n.m), ptrArg(n.v), i64Arg(n.n), f32Arg(stepSize), f32Arg(sqrtC2),
		f32Arg(n.b1), f32Arg(n.omb1), f32Arg(n.b2), f32Arg(n.omb2), f32Arg(n.eps))
}

// mlpAccuracy is the fraction of samples whose predicted class is their label, batch by batch.
func (j *Job) mlpAccuracy(n *mlp) (float64, error) {
	if err := j.zero(n.correct, 1); err != nil {
		return 0, err
	}
	p := n.p
	for lo := 0; lo < p.Samples; lo += p.BatchSize {
		hi := min(lo+p.BatchSize, p.Samples)
		if err := j.mlpForward(n, lo, hi); err != nil {
			return 0, err
		}
		if err := j.launch(ptx.CountCorrect, dim3{x: ceilDiv(hi-lo, 8)}, dim3{x: 256},
			ptrArg(n.z), ptrArg(n.at(n.w, 3)), ptrArg(n.labels+cu.DevicePtr(4*lo)), intArg(hi-lo), intArg(n.out), ptrArg(n.correct)); err != nil {
			return 0, err
		}
	}
	correct := make([]int32, 1)
	if err := download(j, correct, n.correct); err != nil {
		return 0, err
	}
	return float64(correct[0]) / float64(p.Samples), nil
}
