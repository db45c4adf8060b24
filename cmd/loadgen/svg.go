package main

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgsvg"
)

// testColor is each test's color in the drawing (Okabe-Ito, readable by
// the colour-blind).
var testColor = map[string]color.Color{
	testCooldown: color.RGBA{0, 114, 178, 255},
	testHourly:   color.RGBA{230, 159, 0, 255},
	testFull:     color.RGBA{0, 158, 115, 255},
}

// errNoMemory: --svg draws memory, which this run could not read.
var errNoMemory = errors.New("no memory figures to draw (the server reports no INFO memory)")

// writeSVG draws two panels against users (log scale): bytes per user and
// total memory, each test measured (solid, dots) beside the study's
// estimate (dashed), and the study's RAM limit per row on the right.
func (r *Report) writeSVG(w io.Writer) error {
	c := vgsvg.New(11*vg.Inch, 4.5*vg.Inch)
	if err := r.drawMemory(c); err != nil {
		return err
	}
	if _, err := c.WriteTo(w); err != nil {
		return fmt.Errorf("loadgen: writing the SVG: %w", err)
	}
	return nil
}

// drawMemory draws the two panels on c.
func (r *Report) drawMemory(c vg.CanvasSizer) error {
	type series struct{ per, total, estPer, estTotal plotter.XYs }
	byTest := map[string]*series{}
	for _, x := range r.tests() {
		if x.Memory == nil {
			continue
		}
		s := byTest[x.Test]
		if s == nil {
			s = &series{}
			byTest[x.Test] = s
		}
		u := float64(x.Users)
		est := float64(studyEstimate(x.Test, x.Users))
		s.per = append(s.per, plotter.XY{X: u, Y: x.Memory.BytesPerUser})
		s.total = append(s.total, plotter.XY{X: u, Y: max(float64(x.Memory.DeltaBytes), 1) / 1e6})
		s.estPer = append(s.estPer, plotter.XY{X: u, Y: est / u})
		s.estTotal = append(s.estTotal, plotter.XY{X: u, Y: est / 1e6})
	}
	if len(byTest) == 0 {
		return errNoMemory
	}
	per, total := plot.New(), plot.New()
	per.Title.Text = "Redis memory per user"
	per.Y.Label.Text = "bytes per user"
	per.Y.Min = 0
	total.Title.Text = "Total Redis memory"
	total.Y.Label.Text = "MB (decimal)"
	total.Y.Scale, total.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	for _, p := range []*plot.Plot{per, total} {
		p.X.Label.Text = "users"
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		p.Add(plotter.NewGrid())
	}
	// One legend, where the total's lines leave room: bottom right.
	total.Legend.Top, total.Legend.Left = false, false
	total.Legend.XOffs, total.Legend.YOffs = -vg.Millimeter*2, vg.Millimeter*2
	for _, test := range allTests {
		s := byTest[test]
		if s == nil {
			continue
		}
		for _, xy := range []plotter.XYs{s.per, s.total, s.estPer, s.estTotal} {
			slices.SortFunc(xy, func(a, b plotter.XY) int { return int(a.X - b.X) })
		}
		c := testColor[test]
		if err := addLine(per, s.per, c, false, ""); err != nil {
			return err
		}
		if err := addLine(per, s.estPer, c, true, ""); err != nil {
			return err
		}
		if err := addLine(total, s.total, c, false, test+": Redis, measured"); err != nil {
			return err
		}
		if err := addLine(total, s.estTotal, c, true, test+": study's estimate"); err != nil {
			return err
		}
	}
	var limit plotter.XYs
	for _, row := range acceptanceTable {
		limit = append(limit, plotter.XY{X: float64(row.users), Y: float64(row.ram) / 1e6})
	}
	sc, err := plotter.NewScatter(limit)
	if err != nil {
		return err
	}
	sc.GlyphStyle.Color = color.RGBA{213, 94, 0, 255}
	sc.GlyphStyle.Shape = draw.CrossGlyph{}
	sc.GlyphStyle.Radius = vg.Points(4)
	total.Add(sc)
	total.Legend.Add("study's RAM limit", sc)
	q, err := plotter.NewScatter(plotter.XYs{{X: questionUsers, Y: questionBytes / 1e6}})
	if err != nil {
		return err
	}
	q.GlyphStyle.Shape = draw.BoxGlyph{}
	q.GlyphStyle.Radius = vg.Points(3)
	total.Add(q)
	total.Legend.Add("the study's question: < 10 MB at 10K?", q)

	dc := draw.New(c)
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Millimeter * 8, PadTop: vg.Millimeter * 2,
		PadBottom: vg.Millimeter * 2, PadLeft: vg.Millimeter * 2, PadRight: vg.Millimeter * 4}
	canvases := plot.Align([][]*plot.Plot{{per, total}}, tiles, dc)
	per.Draw(canvases[0][0])
	total.Draw(canvases[0][1])
	return nil
}

// addLine adds a line with dots to p, dashed for an estimate; legend ""
// adds no legend entry.
func addLine(p *plot.Plot, xy plotter.XYs, c color.Color, dashed bool, legend string) error {
	l, pts, err := plotter.NewLinePoints(xy)
	if err != nil {
		return fmt.Errorf("loadgen: drawing: %w", err)
	}
	l.Color, pts.Color = c, c
	l.Width = vg.Points(1.5)
	pts.Shape = draw.CircleGlyph{}
	if dashed {
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		pts.Shape = draw.RingGlyph{}
	}
	p.Add(l, pts)
	if legend != "" {
		p.Legend.Add(legend, l, pts)
	}
	return nil
}
