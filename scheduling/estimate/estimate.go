// Package estimate predicts how long a job takes on each kind of device. A prediction starts from
// the job's work estimate (FLOPs, bytes) at conservative default rates and is corrected by what
// completed jobs of the same type actually took on that kind of device: a least-squares fit of
// log(actual) against log(baseline), so both a constant factor (this machine is faster than the
// default) and a size dependence (small GEMMs run below peak) are learned.
//
// It must stay pure: no Temporal, no I/O except Save/Load of its own state.
package estimate

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// Rate is what a device kind sustains.
type Rate struct {
	GFLOPS float64 // compute rate, GFLOP/s
	GBPS   float64 // memory rate, GB/s
	// Overhead is a fixed cost per job (kernel launches, synchronisation), seconds.
	Overhead float64
}

// Conservative defaults before anything has been measured: a 2-core CPU with OpenBLAS, and a
// modest GPU. They err on the slow side so derived timeouts are generous.
var (
	DefaultCPU = Rate{GFLOPS: 20, GBPS: 8, Overhead: 0.001}
	DefaultGPU = Rate{GFLOPS: 5000, GBPS: 300, Overhead: 0.02}
	// DefaultPCIe is the host↔device copy rate, GB/s, before transfers have been measured.
	DefaultPCIe = 10.0
	// GPUSetup is the fixed cost of a GPU job outside the kernel (context, allocations), seconds.
	GPUSetup = 0.05
)

// Time is the time of w at rate r: whichever of compute and memory traffic takes longer, plus
// the fixed overhead.
func (r Rate) Time(w jobs.Work) time.Duration {
	return seconds(r.Overhead + r.work(w))
}

// work is the time of w's compute or memory traffic, whichever is longer, without overhead: the
// baseline that observations are fitted against.
func (r Rate) work(w jobs.Work) float64 {
	return math.Max(div(w.FLOPs, r.GFLOPS*1e9), div(w.Bytes, r.GBPS*1e9))
}

func div(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func seconds(s float64) time.Duration { return time.Duration(math.Round(s * float64(time.Second))) }

// Timeout derives a start-to-close timeout from an estimate: factor times the estimate, never
// less than floor.
func Timeout(est time.Duration, factor float64, floor time.Duration) time.Duration {
	return max(floor, time.Duration(float64(est)*factor))
}

// Device kinds, as in results' worker_type.
const (
	CPU = "cpu"
	GPU = "gpu"
)

func defaultRate(device string) Rate {
	if device == GPU {
		return DefaultGPU
	}
	return DefaultCPU
}

// Prediction is what the model expects of one job on one device kind.
type Prediction struct {
	// Processing is the kernel's time, comparable with a result's processing_time.
	Processing time.Duration
	// Transfer is the host↔device copy time (GPU only).
	Transfer time.Duration
	// Total is what the job costs end to end on that device: processing, transfers and setup.
	Total time.Duration
	// Samples is how many completed jobs of this type on this device the prediction learned from.
	Samples int
}

// Observation is one completed job.
type Observation struct {
	JobType    string    `json:"job_type"`
	Device     string    `json:"device"` // cpu or gpu
	Work       jobs.Work `json:"work"`
	Processing float64   `json:"processing"` // seconds
	Transfer   float64   `json:"transfer"`   // seconds
	// Occupancy is how long the job held its worker, start to end (setup included), seconds.
	Occupancy float64 `json:"occupancy,omitempty"`
	// DeviceMemory is the memory of the device that ran it (GPU results), bytes.
	DeviceMemory int64 `json:"device_memory,omitempty"`
}

// Model learns from observations. It is safe for concurrent use.
type Model struct {
	// Window is how many recent observations per (job type, device) are kept; default 64.
	Window int

	mu   sync.Mutex
	obs  map[key][]Observation
	gaps map[string][]float64 // device → recent dispatch gaps, seconds
}

// ObserveGap records the time a busy worker of device spent between two jobs: from one job's end
// to the next one's start (Temporal's dispatch and the activity's start and completion).
func (m *Model) ObserveGap(device string, gap float64) {
	if !(gap >= 0) || gap > 5 {
		return // not a busy worker's gap
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.gaps == nil {
		m.gaps = map[string][]float64{}
	}
	g := append(m.gaps[device], gap)
	if n := len(g) - m.window(); n > 0 {
		g = append([]float64(nil), g[n:]...)
	}
	m.gaps[device] = g
}

// Gap is the median dispatch gap of device's busy workers, 0 before any was seen.
func (m *Model) Gap(device string) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.gaps[device]) == 0 {
		return 0
	}
	return seconds(median(m.gaps[device]))
}

type key struct{ jobType, device string }

// NewModel returns an empty model.
func NewModel() *Model { return &Model{obs: map[key][]Observation{}} }

func (m *Model) window() int {
	if m.Window > 0 {
		return m.Window
	}
	return 64
}

