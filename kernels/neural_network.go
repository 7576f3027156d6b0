package kernels

import (
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"time"

	"gonum.org/v1/gonum/blas"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// MLPData is everything a training run starts from: samples, labels and initial weights.
type MLPData struct {
	X      []float32 // [samples, input_size]
	Labels []int32   // [samples]
	W1, B1 []float32 // [input_size, hidden_size], [hidden_size]
	W2, B2 []float32 // [hidden_size, output_size], [output_size]
}

// MLPInputs generates the training set and the initial weights. Inputs are N(0,1); labels are the
// argmax of a random linear teacher; weights and biases are U(-1/√fan_in, 1/√fan_in), as
// PyTorch's nn.Linear initialises them.
func MLPInputs(p *builtin.NeuralNetwork) MLPData {
	in, hid, out := p.InputSize, p.HiddenSize, p.OutputSize
	d := MLPData{
		X:      builtin.NormalSlice(p.Seed, 1, p.Samples*in, 1),
		Labels: make([]int32, p.Samples),
		W1:     scaled(builtin.UniformSlice(p.Seed, 3, in*hid), 1/math.Sqrt(float64(in))),
		B1:     scaled(builtin.UniformSlice(p.Seed, 4, hid), 1/math.Sqrt(float64(in))),
		W2:     scaled(builtin.UniformSlice(p.Seed, 5, hid*out), 1/math.Sqrt(float64(hid))),
		B2:     scaled(builtin.UniformSlice(p.Seed, 6, out), 1/math.Sqrt(float64(hid))),
	}
	teacher := builtin.NormalSlice(p.Seed, 2, in*out, 1)
	logits := make([]float32, p.Samples*out)
	blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, p.Samples, out, in, 1, d.X, in, teacher, out, 0, logits, out)
	for i := range d.Labels {
		d.Labels[i] = int32(argmax(logits[i*out : (i+1)*out]))
	}
	return d
}

func scaled(s []float32, f float64) []float32 {
	for i := range s {
		s[i] *= float32(f)
	}
	return s
}

func argmax(s []float32) int {
	best := 0
	for i, v := range s {
		if v > s[best] {
			best = i
		}
	}
	return best
}

// MLP is the CPU trainer's state: weights, Adam moments and per-batch scratch.
type MLP struct {
	in, hid, out, maxBatch int
	lr                     float32
	step                   int
	w1, b1, w2, b2         []float32
	g                      [4][]float32 // gradients of w1, b1, w2, b2
	m, v                   [4][]float32 // Adam moments
	h, z, dh               []float32
}

// NewMLP starts a trainer from the generated weights (copied, so d can seed another run).
func NewMLP(p *builtin.NeuralNetwork, d MLPData) *MLP {
	m := &MLP{in: p.InputSize, hid: p.HiddenSize, out: p.OutputSize, maxBatch: p.BatchSize, lr: float32(p.LearningRate)}
	m.w1, m.b1 = append([]float32(nil), d.W1...), append([]float32(nil), d.B1...)
	m.w2, m.b2 = append([]float32(nil), d.W2...), append([]float32(nil), d.B2...)
	for i, w := range m.params() {
		m.g[i], m.m[i], m.v[i] = make([]float32, len(w)), make([]float32, len(w)), make([]float32, len(w))
	}
	m.h = make([]float32, p.BatchSize*m.hid)
	m.dh = make([]float32, p.BatchSize*m.hid)
	m.z = make([]float32, p.BatchSize*m.out)
	return m
}

func (m *MLP) params() [4][]float32 { return [4][]float32{m.w1, m.b1, m.w2, m.b2} }

// Weights returns the current W1, b1, W2, b2 (shared, not copied).
func (m *MLP) Weights() [4][]float32 { return m.params() }

