package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// progressDelay hides the bar for phases shorter than this: only long
// phases show one.
const progressDelay = 300 * time.Millisecond

// progress draws one bar at a time on a terminal; on anything else (a
// file, a pipe, CI logs) it draws nothing.
type progress struct {
	w       io.Writer
	enabled bool
}

// newProgress enables the bar only when w is a terminal.
func newProgress(w io.Writer, quiet bool) *progress {
	return &progress{w: w, enabled: !quiet && isTerminal(w)}
}

// isTerminal reports whether w is a character device (a TTY), without
// golang.org/x/term.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// bar is one phase's progress: counted (add) or timed (the bar fills as
// time passes).
type bar struct {
	p       *progress
	label   string
	total   int64
	n       atomic.Int64
	timed   time.Duration
	started time.Time
	stop    chan struct{}
	wg      sync.WaitGroup
	once    sync.Once
}

// start begins a counted bar of total steps.
func (p *progress) start(label string, total int) *bar {
	return p.begin(&bar{p: p, label: label, total: int64(total)})
}

// startTimed begins a bar that fills over d.
func (p *progress) startTimed(label string, d time.Duration) *bar {
	return p.begin(&bar{p: p, label: label, timed: max(d, time.Millisecond)})
}

func (p *progress) begin(b *bar) *bar {
	b.started = time.Now()
	if p == nil || !p.enabled {
		return b
	}
	b.stop = make(chan struct{})
	b.wg.Add(1)
	go b.draw()
	return b
}

func (b *bar) add(n int) { b.n.Add(int64(n)) }

// fraction is how far the phase is, 0..1.
func (b *bar) fraction() float64 {
	if b.timed > 0 {
		return min(float64(time.Since(b.started))/float64(b.timed), 1)
	}
	if b.total <= 0 {
		return 0
	}
	return min(float64(b.n.Load())/float64(b.total), 1)
}

func (b *bar) draw() {
	defer b.wg.Done()
	delay := time.NewTimer(progressDelay)
	defer delay.Stop()
	select {
	case <-b.stop:
		return
	case <-delay.C:
	}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		fmt.Fprint(b.p.w, "\r"+renderBar(b.label, b.fraction(), 30)+"\x1b[K")
		select {
		case <-b.stop:
			fmt.Fprint(b.p.w, "\r\x1b[K")
			return
		case <-tick.C:
		}
	}
}

// done erases the bar. Safe to call more than once and on a disabled bar.
func (b *bar) done() {
	if b.stop == nil {
		return
	}
	b.once.Do(func() {
		close(b.stop)
		b.wg.Wait()
	})
}

// renderBar is "[#######.......]  45% label" with width cells.
func renderBar(label string, frac float64, width int) string {
	frac = min(max(frac, 0), 1)
	full := int(frac * float64(width))
	return fmt.Sprintf("[%s%s] %3d%% %s", strings.Repeat("#", full), strings.Repeat(".", width-full), int(frac*100), label)
}
