package charts

import (
	"image/color"
	"io"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"

	"github.com/gpujobs/gpujobs/internal/monitor"
)

// SweepCurve draws a sweep's curves over its points: the mean rate on CPU and on GPU, and the
// GPU speedup. The x axis is the varying param when only one numeric param varies (log scale
// when its values span more than a factor of 8), else the points' labels.
func SweepCurve(w io.Writer, s monitor.SweepGroup) error {
	if len(s.Points) == 0 {
		return emptyChart(w, s.SweepID+": no results")
	}
	numeric := len(s.Varies) == 1
	lo, hi := 0.0, 0.0
	for i, p := range s.Points {
		numeric = numeric && p.X != nil && *p.X > 0
		if p.X != nil {
			if i == 0 || *p.X < lo {
				lo = *p.X
			}
			hi = max(hi, *p.X)
		}
	}
	x := func(i int) float64 {
		if numeric {
			return *s.Points[i].X
		}
		return float64(i)
	}
	axis := func(p *plot.Plot) {
		if numeric {
			p.X.Label.Text = s.Varies[0]
			if hi > 8*lo {
				p.X.Scale = plot.LogScale{}
				p.X.Tick.Marker = plot.LogTicks{Prec: -1}
			}
			return
		}
		labels := make([]string, len(s.Points))
		for i, pt := range s.Points {
			labels[i] = pt.Label
		}
		p.NominalX(labels...)
	}

	rates := plot.New()
	rates.Title.Text = s.SweepID + ": mean rate"
	unit := ""
	var cpu, gpu plotter.XYs
	for i, p := range s.Points {
		if p.CPU != nil && p.CPU.RateUnit != "" {
			cpu, unit = append(cpu, plotter.XY{X: x(i), Y: p.CPU.MeanRate}), p.CPU.RateUnit
		}
		if p.GPU != nil && p.GPU.RateUnit != "" {
			gpu, unit = append(gpu, plotter.XY{X: x(i), Y: p.GPU.MeanRate}), p.GPU.RateUnit
		}
	}
	rates.Y.Label.Text = unit
	rates.Y.Min = 0
	if lo, hi := span(append(append(plotter.XYs{}, cpu...), gpu...)); lo > 0 && hi > 20*lo {
		// GPU and CPU rates an order of magnitude or more apart: both visible on a log scale.
		rates.Y.Scale, rates.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		rates.Y.Min, rates.Y.Label.Text = lo/1.5, unit+" (log scale)"
	}
	axis(rates)
	for _, line := range []struct {
		xys  plotter.XYs
		name string
		col  color.Color
	}{{cpu, "CPU", cpuColor}, {gpu, "GPU", gpuColor}} {
		if len(line.xys) == 0 {
			continue
		}
		if err := addLine(rates, line.xys, line.name, line.col); err != nil {
			return err
		}
	}
	rates.Legend.Top, rates.Legend.Left = true, true

	speed := plot.New()
	speed.Title.Text = "GPU speedup (CPU time / GPU time)"
	speed.Y.Label.Text = "speedup (×)"
	speed.Y.Min = 0
	axis(speed)
	var sp plotter.XYs
	var labels []string
	for i, p := range s.Points {
		if p.Speedup > 0 {
			sp = append(sp, plotter.XY{X: x(i), Y: p.Speedup})
			labels = append(labels, strconv.FormatFloat(p.Speedup, 'f', 1, 64)+"×")
		}
	}
	if len(sp) == 0 {
		speed.Title.Text = "GPU speedup: no point completed on both a CPU and a GPU"
	} else {
		if err := addLine(speed, sp, "", gpuColor); err != nil {
			return err
		}
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: sp, Labels: labels})
		if err != nil {
			return err
		}
		l.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(4)}
		speed.Add(l)
		maxV := 1.0
		for _, v := range sp {
			maxV = max(maxV, v.Y)
		}
		speed.Y.Max = maxV * 1.2
	}
	return drawTiles(w, [][]*plot.Plot{{rates, speed}}, vg.Points(900), vg.Points(320))
}

func addLine(p *plot.Plot, xys plotter.XYs, name string, col color.Color) error {
	line, points, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	line.Color, points.Color = col, col
	line.Width = vg.Points(2)
	points.Shape = draw.CircleGlyph{}
	points.Radius = vg.Points(3)
	p.Add(line, points)
	if name != "" {
		p.Legend.Add(name, line, points)
	}
	return nil
}

// span returns the least and the greatest Y.
func span(xys plotter.XYs) (lo, hi float64) {
	for i, p := range xys {
		if i == 0 || p.Y < lo {
			lo = p.Y
		}
		hi = max(hi, p.Y)
	}
	return lo, hi
}
