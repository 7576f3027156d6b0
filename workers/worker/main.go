// Command worker runs a gpujobs worker: the scheduler role (JobWorkflow on job_queue) or the cpu
// role (the built-in kinds' CPU kernels on cpu_queue). GPU kernels live in a separate binary,
// worker-gpu, because the CUDA bindings end any process that starts on a machine without a GPU.
package main

import "github.com/gpujobs/gpujobs/workers"

func main() { workers.Main(workers.Config{Name: "worker"}) }