// Observe records a completed job. Observations without a positive processing time are ignored.
func (m *Model) Observe(o Observation) {
	if !(o.Processing > 0) || (o.Device != CPU && o.Device != GPU) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := key{o.JobType, o.Device}
	s := append(m.obs[k], o)
	if n := len(s) - m.window(); n > 0 {
		s = append([]Observation(nil), s[n:]...)
	}
	m.obs[k] = s
}

// Predict returns the expected times of a job of jobType with work w on device.
func (m *Model) Predict(jobType, device string, w jobs.Work) Prediction {
	m.mu.Lock()
	obs := append([]Observation(nil), m.obs[key{jobType, device}]...)
	m.mu.Unlock()

	rate := defaultRate(device)
	p := Prediction{Processing: rate.Time(w), Samples: len(obs)}
	if len(obs) > 0 {
		p.Processing = seconds(fitPredict(obs, rate.work(w), func(o Observation) (float64, float64) {
			return rate.work(o.Work), o.Processing
		}))
	}
	if device == GPU {
		tbase := float64(w.TransferBytes) / (DefaultPCIe * 1e9)
		var tobs []Observation
		for _, o := range obs {
			if o.Transfer > 0 && o.Work.TransferBytes > 0 {
				tobs = append(tobs, o)
			}
		}
		p.Transfer = seconds(fitPredict(tobs, tbase, func(o Observation) (float64, float64) {
			return float64(o.Work.TransferBytes) / (DefaultPCIe * 1e9), o.Transfer
		}))
		p.Total = p.Processing + p.Transfer + overhead(obs, GPUSetup)
	} else {
		p.Total = p.Processing + overhead(obs, 0)
	}
	return p
}

// overhead is what a job holds its worker for beyond its kernel and copies (input generation,
// allocation, a warm-up): the median over the observations that say, else def seconds.
func overhead(obs []Observation, def float64) time.Duration {
	var extra []float64
	for _, o := range obs {
		if o.Occupancy > 0 {
			extra = append(extra, max(0, o.Occupancy-o.Processing-o.Transfer))
		}
	}
	if len(extra) == 0 {
		return seconds(def)
	}
	return seconds(median(extra))
}

// fitPredict predicts y for baseline x0 from (baseline, actual) pairs: a log-log least-squares
// line when the baselines spread enough to fit a slope, else the median ratio; x0 itself when
// there is nothing to learn from.
func fitPredict(obs []Observation, x0 float64, pair func(Observation) (x, y float64)) float64 {
	var lx, ly []float64
	for _, o := range obs {
		x, y := pair(o)
		if x > 0 && y > 0 {
			lx, ly = append(lx, math.Log(x)), append(ly, math.Log(y))
		}
	}
	n := len(lx)
	if n == 0 || x0 <= 0 {
		return x0
	}
	mx, my := mean(lx), mean(ly)
	var sxx, sxy float64
	for i := range lx {
		sxx += (lx[i] - mx) * (lx[i] - mx)
		sxy += (lx[i] - mx) * (ly[i] - my)
	}
	if n >= 3 && sxx/float64(n) > 0.05 { // baselines span more than ~±25%: fit a slope
		slope := math.Min(math.Max(sxy/sxx, 0.3), 1.5)
		return math.Exp(my + slope*(math.Log(x0)-mx))
	}
	ratios := make([]float64, n)
	for i := range lx {
		ratios[i] = ly[i] - lx[i]
	}
	return x0 * math.Exp(median(ratios))
}

func mean(s []float64) float64 {
	var t float64
	for _, v := range s {
		t += v
	}
	return t / float64(len(s))
}

func median(s []float64) float64 {
	s = append([]float64(nil), s...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// MeanJob is the mean time the recent jobs of any type held a worker of device (their
// occupancy, or their processing time when that is all they say), the figure a backlog is
// multiplied by; ok is false before any job completed there.
func (m *Model) MeanJob(device string) (d time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum float64
	var n int
	for k, s := range m.obs {
		if k.device != device {
			continue
		}
		for _, o := range s {
			sum += max(o.Occupancy, o.Processing)
			n++
		}
	}
	if n == 0 {
		return 0, false
	}
	return seconds(sum / float64(n)), true
}

// DeviceMemory is the largest memory of the devices of this kind that recent jobs ran on, bytes;
// 0 before a result said.
func (m *Model) DeviceMemory(device string) int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var most int64
	for k, s := range m.obs {
		if k.device != device {
			continue
		}
		for _, o := range s {
			most = max(most, o.DeviceMemory)
		}
	}
	return most
}

// Save writes the observations to path atomically (write a temporary file of its own, fsync,
// rename), so that concurrent saves never interleave in one file.
func (m *Model) Save(path string) error {
	m.mu.Lock()
	var all []Observation
	for _, s := range m.obs {
		all = append(all, s...)
	}
	m.mu.Unlock()
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err := f.Write(b); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save estimates: %w", err)
	}
	return os.Rename(tmp, path)
}

// Load reads observations saved by Save; a missing file is an empty model.
func (m *Model) Load(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var all []Observation
	if err := json.Unmarshal(b, &all); err != nil {
		return fmt.Errorf("load estimates %s: %w", path, err)
	}
	for _, o := range all {
		m.Observe(o)
	}
	return nil
}
