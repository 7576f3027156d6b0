package jobs

// How GPU workers share a GPU between jobs, the rule both the worker's admission
// (kernels/cuda/pool) and the scheduler's wait estimate (scheduling) follow.
const (
	// DefaultJobsPerGPU is the per-GPU job limit when GPU_JOBS_PER_GPU does not set one.
	DefaultJobsPerGPU = 4
	// GPUJobHeadroom is kept free beyond each job's memory estimate: cuBLAS workspaces, the
	// allocator's rounding, estimates that are a little short.
	GPUJobHeadroom = 64 << 20
	// GPUContextReserve is what a GPU keeps for its context and module code: its capacity for
	// jobs is its memory less this.
	GPUContextReserve = 512 << 20
)

// GPUShare is how many jobs that need mem bytes each by their estimate run at once on a GPU of
// memory bytes with at most limit jobs: as many as fit beside each other with their headroom, at
// least one, at most limit. memory 0 (not known yet) counts as one job at a time.
func GPUShare(mem, memory int64, limit int) int {
	if limit <= 1 || memory <= 0 {
		return 1
	}
	n := (memory - GPUContextReserve) / (mem + GPUJobHeadroom)
	return int(max(1, min(n, int64(limit))))
}
