package main

import (
	"fmt"
	"image/color"
	"os"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// writePlot draws throughput against payload size, one panel per op and
// one line per transport, as a PNG.
func writePlot(path string, rs []result, ops []string, transports []string, header string) error {
	var plots []*plot.Plot
	for _, op := range ops {
		p := plot.New()
		p.Title.Text = op
		p.X.Label.Text = "payload bytes"
		p.Y.Label.Text = "GB/s (payload, one direction)"
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = sizeTicks{}
		p.Legend.Top = true
		p.Legend.Left = true
		p.Add(plotter.NewGrid())
		var args []any
		for _, t := range transports {
			var xy plotter.XYs
			for _, r := range rs {
				if r.Op == op && r.Transport == t {
					xy = append(xy, plotter.XY{X: float64(r.Bytes), Y: r.GBPerS})
				}
			}
			slices.SortFunc(xy, func(a, b plotter.XY) int { return int(a.X - b.X) })
			if len(xy) > 0 {
				args = append(args, t, xy)
			}
		}
		if err := plotutil.AddLinePoints(p, args...); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
		plots = append(plots, p)
	}
	if len(plots) == 0 {
		return nil
	}
	w, h := vg.Points(360*float64(len(plots))), vg.Points(340)
	img := vgimg.New(w, h)
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	dc.FillText(draw.TextStyle{Color: color.Black, Font: font.From(plot.DefaultFont, 11), Handler: plot.DefaultTextHandler, XAlign: draw.XCenter},
		vg.Point{X: w / 2, Y: h - 14}, header)
	body := dc
	body.Rectangle.Max.Y -= 20
	canvases := plot.Align([][]*plot.Plot{plots}, draw.Tiles{Rows: 1, Cols: len(plots), PadX: 8, PadY: 4}, body)
	for i, p := range plots {
		p.Draw(canvases[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--plot: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("--plot %s: %w", path, err)
	}
	return f.Close()
}

// sizeTicks labels powers of 4 as byte sizes.
type sizeTicks struct{}

func (sizeTicks) Ticks(min, max float64) []plot.Tick {
	var ts []plot.Tick
	for v := 1.0; v <= max*1.0001; v *= 4 {
		if v >= min/1.0001 {
			ts = append(ts, plot.Tick{Value: v, Label: fmtSize(int(v))})
		}
	}
	return ts
}
