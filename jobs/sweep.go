package jobs

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Limits of a sweep.
const (
	// MaxSweepJobs bounds the jobs of one sweep: each is a child workflow, and a parent's history
	// grows by a few events per child.
	MaxSweepJobs = 1000
	// MaxSweepParallel bounds how many of a sweep's jobs run at once.
	MaxSweepParallel = 100
	// DefaultSweepParallel is the parallelism of a sweep that does not say.
	DefaultSweepParallel = 4
	sweepIDPrefix        = "sweep-"
)

// SweepRequest is a parameter sweep as submitted: the SweepWorkflow's input. Jobs are the grid's
// runs, built and validated by the client; the workflow runs them as child JobWorkflows, at most
// Parallel at a time, the i-th with job ID SweepJobID(SweepID, i, len(Jobs)) and SweepID set.
type SweepRequest struct {
	SweepID string `json:"sweep_id"`
	JobType string `json:"job_type"`
	// Parallel is how many jobs run at once; 0 means DefaultSweepParallel.
	Parallel   int       `json:"parallel,omitempty"`
	Jobs       []Request `json:"jobs"`
	SubmitTime time.Time `json:"submit_time"`
}

// SweepResult is what a SweepWorkflow returns: one result per job, in the order of the request's
// Jobs. A job that failed or was canceled has that status and its error; a job the sweep never
// started (it was canceled first) has status canceled and no worker.
type SweepResult struct {
	SweepID string   `json:"sweep_id"`
	JobType string   `json:"job_type"`
	Status  string   `json:"status"` // completed (every job ended, whatever its status) or canceled
	Results []Result `json:"results"`
}

// NewSweepID returns a fresh sweep-<12 hex> ID.
func NewSweepID() string {
	var b [jobIDHexLen / 2]byte
	rand.Read(b[:]) //nolint:errcheck // crypto/rand never fails on Linux
	return sweepIDPrefix + hex.EncodeToString(b[:])
}

// ValidateSweepID checks that id can name a sweep: a job ID short enough that its jobs' IDs
// (id-<n>) are job IDs too.
func ValidateSweepID(id string) error {
	if err := ValidateJobID(id); err != nil {
		return errors.New(strings.Replace(err.Error(), "job_id", "sweep_id", 1))
	}
	if maxLen := MaxJobIDLen - 1 - len(strconv.Itoa(MaxSweepJobs)); len(id) > maxLen {
		return fmt.Errorf("invalid sweep_id: %d bytes, allowed 1..%d", len(id), maxLen)
	}
	return nil
}

// SweepJobID is the job ID of the i-th (from 0) of a sweep's n jobs: the sweep's ID and the
// job's number from 1, zero-padded so that the IDs sort in grid order.
func SweepJobID(sweepID string, i, n int) string {
	return fmt.Sprintf("%s-%0*d", sweepID, len(strconv.Itoa(n)), i+1)
}

// EffectiveParallel returns the sweep's parallelism with the default applied.
func (s SweepRequest) EffectiveParallel() int {
	if s.Parallel == 0 {
		return DefaultSweepParallel
	}
	return s.Parallel
}

// Validate checks the sweep and each of its jobs' own fields (their params are checked where
// each job is scheduled, as for any job).
func (s SweepRequest) Validate() error {
	if err := ValidateSweepID(s.SweepID); err != nil {
		return err
	}
	if err := ValidateKindName(s.JobType); err != nil {
		return err
	}
	if n := len(s.Jobs); n < 1 || n > MaxSweepJobs {
		return fmt.Errorf("invalid sweep: %d jobs, allowed 1..%d", n, MaxSweepJobs)
	}
	if s.Parallel < 0 || s.Parallel > MaxSweepParallel {
		return fmt.Errorf("invalid parallel: %d is out of range, allowed 1..%d", s.Parallel, MaxSweepParallel)
	}
	for i, r := range s.Jobs {
		if r.JobType != s.JobType {
			return fmt.Errorf("invalid sweep: job %d has job_type %q, the sweep %q", i+1, r.JobType, s.JobType)
		}
		r.JobID, r.SweepID = SweepJobID(s.SweepID, i, len(s.Jobs)), s.SweepID
		if err := r.Validate(); err != nil {
			return fmt.Errorf("sweep job %d: %w", i+1, err)
		}
	}
	return nil
}