// Step runs forward, backward and one Adam update on a batch; it returns the batch's mean loss.
func (m *MLP) Step(x []float32, labels []int32) float64 {
	b := len(labels)
	h, z, dh := m.h[:b*m.hid], m.z[:b*m.out], m.dh[:b*m.hid]

	m.forward(x, h, z)

	// Softmax cross-entropy; z becomes dL/dz = (softmax - onehot) / b.
	loss := 0.0
	for r := 0; r < b; r++ {
		row := z[r*m.out : (r+1)*m.out]
		mx := float32(math.Inf(-1))
		for _, v := range row {
			mx = max(mx, v)
		}
		var sum float64
		for j := range row {
			e := math.Exp(float64(row[j] - mx))
			row[j] = float32(e)
			sum += e
		}
		y := labels[r]
		loss -= math.Log(float64(row[y])/sum + 1e-30)
		for j := range row {
			row[j] = float32(float64(row[j])/sum) / float32(b)
		}
		row[y] -= 1 / float32(b)
	}

	// Backward.
	gw1, gb1, gw2, gb2 := m.g[0], m.g[1], m.g[2], m.g[3]
	blasImpl.Sgemm(blas.Trans, blas.NoTrans, m.hid, m.out, b, 1, h, m.hid, z, m.out, 0, gw2, m.out)
	colSums(z, b, m.out, gb2)
	blasImpl.Sgemm(blas.NoTrans, blas.Trans, b, m.hid, m.out, 1, z, m.out, m.w2, m.out, 0, dh, m.hid)
	for i, v := range h {
		if v <= 0 {
			dh[i] = 0
		}
	}
	blasImpl.Sgemm(blas.Trans, blas.NoTrans, m.in, m.hid, b, 1, x, m.in, dh, m.hid, 0, gw1, m.hid)
	colSums(dh, b, m.hid, gb1)

	m.step++
	m.adam()
	return loss / float64(b)
}

// forward computes h = relu(x·W1 + b1) and the logits z = h·W2 + b2 for a batch.
func (m *MLP) forward(x, h, z []float32) {
	b := len(h) / m.hid
	blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, b, m.hid, m.in, 1, x, m.in, m.w1, m.hid, 0, h, m.hid)
	addBias(h, m.b1, true)
	blasImpl.Sgemm(blas.NoTrans, blas.NoTrans, b, m.out, m.hid, 1, h, m.hid, m.w2, m.out, 0, z, m.out)
	addBias(z, m.b2, false)
}

// addBias adds bias to every row of a, then applies ReLU if asked.
func addBias(a, bias []float32, relu bool) {
	for r := 0; r < len(a); r += len(bias) {
		row := a[r : r+len(bias)]
		for j, bj := range bias {
			if relu {
				row[j] = max(row[j]+bj, 0)
			} else {
				row[j] += bj
			}
		}
	}
}

// adam applies one Adam update to every parameter tensor, with bias correction.
func (m *MLP) adam() {
	c1 := 1 - math.Pow(builtin.AdamBeta1, float64(m.step))
	c2 := 1 - math.Pow(builtin.AdamBeta2, float64(m.step))
	stepSize := float32(float64(m.lr) / c1)
	sqrtC2 := float32(math.Sqrt(c2))
	for i, w := range m.params() {
		g, mm, vv := m.g[i], m.m[i], m.v[i]
		for j := range w {
			mm[j] = builtin.AdamBeta1*mm[j] + (1-builtin.AdamBeta1)*g[j]
			vv[j] = builtin.AdamBeta2*vv[j] + (1-builtin.AdamBeta2)*g[j]*g[j]
			w[j] -= stepSize * mm[j] / (float32(math.Sqrt(float64(vv[j])))/sqrtC2 + builtin.AdamEps)
		}
	}
}

func colSums(a []float32, rows, cols int, dst []float32) {
	clear(dst)
	for r := 0; r < rows; r++ {
		for j, v := range a[r*cols : (r+1)*cols] {
			dst[j] += v
		}
	}
}

// NeuralNetwork trains on the CPU. Progress is reported per epoch with the epoch's mean loss.
func NeuralNetwork(ctx context.Context, p *builtin.NeuralNetwork, report jobs.Reporter) (jobs.Output, error) {
	t0 := time.Now()
	d := MLPInputs(p)
	m := NewMLP(p, d)
	// A retried job resumes from the last epoch an earlier attempt completed, when the worker
	// keeps checkpoints: the same weights, Adam state and step, so the training is the same.
	cp := checkpoints(ctx)
	first, resumed := 1, ""
	var firstLoss, epochLoss float64
	if cp != nil {
		if e, fl, ok, err := m.restore(cp.Dir(), p); err != nil {
			return jobs.Output{}, err
		} else if ok {
			first, firstLoss, resumed = e+1, fl, fmt.Sprintf("epoch %d of %d (its checkpoint)", e, p.Epochs)
		}
	}
	setup := time.Since(t0)

	steps := p.StepsPerEpoch()
	var elapsed time.Duration
	for e := first; e <= p.Epochs; e++ {
		start := time.Now()
		epochLoss = 0
		for s := 0; s < steps; s++ {
			lo, hi := s*p.BatchSize, min((s+1)*p.BatchSize, p.Samples)
			l := m.Step(d.X[lo*p.InputSize:hi*p.InputSize], d.Labels[lo:hi])
			if e == 1 && s == 0 {
				firstLoss = l
			}
			epochLoss += l * float64(hi-lo)
			if ctx.Err() != nil {
				break
			}
		}
		elapsed += time.Since(start)
		if err := jobs.Stopped(ctx, builtin.NeuralNetworkKind, e-1, p.Epochs); err != nil {
			return jobs.Output{}, err
		}
		epochLoss /= float64(p.Samples)
		if cp != nil {
			if err := m.checkpoint(ctx, cp, p, e, firstLoss); err != nil {
				return jobs.Output{}, err
			}
		}
		report(jobs.Progress{Iteration: e, Total: p.Epochs, Loss: &epochLoss})
		if err := jobs.Stopped(ctx, builtin.NeuralNetworkKind, e, p.Epochs); err != nil {
			return jobs.Output{}, err
		}
	}
	w := p.Work()
	ran := float64(p.Epochs-first+1) / float64(p.Epochs) // the share of the epochs this attempt ran
	return cpuOutput(jobs.Output{
		SetupTime:      setup,
		ProcessingTime: elapsed,
		ResumedFrom:    resumed,
		Metrics: map[string]float64{
			"initial_loss":    firstLoss,
			"final_loss":      epochLoss,
			"accuracy":        m.Accuracy(d.X, d.Labels),
			"samples_per_sec": jobs.Rate(float64(p.Samples)*float64(p.Epochs)*ran, elapsed),
			"gflops":          jobs.Rate(w.FLOPs*ran, elapsed) / 1e9,
		},
	}), nil
}

