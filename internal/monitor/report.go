package monitor

import (
	"encoding/csv"
	"fmt"
	"image/color"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/gpujobs/gpujobs/workflows"
)

// Report file names, inside the output directory.
const (
	ReportMarkdown = "report.md"
	ReportCSV      = "results.csv"
	ReportTimePNG  = "time_per_job_type.png"
	ReportSpeedPNG = "speedup.png"
)

// Chart colours, shared with the dashboard's stylesheet.
var (
	cpuColor = color.RGBA{R: 0x3b, G: 0x82, B: 0xf6, A: 0xff} // blue
	gpuColor = color.RGBA{R: 0x76, G: 0xb9, B: 0x00, A: 0xff} // green
)

// WriteReport writes report.md, results.csv and the PNG charts of agg into dir, and returns the
// paths written. source names where the results came from, for the report's header.
func WriteReport(dir, source string, agg *Aggregator) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	stats, speed := agg.Stats(), agg.Speedup()
	results, _ := agg.Results(Filter{Oldest: true})
	var written []string
	write := func(name string, fn func(io.Writer) error) error {
		path := filepath.Join(dir, name)
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := fn(f); err != nil {
			f.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := f.Close(); err != nil {
			return err
		}
		written = append(written, path)
		return nil
	}
	if err := write(ReportMarkdown, func(w io.Writer) error { return writeMarkdown(w, source, stats, speed) }); err != nil {
		return written, err
	}
	if err := write(ReportCSV, func(w io.Writer) error { return writeCSV(w, results) }); err != nil {
		return written, err
	}
	if err := write(ReportTimePNG, func(w io.Writer) error { return timeChart(w, stats) }); err != nil {
		return written, err
	}
	if err := write(ReportSpeedPNG, func(w io.Writer) error { return speedupChart(w, speed) }); err != nil {
		return written, err
	}
	return written, nil
}

