package monitor

import (
	"cmp"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/gpujobs/gpujobs/jobs"
)

// Metrics are the Prometheus series that GET /metrics exposes. They live in their own registry,
// so tests and several monitors in one process do not collide on the global one.
type Metrics struct {
	Registry *prometheus.Registry

	results    *prometheus.CounterVec
	processing *prometheus.HistogramVec
	fallbacks  *prometheus.CounterVec
	duplicates prometheus.Counter
	malformed  prometheus.Counter
	rejected   prometheus.Counter
	batches    prometheus.Histogram
	connected  prometheus.Gauge
	usageSecs  *prometheus.CounterVec
	tenantJobs *prometheus.CounterVec
	gpuUtil    *prometheus.HistogramVec
	gpuMem     *prometheus.HistogramVec

	storeRejected prometheus.Gauge
}

// NewMetrics registers the monitor's series, and Go runtime and process collectors.
func NewMetrics() *Metrics {
	labels := []string{"job_type", "worker_type", "status"}
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpujobs_results_total",
			Help: "Distinct job results counted by the monitor (the store's reload included).",
		}, labels),
		processing: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gpujobs_processing_seconds",
			Help:    "Kernel processing time of jobs, from their results.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 14), // 0.5 ms .. ~75 s
		}, labels),
		fallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpujobs_fallbacks_total",
			Help: "Jobs that preferred a GPU and ran on a CPU.",
		}, []string{"job_type"}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gpujobs_monitor_duplicates_total",
			Help: "Results delivered again (same job_id) and not counted twice.",
		}),
		malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gpujobs_monitor_malformed_total",
			Help: "Messages that were not results, dead-lettered to the queue's .dlq.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gpujobs_monitor_rejected_total",
			Help: "Results that failed validation (bad status, type, time or rate), dead-lettered to the queue's .dlq with the reason.",
		}),
		storeRejected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gpujobs_monitor_store_rejected_lines",
			Help: "Lines of the results file skipped at start because they are not valid results.",
		}),
		batches: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "gpujobs_monitor_batch_size",
			Help:    "Messages per fsynced batch of the store.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 7),
		}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gpujobs_monitor_rabbitmq_connected",
			Help: "1 while the monitor consumes the result queue.",
		}),
		usageSecs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpujobs_tenant_device_seconds_total",
			Help: "Device-seconds used per tenant (\"none\": jobs without one) and job type: kind processing is completed jobs' kernel time, occupancy the time a worker held its device for a job.",
		}, []string{"tenant", "job_type", "device", "kind"}),
		tenantJobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gpujobs_tenant_jobs_total",
			Help: "Jobs per tenant, job type and status (failures and cancellations included).",
		}, []string{"tenant", "job_type", "status"}),
		gpuUtil: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gpujobs_gpu_utilization_percent",
			Help:    "Mean GPU utilisation (NVML: percent of time a kernel ran) of completed GPU jobs, device-wide.",
			Buckets: prometheus.LinearBuckets(10, 10, 10), // 10 % .. 100 %
		}, []string{"job_type"}),
		gpuMem: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "gpujobs_gpu_memory_peak_bytes",
			Help:    "Peak GPU memory in use (NVML, device-wide) while completed GPU jobs ran.",
			Buckets: prometheus.ExponentialBuckets(256<<20, 2, 10), // 256 MiB .. 128 GiB
		}, []string{"job_type"}),
	}
	m.Registry.MustRegister(m.results, m.processing, m.fallbacks, m.duplicates, m.malformed, m.rejected, m.storeRejected, m.batches, m.connected,
		m.gpuUtil, m.gpuMem, m.usageSecs, m.tenantJobs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *Metrics) observe(r jobs.Result, workerType string) {
	m.results.WithLabelValues(r.JobType, workerType, r.Status).Inc()
	m.processing.WithLabelValues(r.JobType, workerType, r.Status).Observe(r.ProcessingTime)
	if r.Fallback != "" {
		m.fallbacks.WithLabelValues(r.JobType).Inc()
	}
	tenant := cmp.Or(r.Tenant, "none")
	m.tenantJobs.WithLabelValues(tenant, r.JobType, r.Status).Inc()
	if r.WorkerType != "" {
		if r.Status == jobs.StatusCompleted {
			m.usageSecs.WithLabelValues(tenant, r.JobType, r.WorkerType, "processing").Add(r.ProcessingTime)
		}
		m.usageSecs.WithLabelValues(tenant, r.JobType, r.WorkerType, "occupancy").Add(occupancy(r))
	}
	if r.Status == jobs.StatusCompleted && r.GPUUtilizationMean != nil {
		m.gpuUtil.WithLabelValues(r.JobType).Observe(*r.GPUUtilizationMean)
		m.gpuMem.WithLabelValues(r.JobType).Observe(float64(r.GPUMemoryPeak))
	}
}
