package monitor

import (
	"encoding/json"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// The bodies of the monitor's JSON API. Field names are part of the API (README, Monitor).

// Totals are the headline counts.
type Totals struct {
	Results   int `json:"results"`
	Completed int `json:"completed"`
	Failed    int `json:"failed"`
	Canceled  int `json:"canceled"`
	// GPURuns ran on a GPU; CPURuns on a CPU, fallbacks included; Fallbacks are the CPU runs of
	// jobs that preferred a GPU.
	GPURuns    int   `json:"gpu_runs"`
	CPURuns    int   `json:"cpu_runs"`
	Fallbacks  int   `json:"fallbacks"`
	Duplicates int64 `json:"duplicates"`
	Malformed  int64 `json:"malformed"`
	// Rejected counts results that failed validation and were dead-lettered; RejectedAtLoad the
	// lines of the store that were skipped at start because they are not valid results.
	Rejected       int64 `json:"rejected"`
	RejectedAtLoad int   `json:"rejected_at_load"`
}

// Throughput is jobs per second. Overall divides the results by the time from the earliest
// start_time to the latest end_time; LastMinute counts the results whose end_time lies in the
// minute before now.
type Throughput struct {
	Overall    float64    `json:"overall_per_sec"`
	LastMinute float64    `json:"last_minute_per_sec"`
	FirstStart *time.Time `json:"first_start,omitempty"`
	LastEnd    *time.Time `json:"last_end,omitempty"`
	Series     *Series    `json:"series,omitempty"`
}

// Series counts results per time bucket of end_time, split by where they ran.
type Series struct {
	Start         time.Time `json:"start"`
	BucketSeconds int       `json:"bucket_seconds"`
	GPU           []int     `json:"gpu"`
	CPU           []int     `json:"cpu"`
	Failed        []int     `json:"failed"`
}

// TimeStats summarise processing_time (seconds) of completed results. Percentiles interpolate
// linearly between the closest ranks (numpy's default).
type TimeStats struct {
	Avg float64 `json:"avg"`
	Min float64 `json:"min"`
	Max float64 `json:"max"`
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
}

// Rate is the mean headline rate (GFLOP/s, GB/s or samples/s) of completed results.
type Rate struct {
	Mean float64 `json:"mean"`
	Unit string  `json:"unit"`
}

// Group is one job_type × worker_type cell of /api/stats.
type Group struct {
	JobType        string     `json:"job_type"`
	WorkerType     string     `json:"worker_type"`
	Results        int        `json:"results"`
	Completed      int        `json:"completed"`
	Failed         int        `json:"failed"`
	Canceled       int        `json:"canceled"`
	Fallbacks      int        `json:"fallbacks"`
	ProcessingTime *TimeStats `json:"processing_time,omitempty"`
	Rate           *Rate      `json:"rate,omitempty"`
	// GPUTelemetry summarises the NVML figures of the completed results that carry them.
	GPUTelemetry *GPUTelemetry `json:"gpu_telemetry,omitempty"`
}

// GPUTelemetry is what NVML saw of a group's GPU jobs: the mean of their mean utilisations, the
// highest utilisation and memory in use any of them saw. Device-wide figures (see jobs.Result).
type GPUTelemetry struct {
	Results         int     `json:"results"`
	UtilizationMean float64 `json:"utilization_mean"`
	UtilizationPeak float64 `json:"utilization_peak"`
	MemoryPeak      int64   `json:"memory_peak"`
}

// Count is a count under a name.
type Count struct {
	ErrorType string `json:"error_type"`
	Count     int    `json:"count"`
}

// FallbackCount counts fallback runs of one job type for one reason.
type FallbackCount struct {
	JobType string `json:"job_type"`
	Reason  string `json:"reason"`
	Count   int    `json:"count"`
}

// Stats is the body of GET /api/stats.
type Stats struct {
	GeneratedAt time.Time       `json:"generated_at"`
	Totals      Totals          `json:"totals"`
	Throughput  Throughput      `json:"throughput"`
	Groups      []Group         `json:"groups"`
	Failures    []Count         `json:"failures"`
	Fallbacks   []FallbackCount `json:"fallbacks"`
}

// Summary is the running summary that tail prints and the SSE stream sends.
type Summary struct {
	Totals
	ThroughputOverall    float64 `json:"throughput_overall_per_sec"`
	ThroughputLastMinute float64 `json:"throughput_last_minute_per_sec"`
}

// Comparison is one job type and params that ran on both a CPU and a GPU.
type Comparison struct {
	Params  json.RawMessage `json:"params"`
	CPURuns int             `json:"cpu_runs"`
	GPURuns int             `json:"gpu_runs"`
	CPUMean float64         `json:"cpu_mean_time"`
	GPUMean float64         `json:"gpu_mean_time"`
	Speedup float64         `json:"speedup"`
}

// JobSpeedup is one job type's line of /api/speedup. Speedup is the geometric mean of the
// speedups of its compared params (the speedup itself when there is one).
type JobSpeedup struct {
	JobType  string       `json:"job_type"`
	Speedup  float64      `json:"speedup"`
	CPUMean  float64      `json:"cpu_mean_time"`
	GPUMean  float64      `json:"gpu_mean_time"`
	Compared []Comparison `json:"compared"`
	// Uncompared counts the params that ran on one kind of device only.
	Uncompared int `json:"uncompared"`
}

// Speedups is the body of GET /api/speedup.
type Speedups struct {
	GeneratedAt time.Time    `json:"generated_at"`
	JobTypes    []JobSpeedup `json:"job_types"`
}

// Health is the body of GET /healthz.
type Health struct {
	Status   string `json:"status"`              // ok
	RabbitMQ string `json:"rabbitmq"`            // connected or disconnected
	LogQueue string `json:"log_queue,omitempty"` // the log consumer: connected or disconnected
	Results  int    `json:"results"`
	Store    string `json:"store"`
	// RejectedAtLoad counts the lines of the store skipped at start (not valid results).
	RejectedAtLoad int `json:"rejected_at_load"`
}

// ResultsPage is the body of GET /api/results.
type ResultsPage struct {
	// Matched counts all results that match the filter; Count those returned (after limit).
	Matched int           `json:"matched"`
	Count   int           `json:"count"`
	Results []jobs.Result `json:"results"`
	// JobTypes lists the job types the monitor holds results of; Note says, when the job_type
	// filter names none of them, that the answer is empty for that reason.
	JobTypes []string `json:"job_types"`
	Note     string   `json:"note,omitempty"`
}

// Failed is the body of GET /api/failed: counts by error type and the failed and canceled
// results, newest first.
type Failed struct {
	Failures []Count `json:"failures"`
	ResultsPage
}