func writeMarkdown(w io.Writer, source string, s Stats, sp Speedups) error {
	var b strings.Builder
	t := s.Totals
	fmt.Fprintf(&b, "# gpujobs results report\n\nGenerated %s from `%s`.\n\n", s.GeneratedAt.Format(time.RFC3339), source)
	b.WriteString("## Totals\n\n| results | completed | failed | canceled | GPU runs | CPU runs | fallbacks (CPU) |\n|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| %d | %d | %d | %d | %d | %d | %d |\n\n", t.Results, t.Completed, t.Failed, t.Canceled, t.GPURuns, t.CPURuns, t.Fallbacks)
	if tp := s.Throughput; tp.FirstStart != nil {
		fmt.Fprintf(&b, "Throughput: %.3f jobs/s overall (%s to %s), %.3f jobs/s in the minute before the report.\n\n",
			tp.Overall, tp.FirstStart.Format(time.RFC3339), tp.LastEnd.Format(time.RFC3339), tp.LastMinute)
	}

	b.WriteString("## Processing time by job type and worker\n\nSeconds of kernel time of completed jobs; p50/p95 interpolate between ranks.\n\n")
	b.WriteString("| job type | worker | results | completed | failed | fallbacks | avg s | min s | p50 s | p95 s | max s | mean rate |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, g := range s.Groups {
		times := "- | - | - | - | -"
		if pt := g.ProcessingTime; pt != nil {
			times = strings.Join([]string{secs(pt.Avg), secs(pt.Min), secs(pt.P50), secs(pt.P95), secs(pt.Max)}, " | ")
		}
		rate := "-"
		if g.Rate != nil {
			rate = fmt.Sprintf("%.2f %s", g.Rate.Mean, g.Rate.Unit)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %s | %s |\n", g.JobType, g.WorkerType,
			g.Results, g.Completed, g.Failed+g.Canceled, g.Fallbacks, times, rate)
	}

	b.WriteString("\n## GPU speedup\n\nSpeedup = mean CPU time / mean GPU time of completed runs with the same job type and the same params " +
		"(fallback runs count as CPU runs). A job type's speedup is the geometric mean over its compared params.\n\n")
	b.WriteString("| job type | speedup | params compared | CPU runs | GPU runs | CPU mean s | GPU mean s | speedup |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, js := range sp.JobTypes {
		if len(js.Compared) == 0 {
			fmt.Fprintf(&b, "| %s | - | none ran on both (%d param sets on one device only) | | | | | |\n", js.JobType, js.Uncompared)
			continue
		}
		for i, c := range js.Compared {
			name, total := "", ""
			if i == 0 {
				name, total = js.JobType, fmt.Sprintf("**%.2f×**", js.Speedup)
			}
			fmt.Fprintf(&b, "| %s | %s | `%s` | %d | %d | %s | %s | %.2f× |\n", name, total, c.Params, c.CPURuns, c.GPURuns, secs(c.CPUMean), secs(c.GPUMean), c.Speedup)
		}
	}
	fmt.Fprintf(&b, "\n![mean processing time per job type](%s)\n\n![GPU speedup per job type](%s)\n", ReportTimePNG, ReportSpeedPNG)

	b.WriteString("\n## Failures by error type\n\n")
	if len(s.Failures) == 0 {
		b.WriteString("None.\n")
	} else {
		b.WriteString("| error type | count |\n|---|---:|\n")
		for _, f := range s.Failures {
			fmt.Fprintf(&b, "| %s | %d |\n", f.ErrorType, f.Count)
		}
	}
	b.WriteString("\n## Fallbacks to CPU\n\n")
	if len(s.Fallbacks) == 0 {
		b.WriteString("None.\n")
	} else {
		b.WriteString("| job type | reason | count |\n|---|---|---:|\n")
		for _, f := range s.Fallbacks {
			fmt.Fprintf(&b, "| %s | %s | %d |\n", f.JobType, strings.ReplaceAll(f.Reason, "|", `\|`), f.Count)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func secs(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

// CSVHeader lists the columns of results.csv.
var CSVHeader = []string{"job_id", "job_type", "status", "worker_type", "worker_id", "device", "fallback",
	"processing_time", "setup_time", "transfer_time", "queue_time", "rate", "rate_unit", "error_type", "error",
	"submit_time", "start_time", "end_time", "params"}

func writeCSV(w io.Writer, results []workflows.JobResult) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }
	ts := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	for _, r := range results {
		rate, unit := r.Rate()
		rateS := ""
		if unit != "" {
			rateS = f(rate)
		}
		row := []string{r.JobID, r.JobType, r.Status, r.WorkerType, r.WorkerID, r.Device, r.Fallback,
			f(r.ProcessingTime), f(r.SetupTime), f(r.TransferTime), f(r.QueueTime), rateS, unit, r.ErrorType, r.Error,
			ts(r.SubmitTime), ts(r.StartTime), ts(r.EndTime), string(CanonicalParams(r.Params))}
		if err := cw.Write(row); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// timeChart draws one panel per job type with the mean processing time on CPU and on GPU: the
// job types differ by orders of magnitude, so each gets its own scale.
func timeChart(w io.Writer, s Stats) error {
	type pair struct{ cpu, gpu float64 }
	byType := map[string]*pair{}
	var types []string
	for _, g := range s.Groups {
		if g.ProcessingTime == nil || (g.WorkerType != workflows.WorkerTypeCPU && g.WorkerType != workflows.WorkerTypeGPU) {
			continue
		}
		p := byType[g.JobType]
		if p == nil {
			p = &pair{}
			byType[g.JobType] = p
			types = append(types, g.JobType)
		}
		if g.WorkerType == workflows.WorkerTypeCPU {
			p.cpu = g.ProcessingTime.Avg
		} else {
			p.gpu = g.ProcessingTime.Avg
		}
	}
	if len(types) == 0 {
		return emptyChart(w, "mean processing time: no completed results")
	}
	plots := [][]*plot.Plot{make([]*plot.Plot, len(types))}
	for i, t := range types {
		p := plot.New()
		p.Title.Text = t
		p.Title.TextStyle.Font.Size = vg.Points(13)
		v := byType[t]
		scale, unit := timeUnit(max(v.cpu, v.gpu))
		p.Y.Label.Text = "mean processing time (" + unit + ")"
		p.Y.Min = 0
		p.NominalX("CPU", "GPU")
		for j, c := range []struct {
			v   float64
			col color.Color
		}{{v.cpu, cpuColor}, {v.gpu, gpuColor}} {
			bars, err := plotter.NewBarChart(plotter.Values{c.v * scale}, vg.Points(46))
			if err != nil {
				return err
			}
			bars.XMin = float64(j)
			bars.Color = c.col
			bars.LineStyle.Width = 0
			p.Add(bars)
			label := "no runs"
			if c.v > 0 {
				label = humanSeconds(c.v)
			}
			l, err := plotter.NewLabels(plotter.XYLabels{XYs: plotter.XYs{{X: float64(j), Y: c.v * scale}}, Labels: []string{label}})
			if err != nil {
				return err
			}
			l.Offset = vg.Point{X: -vg.Points(4 * float64(len(label))), Y: vg.Points(3)}
			p.Add(l)
		}
		p.Y.Max = max(v.cpu, v.gpu) * scale * 1.15
		plots[0][i] = p
	}
	width := vg.Points(max(220*float64(len(types)), 440))
	return drawTiles(w, plots, width, vg.Points(300))
}

// humanSeconds writes a duration in seconds with three significant digits and a fitting unit.
func humanSeconds(v float64) string {
	switch {
	case v < 1e-3:
		return strconv.FormatFloat(v*1e6, 'g', 3, 64) + " µs"
	case v < 1:
		return strconv.FormatFloat(v*1e3, 'g', 3, 64) + " ms"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + " s"
}

// timeUnit picks ms or s for a panel whose largest value is v seconds.
func timeUnit(v float64) (float64, string) {
	if v < 1 {
		return 1000, "ms"
	}
	return 1, "s"
}

func speedupChart(w io.Writer, sp Speedups) error {
	var names []string
	var vals plotter.Values
	for _, js := range sp.JobTypes {
		if js.Speedup > 0 {
			names = append(names, js.JobType)
			vals = append(vals, js.Speedup)
		}
	}
	if len(vals) == 0 {
		return emptyChart(w, "GPU speedup: no job type ran on both CPU and GPU with the same params")
	}
	p := plot.New()
	p.Title.Text = "GPU speedup (mean CPU time / mean GPU time, same params)"
	p.X.Label.Text = "speedup (×)"
	p.X.Min = 0
	bars, err := plotter.NewBarChart(vals, vg.Points(28))
	if err != nil {
		return err
	}
	bars.Horizontal = true
	bars.Color = gpuColor
	bars.LineStyle.Width = 0
	p.Add(bars)
	p.NominalY(names...)
	xys := make(plotter.XYs, len(vals))
	labels := make([]string, len(vals))
	for i, v := range vals {
		xys[i] = plotter.XY{X: v, Y: float64(i)}
		labels[i] = strconv.FormatFloat(v, 'f', 1, 64) + "×"
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return err
	}
	l.Offset = vg.Point{X: vg.Points(4), Y: -vg.Points(4)}
	p.Add(l)
	one, err := plotter.NewLine(plotter.XYs{{X: 1, Y: -0.5}, {X: 1, Y: float64(len(vals)) - 0.5}})
	if err != nil {
		return err
	}
	one.LineStyle.Dashes = []vg.Length{vg.Points(3), vg.Points(3)}
	p.Add(one)
	maxV := 1.0
	for _, v := range vals {
		maxV = max(maxV, v)
	}
	p.X.Max = maxV * 1.18
	return drawTiles(w, [][]*plot.Plot{{p}}, vg.Points(640), vg.Points(max(160, 60+50*float64(len(vals)))))
}

func emptyChart(w io.Writer, msg string) error {
	p := plot.New()
	p.Title.Text = msg
	p.HideAxes()
	return drawTiles(w, [][]*plot.Plot{{p}}, vg.Points(520), vg.Points(120))
}

func drawTiles(w io.Writer, plots [][]*plot.Plot, width, height vg.Length) error {
	img := vgimg.NewWith(vgimg.UseWH(width, height), vgimg.UseDPI(144), vgimg.UseBackgroundColor(color.White))
	dc := draw.New(img)
	t := draw.Tiles{Rows: len(plots), Cols: len(plots[0]), PadX: vg.Points(18), PadY: vg.Points(10),
		PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(12)}
	canvases := plot.Align(plots, t, dc)
	for i := range plots {
		for j := range plots[i] {
			if plots[i][j] != nil {
				plots[i][j].Draw(canvases[i][j])
			}
		}
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}
