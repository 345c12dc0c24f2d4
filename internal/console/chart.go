package console

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/dvrelay/dvrelay/internal/queue"
)

// series are the kinds an activity chart shows, with their colour and name. Completed, retrying
// and dead-lettered stack as bars (each attempt ends one way); accepted is the line over them.
var series = []struct{ kind, label, class string }{
	{queue.HistCompleted, "completed", "ok"},
	{queue.HistRetrying, "retrying", "warn"},
	{queue.HistDeadLettered, "dead-lettered", "bad"},
}

// Chart geometry, in SVG user units; the SVG scales to its box.
const (
	chartW, chartH = 600.0, 200.0
	padL, padR     = 36.0, 8.0
	padT, padB     = 10.0, 24.0
)

// activityChart draws a as stacked bars with the accepted line, labelled every labelEvery
// buckets with layout. Every value in it is a number or a label made here: nothing from an event.
func activityChart(a *queue.Activity, title, layout string, labelEvery int) template.HTML {
	if a == nil || len(a.Counts) == 0 {
		return ""
	}
	top := 1
	for _, c := range a.Counts {
		top = max(top, c[queue.HistCompleted]+c[queue.HistRetrying]+c[queue.HistDeadLettered], c[queue.HistAccepted])
	}
	top = niceCeil(top)
	plotW, plotH := chartW-padL-padR, chartH-padT-padB
	slot := plotW / float64(len(a.Counts))
	barW := max(slot*0.7, 1)
	y := func(v int) float64 { return padT + plotH - plotH*float64(v)/float64(top) }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s" xmlns="http://www.w3.org/2000/svg">`,
		chartW, chartH, template.HTMLEscapeString(title))
	grid := []int{0, top}
	if top%2 == 0 {
		grid = []int{0, top / 2, top}
	}
	for _, v := range grid {
		fmt.Fprintf(&b, `<line class="grid" x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f"/>`, padL, chartW-padR, y(v), y(v))
		fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%.1f" text-anchor="end">%d</text>`, padL-6, y(v)+4, v)
	}
	for i, c := range a.Counts {
		x := padL + float64(i)*slot + (slot-barW)/2
		base := 0
		start := a.Since.Add(time.Duration(i) * a.Bucket)
		for _, s := range series {
			n := c[s.kind]
			if n == 0 {
				continue
			}
			fmt.Fprintf(&b, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s %s: %d</title></rect>`,
				s.class, x, y(base+n), barW, y(base)-y(base+n), start.UTC().Format(layout), s.label, n)
			base += n
		}
		if i%labelEvery == 0 {
			fmt.Fprintf(&b, `<text class="axis" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`,
				padL+float64(i)*slot+slot/2, chartH-6, start.UTC().Format(layout))
		}
	}
	var pts []string
	for i, c := range a.Counts {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", padL+float64(i)*slot+slot/2, y(c[queue.HistAccepted])))
	}
	fmt.Fprintf(&b, `<polyline class="accepted" points="%s"/>`, strings.Join(pts, " "))
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // built above from numbers and fixed labels only
}

// niceCeil rounds n up to 1, 2 or 5 times a power of ten, for an axis that reads easily.
func niceCeil(n int) int {
	p := 1
	for {
		for _, m := range []int{1, 2, 5} {
			if m*p >= n {
				return m * p
			}
		}
		p *= 10
	}
}

// barRow is one bar of a horizontal bar list (dead letters by reason).
type barRow struct {
	Label string
	Count int
	Width float64 // percent of the widest
}

func barRows(labels []string, counts []int) []barRow {
	top := 1
	for _, n := range counts {
		top = max(top, n)
	}
	out := make([]barRow, len(labels))
	for i := range labels {
		out[i] = barRow{Label: labels[i], Count: counts[i], Width: 100 * float64(counts[i]) / float64(top)}
	}
	return out
}
