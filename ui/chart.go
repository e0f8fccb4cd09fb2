package ui

import (
	"github.com/latchkeyhq/latchkey"
	"github.com/latchkeyhq/latchkey/audit"
)

// chart is a usage series drawn as an SVG bar chart on the server: each
// bucket a bar of valid verifications with the denied ones stacked on
// top. The template writes only numbers and escaped labels into the SVG;
// colours come from the stylesheet (the CSP allows no inline style).
type chart struct {
	Caption       string
	Unit          string
	W, H          int
	Total, Denied int64
	Max           int64
	Bars          []bar
}

type bar struct {
	Label         string
	Valid, Denied int64
	X, BW         float64
	VY, VH        float64
	DY, DH        float64
}

// Chart size in the SVG's own units (the CSS scales it).
const chartW, chartH = 720, 140

// newChart draws r's series; label formats a bucket's start.
func newChart(caption, unit string, r *audit.UsageReport, layout string) chart {
	c := chart{Caption: caption, Unit: unit, W: chartW, H: chartH}
	n := len(r.Series)
	if n == 0 {
		return c
	}
	for _, b := range r.Series {
		var t int64
		for _, v := range b.Counts {
			t += v
		}
		c.Max = max(c.Max, t)
	}
	step := float64(chartW) / float64(n)
	gap := step * 0.15
	for i, b := range r.Series {
		var total int64
		for _, v := range b.Counts {
			total += v
		}
		valid := b.Counts[latchkey.CodeValid]
		denied := total - valid
		c.Total += total
		c.Denied += denied
		x := float64(i)*step + gap/2
		br := bar{Label: b.Start.UTC().Format(layout), Valid: valid, Denied: denied, X: x, BW: step - gap}
		if c.Max > 0 {
			scale := float64(chartH-4) / float64(c.Max)
			br.VH = float64(valid) * scale
			br.DH = float64(denied) * scale
		}
		br.VY = chartH - br.VH
		br.DY = br.VY - br.DH
		c.Bars = append(c.Bars, br)
	}
	return c
}