// checkpoints is the worker's checkpointer for this run, or nil.
func checkpoints(ctx context.Context) jobs.Checkpointer {
	info, ok := jobs.RunInfoFrom(ctx)
	if !ok {
		return nil
	}
	return info.Checkpoints
}

// mlpCheckpoint is the training state after an epoch.
type mlpCheckpoint struct {
	Params    builtin.NeuralNetwork // the job's params: a checkpoint of other params is not this job's
	Epoch     int
	Step      int
	FirstLoss float64
	Weights   [4][]float32
	M, V      [4][]float32
}

const mlpCheckpointFile = "neural_network.gob"

// checkpoint writes the state after epoch e into the checkpoint directory and saves it.
func (m *MLP) checkpoint(ctx context.Context, cp jobs.Checkpointer, p *builtin.NeuralNetwork, e int, firstLoss float64) error {
	st := mlpCheckpoint{Params: *p, Epoch: e, Step: m.step, FirstLoss: firstLoss, Weights: m.params(), M: m.m, V: m.v}
	tmp := filepath.Join(cp.Dir(), mlpCheckpointFile+".tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write the checkpoint: %w", err)
	}
	err = gob.NewEncoder(f).Encode(&st)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(cp.Dir(), mlpCheckpointFile))
	}
	if err == nil {
		err = cp.Save(ctx)
	}
	if err != nil {
		return fmt.Errorf("checkpoint after epoch %d: %w", e, err)
	}
	return nil
}

// restore loads a checkpoint of this job from dir, if there is one, and returns its epoch.
func (m *MLP) restore(dir string, p *builtin.NeuralNetwork) (epoch int, firstLoss float64, ok bool, err error) {
	f, err := os.Open(filepath.Join(dir, mlpCheckpointFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, false, err
	}
	defer f.Close()
	var st mlpCheckpoint
	if err := gob.NewDecoder(f).Decode(&st); err != nil || st.Params != *p || st.Epoch < 1 || st.Epoch > p.Epochs {
		return 0, 0, false, nil // not this job's, or torn: start over
	}
	for i, w := range m.params() {
		if len(st.Weights[i]) != len(w) || len(st.M[i]) != len(w) || len(st.V[i]) != len(w) {
			return 0, 0, false, nil
		}
		copy(w, st.Weights[i])
		copy(m.m[i], st.M[i])
		copy(m.v[i], st.V[i])
	}
	m.step = st.Step
	return st.Epoch, st.FirstLoss, true, nil
}

// Accuracy is the fraction of samples whose predicted class is the label, computed batch by batch.
func (m *MLP) Accuracy(x []float32, labels []int32) float64 {
	correct := 0
	for lo := 0; lo < len(labels); lo += m.maxBatch {
		hi := min(lo+m.maxBatch, len(labels))
		b := hi - lo
		z := m.z[:b*m.out]
		m.forward(x[lo*m.in:hi*m.in], m.h[:b*m.hid], z)
		for r := 0; r < b; r++ {
			if int32(argmax(z[r*m.out:(r+1)*m.out])) == labels[lo+r] {
				correct++
			}
		}
	}
	return float64(correct) / float64(len(labels))
}
