package kernels_test

import (
	"context"
	"testing"

	"github.com/gpujobs/gpujobs/jobs"
	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// The benchmarks run each job type at the seed's default shape with one iteration per b.N and
// report the job's own rate, so `go test -bench` and `-tags openblas` compare backends directly.

func benchJob(b *testing.B, p jobs.Params, metric string) {
	b.Helper()
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	var sum float64
	for b.Loop() {
		out, err := cpuRun(context.Background(), p, func(jobs.Progress) {})
		if err != nil {
			b.Fatal(err)
		}
		sum += out.Metrics[metric]
	}
	b.ReportMetric(sum/float64(b.N), metric)
	b.ReportMetric(0, "ns/op") // the job's own rate is the figure; wall time includes input generation
}

func BenchmarkMatrixMultiply1000(b *testing.B) {
	benchJob(b, &builtin.MatrixMultiply{Size: 1000, Iterations: 5, Seed: 1}, "gflops")
}

func BenchmarkVectorAddition1e7(b *testing.B) {
	benchJob(b, &builtin.VectorAddition{Size: 10_000_000, Iterations: 20, Seed: 1}, "gbps")
}

func BenchmarkImageProcessing224(b *testing.B) {
	benchJob(b, &builtin.ImageProcessing{BatchSize: 8, ImageSize: 224, Channels: 3, Filters: 64, KernelSize: 3, Iterations: 2, Seed: 1}, "gflops")
}

func BenchmarkNeuralNetwork784(b *testing.B) {
	benchJob(b, &builtin.NeuralNetwork{Epochs: 1, BatchSize: 64, InputSize: 784, HiddenSize: 256, OutputSize: 10, Samples: 6400, LearningRate: 1e-3, Seed: 1}, "samples_per_sec")
}
