// Package charts draws the report's PNG charts with gonum/plot. Only the monitor-report command
// links it, so the monitor's own binary (serve, tail) carries no plotting code.
package charts

import (
	"image/color"
	"io"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"

	"github.com/gpujobs/gpujobs/internal/monitor"
	"github.com/gpujobs/gpujobs/jobs"
)

// File names of the charts, inside the report's directory.
const (
	TimePNG    = "time_per_job_type.png"
	SpeedupPNG = "speedup.png"
)

// Chart colours, shared with the dashboard's stylesheet.
var (
	cpuColor = color.RGBA{R: 0x3b, G: 0x82, B: 0xf6, A: 0xff} // blue
	gpuColor = color.RGBA{R: 0x76, G: 0xb9, B: 0x00, A: 0xff} // green
)

// All returns the report's charts.
func All() []monitor.Chart {
	return []monitor.Chart{
		{File: TimePNG, Caption: "mean processing time per job type", Draw: func(w io.Writer, s monitor.Stats, _ monitor.Speedups) error { return timeChart(w, s) }},
		{File: SpeedupPNG, Caption: "GPU speedup per job type", Draw: func(w io.Writer, _ monitor.Stats, sp monitor.Speedups) error { return speedupChart(w, sp) }},
	}
}

// timeChart draws one panel per job type with the mean processing time on CPU and on GPU: the
// job types differ by orders of magnitude, so each gets its own scale.
func timeChart(w io.Writer, s monitor.Stats) error {
	type pair struct{ cpu, gpu float64 }
	byType := map[string]*pair{}
	var types []string
	for _, g := range s.Groups {
		if g.ProcessingTime == nil || (g.WorkerType != jobs.WorkerTypeCPU && g.WorkerType != jobs.WorkerTypeGPU) {
			continue
		}
		p := byType[g.JobType]
		if p == nil {
			p = &pair{}
			byType[g.JobType] = p
			types = append(types, g.JobType)
		}
		if g.WorkerType == jobs.WorkerTypeCPU {
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

func speedupChart(w io.Writer, sp monitor.Speedups) error {
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