// SweepSummary is a sweep's results summarized per point of its grid: what ran on CPUs and on
// GPUs with the same params, and the GPU speedup. The starter prints it, the monitor serves it.
type SweepSummary struct {
	SweepID string `json:"sweep_id"`
	JobType string `json:"job_type"`
	// Varies names the params whose values differ between the points, sorted.
	Varies    []string `json:"varies"`
	Results   int      `json:"results"`
	Completed int      `json:"completed"`
	Failed    int      `json:"failed"`
	Canceled  int      `json:"canceled"`
	// Points are ordered by X when every point has one, else by label.
	Points []SweepPoint `json:"points"`
}

// SweepPoint is one set of params of a sweep, over every device and repetition it ran with.
type SweepPoint struct {
	// Params are the point's params (sorted keys); Label names the varying ones ("size=1000").
	Params json.RawMessage `json:"params"`
	Label  string          `json:"label"`
	// X is the varying param's value when exactly one numeric param varies: the curve's x axis.
	X *float64 `json:"x,omitempty"`
	// CPU and GPU summarize the completed runs by the hardware that ran them; a run that asked
	// for a GPU and fell back to a CPU is a CPU run (and counted in Fallbacks).
	CPU       *SweepRuns `json:"cpu,omitempty"`
	GPU       *SweepRuns `json:"gpu,omitempty"`
	Fallbacks int        `json:"fallbacks"`
	// Failed counts the failed and canceled runs.
	Failed int `json:"failed"`
	// Speedup is CPU.MeanTime / GPU.MeanTime; 0 when the point did not complete on both.
	Speedup float64 `json:"speedup"`
}

// SweepRuns are the completed runs of one point on one kind of hardware.
type SweepRuns struct {
	Runs int `json:"runs"`
	// MeanTime is the mean processing_time, seconds; MeanRate the mean headline rate in RateUnit.
	MeanTime float64 `json:"mean_time"`
	MeanRate float64 `json:"mean_rate"`
	RateUnit string  `json:"rate_unit,omitempty"`
}

// SummarizeSweep summarizes the results of one sweep (results of other sweeps must not be mixed
// in). Speedups follow the monitor's definition: mean CPU time / mean GPU time of completed runs
// with the same params, fallbacks counted as CPU runs.
func SummarizeSweep(sweepID string, results []Result) SweepSummary {
	s := SweepSummary{SweepID: sweepID, Varies: []string{}, Points: []SweepPoint{}}
	type acc struct {
		fields                       map[string]json.RawMessage
		params                       json.RawMessage
		cpuT, gpuT, cpuR, gpuR       []float64
		unit                         string
		fallbacks, failed, firstSeen int
	}
	points := map[string]*acc{}
	var order []string
	for i, r := range results {
		if s.JobType == "" {
			s.JobType = r.JobType
		}
		s.Results++
		switch r.Status {
		case StatusCompleted:
			s.Completed++
		case StatusFailed:
			s.Failed++
		case StatusCanceled:
			s.Canceled++
		}
		fields, canon := canonicalFields(r.Params)
		p := points[string(canon)]
		if p == nil {
			p = &acc{fields: fields, params: canon, firstSeen: i}
			points[string(canon)] = p
			order = append(order, string(canon))
		}
		if r.Status != StatusCompleted {
			p.failed++
			continue
		}
		rate, unit := r.Rate()
		if unit != "" {
			p.unit = unit
		}
		if r.WorkerType == WorkerTypeGPU && r.Fallback == "" {
			p.gpuT, p.gpuR = append(p.gpuT, r.ProcessingTime), appendRate(p.gpuR, rate, unit)
			continue
		}
		if r.Fallback != "" {
			p.fallbacks++
		}
		if r.WorkerType == WorkerTypeCPU {
			p.cpuT, p.cpuR = append(p.cpuT, r.ProcessingTime), appendRate(p.cpuR, rate, unit)
		}
	}
	// A param varies when two points disagree on it (or one lacks it).
	varies := map[string]bool{}
	for _, a := range order {
		for _, b := range order {
			for k, v := range points[a].fields {
				if w, ok := points[b].fields[k]; !ok || !bytes.Equal(v, w) {
					varies[k] = true
				}
			}
		}
	}
	s.Varies = slices.Sorted(maps.Keys(varies))
	allX := true
	for _, key := range order {
		p := points[key]
		pt := SweepPoint{Params: p.params, Label: label(p.fields, s.Varies), Fallbacks: p.fallbacks, Failed: p.failed,
			CPU: runs(p.cpuT, p.cpuR, p.unit), GPU: runs(p.gpuT, p.gpuR, p.unit)}
		if len(s.Varies) == 1 {
			if x, err := strconv.ParseFloat(string(p.fields[s.Varies[0]]), 64); err == nil {
				pt.X = &x
			}
		}
		allX = allX && pt.X != nil
		if pt.CPU != nil && pt.GPU != nil && pt.GPU.MeanTime > 0 {
			pt.Speedup = pt.CPU.MeanTime / pt.GPU.MeanTime
		}
		s.Points = append(s.Points, pt)
	}
	slices.SortStableFunc(s.Points, func(a, b SweepPoint) int {
		if allX {
			return cmpFloat(*a.X, *b.X)
		}
		return strings.Compare(a.Label, b.Label)
	})
	return s
}

