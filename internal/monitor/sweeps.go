package monitor

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gpujobs/gpujobs/jobs"
)

// DefaultSweepLimit is how many sweeps /api/sweeps returns without ?limit=.
const DefaultSweepLimit = 20

// SweepGroup is a sweep's summary with the span of its results' end times; the body of
// /api/sweeps lists them, the most recently ended first.
type SweepGroup struct {
	jobs.SweepSummary
	FirstEnd time.Time `json:"first_end,omitzero"`
	LastEnd  time.Time `json:"last_end,omitzero"`
}

// Sweeps is the body of GET /api/sweeps.
type Sweeps struct {
	GeneratedAt time.Time    `json:"generated_at"`
	Matched     int          `json:"matched"`
	Sweeps      []SweepGroup `json:"sweeps"`
}

// sweepIndex groups the results that carry a sweep ID, by sweep. It follows the aggregator's
// append-only result list with a cursor, so each request costs only the results added since.
type sweepIndex struct {
	mu     sync.Mutex
	cursor int
	byID   map[string][]jobs.Result
}

func (x *sweepIndex) update(agg *Aggregator) {
	results, next := agg.Since(x.cursor)
	x.cursor = next
	if x.byID == nil {
		x.byID = map[string][]jobs.Result{}
	}
	for _, r := range results {
		if r.SweepID != "" {
			x.byID[r.SweepID] = append(x.byID[r.SweepID], r)
		}
	}
}

// sweeps summarizes the sweeps (only sweepID, when set), the most recently ended first, at most
// limit (0: all).
func (x *sweepIndex) sweeps(agg *Aggregator, sweepID string, limit int) Sweeps {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.update(agg)
	out := Sweeps{GeneratedAt: agg.now().UTC(), Sweeps: []SweepGroup{}}
	for id, results := range x.byID {
		if sweepID != "" && id != sweepID {
			continue
		}
		g := SweepGroup{SweepSummary: jobs.SummarizeSweep(id, results)}
		for _, r := range results {
			if r.EndTime.IsZero() {
				continue
			}
			if g.FirstEnd.IsZero() || r.EndTime.Before(g.FirstEnd) {
				g.FirstEnd = r.EndTime
			}
			if r.EndTime.After(g.LastEnd) {
				g.LastEnd = r.EndTime
			}
		}
		out.Sweeps = append(out.Sweeps, g)
	}
	sort.Slice(out.Sweeps, func(i, j int) bool {
		a, b := out.Sweeps[i], out.Sweeps[j]
		if !a.LastEnd.Equal(b.LastEnd) {
			return a.LastEnd.After(b.LastEnd)
		}
		return a.SweepID < b.SweepID
	})
	out.Matched = len(out.Sweeps)
	if limit > 0 && len(out.Sweeps) > limit {
		out.Sweeps = out.Sweeps[:limit]
	}
	return out
}

// SweepsOf summarizes every sweep among agg's results, the most recently ended first.
func SweepsOf(agg *Aggregator) []SweepGroup {
	var x sweepIndex
	return x.sweeps(agg, "", 0).Sweeps
}

func (s *Server) sweepsAPI(w http.ResponseWriter, r *http.Request) {
	if !checkParams(w, r, "sweep_id", "limit") {
		return
	}
	limit := DefaultSweepLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, fmt.Errorf("limit=%q: want a count (0 for all)", v))
			return
		}
		limit = n
	}
	writeJSON(w, http.StatusOK, s.sweeps.sweeps(s.agg, r.URL.Query().Get("sweep_id"), limit))
}

// SweepChart draws one sweep's chart (package charts has the PNG one).
type SweepChart func(w io.Writer, s SweepGroup) error

var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// SweepChartFile is the report's file name of a sweep's chart.
func SweepChartFile(sweepID string) string {
	return "sweep_" + unsafeFileChars.ReplaceAllString(sweepID, "_") + ".png"
}

// WriteSweepReport appends a Sweeps section to dir's report.md (written by WriteReport first):
// per sweep, most recent first and at most limit of them (0: all), its table of points and its
// chart, drawn by draw into SweepChartFile. It returns the charts written.
func WriteSweepReport(dir string, agg *Aggregator, limit int, draw SweepChart) ([]string, error) {
	sweeps := SweepsOf(agg)
	if limit > 0 && len(sweeps) > limit {
		sweeps = sweeps[:limit]
	}
	var b strings.Builder
	b.WriteString("\n## Sweeps\n\n")
	if len(sweeps) == 0 {
		b.WriteString("None (`starter sweep` runs one).\n")
	} else {
		b.WriteString("One row per point: mean kernel time and rate of its completed runs on each kind of hardware (fallback runs count as CPU), " +
			"and the speedup = mean CPU time / mean GPU time.\n")
	}
	var written []string
	for _, s := range sweeps {
		fmt.Fprintf(&b, "\n### %s: %s\n\n%d jobs: %d completed, %d failed, %d canceled", s.SweepID, s.JobType, s.Results, s.Completed, s.Failed, s.Canceled)
		if !s.LastEnd.IsZero() {
			fmt.Fprintf(&b, "; ended %s to %s", s.FirstEnd.Format(time.RFC3339), s.LastEnd.Format(time.RFC3339))
		}
		b.WriteString(".\n\n| point | CPU runs | CPU mean s | CPU rate | GPU runs | GPU mean s | GPU rate | speedup | fallbacks | failed |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, p := range s.Points {
			speedup := "-"
			if p.Speedup > 0 {
				speedup = fmt.Sprintf("%.2f×", p.Speedup)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", p.Label, runCells(p.CPU), runCells(p.GPU), strings.Join([]string{speedup, strconv.Itoa(p.Fallbacks), strconv.Itoa(p.Failed)}, " | "))
		}
		if draw == nil {
			continue
		}
		path := filepath.Join(dir, SweepChartFile(s.SweepID))
		if err := writeReportFile(path, func(w io.Writer) error { return draw(w, s) }); err != nil {
			return written, err
		}
		written = append(written, path)
		fmt.Fprintf(&b, "\n![speedup curve of %s](%s)\n", s.SweepID, SweepChartFile(s.SweepID))
	}
	f, err := os.OpenFile(filepath.Join(dir, ReportMarkdown), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return written, err
	}
	if _, err := io.WriteString(f, b.String()); err != nil {
		f.Close()
		return written, err
	}
	return written, f.Close()
}

func runCells(r *jobs.SweepRuns) string {
	if r == nil {
		return "0 | - | -"
	}
	rate := "-"
	if r.RateUnit != "" {
		rate = fmt.Sprintf("%.2f %s", r.MeanRate, r.RateUnit)
	}
	return fmt.Sprintf("%d | %s | %s", r.Runs, secs(r.MeanTime), rate)
}

func writeReportFile(path string, fn func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := fn(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