func appendRate(rates []float64, v float64, unit string) []float64 {
	if unit == "" {
		return rates
	}
	return append(rates, v)
}

func runs(times, rates []float64, unit string) *SweepRuns {
	if len(times) == 0 {
		return nil
	}
	r := &SweepRuns{Runs: len(times), MeanTime: mean(times)}
	if len(rates) > 0 {
		r.MeanRate, r.RateUnit = mean(rates), unit
	}
	return r
}

func mean(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// canonicalFields decodes a params object into its fields (numbers as written) and re-encodes it
// with sorted keys, so that equal params compare equal whatever order they were written in.
func canonicalFields(p json.RawMessage) (map[string]json.RawMessage, json.RawMessage) {
	fields := map[string]json.RawMessage{}
	if err := json.Unmarshal(p, &fields); err != nil || len(fields) == 0 {
		return map[string]json.RawMessage{}, json.RawMessage("{}")
	}
	for k, v := range fields {
		var buf bytes.Buffer
		if json.Compact(&buf, v) == nil {
			fields[k] = buf.Bytes()
		}
	}
	out, err := json.Marshal(fields) // maps marshal with sorted keys; raw values as they are
	if err != nil {
		return fields, p
	}
	return fields, out
}

func label(fields map[string]json.RawMessage, varies []string) string {
	if len(varies) == 0 {
		return "all"
	}
	parts := make([]string, len(varies))
	for i, k := range varies {
		v := string(fields[k])
		if s, err := strconv.Unquote(v); err == nil {
			v = s
		}
		if v == "" {
			v = "-"
		}
		parts[i] = k + "=" + v
	}
	return strings.Join(parts, " ")
}

// WriteSweepTable prints a sweep's summary: a line of counts, then one row per point with the
// mean time and rate on CPU and on GPU, the speedup, and the fallbacks and failures.
func WriteSweepTable(w io.Writer, s SweepSummary) error {
	fmt.Fprintf(w, "sweep %s: %s, %d jobs: %d completed, %d failed, %d canceled\n",
		s.SweepID, s.JobType, s.Results, s.Completed, s.Failed, s.Canceled)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	head := []string{"POINT"}
	if len(s.Varies) > 0 {
		head = make([]string, len(s.Varies))
		for i, k := range s.Varies {
			head[i] = strings.ToUpper(k)
		}
	}
	fmt.Fprintln(tw, strings.Join(append(head, "CPU TIME", "CPU RATE", "GPU TIME", "GPU RATE", "SPEEDUP", "NOTE"), "\t"))
	for _, p := range s.Points {
		var cells []string
		if len(s.Varies) == 0 {
			cells = []string{p.Label}
		} else {
			fields, _ := canonicalFields(p.Params)
			for _, k := range s.Varies {
				cells = append(cells, strings.TrimPrefix(label(fields, []string{k}), k+"="))
			}
		}
		speedup := "-"
		if p.Speedup > 0 {
			speedup = fmt.Sprintf("%.2fx", p.Speedup)
		}
		var notes []string
		if p.Fallbacks > 0 {
			notes = append(notes, plural(p.Fallbacks, "fallback")+" to CPU")
		}
		if p.Failed > 0 {
			notes = append(notes, fmt.Sprintf("%d failed or canceled", p.Failed))
		}
		cells = append(cells, runTime(p.CPU), runRate(p.CPU), runTime(p.GPU), runRate(p.GPU), speedup, Dash(strings.Join(notes, ", ")))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func runTime(r *SweepRuns) string {
	if r == nil {
		return "-"
	}
	if r.Runs > 1 {
		return fmt.Sprintf("%s (%d runs)", FormatSeconds(r.MeanTime), r.Runs)
	}
	return FormatSeconds(r.MeanTime)
}

func runRate(r *SweepRuns) string {
	if r == nil || r.RateUnit == "" {
		return "-"
	}
	return fmt.Sprintf("%.1f %s", r.MeanRate, r.RateUnit)
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
