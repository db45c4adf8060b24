package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// summary is what one replica did, printed by it as one JSON line and
// merged by the launcher. Times are Unix microseconds; each timed event is
// an interval [before, after] around the Redis call that decided it, so
// checks made on these client clocks never blame Redis for network jitter.
type summary struct {
	Replica  int    `json:"replica"`
	Replicas int    `json:"replicas"`
	RunID    string `json:"run_id"`
	Seed     uint64 `json:"seed"`
	Redis    string `json:"redis"` // password redacted
	Limits   limits `json:"limits"`
	// Wired lists the policies this replica applied, in order.
	Wired []string `json:"wired"`

	Messages int            `json:"messages"`
	Answered int            `json:"answered"`
	Held     map[string]int `json:"held"` // by reason
	Degraded int            `json:"degraded"`

	Kinds            map[string]*kindStats `json:"kinds"`
	Endpoints        map[string]int        `json:"endpoints"`         // answers by endpoint
	EndpointFailures map[string]int        `json:"endpoint_failures"` // failed calls by endpoint
	OutageCalls      map[string]int        `json:"outage_calls"`      // calls by endpoint while the local one was down

	Accepted  map[string][][2]int64 `json:"accepted"`   // user → requests the user limit counted
	WikiCalls [][2]int64            `json:"wiki_calls"` // calls the Wikipedia rate allowed
	Leases    [][2]int64            `json:"leases"`     // spans during which an LLM slot was held

	StartedAt  int64 `json:"started_at"`  // Unix ms, the replay's common start
	FinishedAt int64 `json:"finished_at"` // Unix ms
}

type kindStats struct {
	Messages int            `json:"messages"`
	Answered int            `json:"answered"`
	Held     map[string]int `json:"held,omitempty"`
}

// limits are the settings the checks compare against.
type limits struct {
	Cooldown      time.Duration `json:"cooldown"`
	Window        time.Duration `json:"window"`
	PerWindow     int           `json:"per_window"`
	Slots         int           `json:"slots"`
	WikiPerSecond float64       `json:"wiki_per_second"`
	WikiBurst     int           `json:"wiki_burst"`
	RedisTimeout  time.Duration `json:"redis_timeout"`
}

// report is the launcher's view of one run.
type report struct {
	Replicas []summary      `json:"replicas"`
	Total    summary        `json:"total"`
	Chatters map[string]int `json:"chatters"` // distinct users by kind
	Duration time.Duration  `json:"duration"`
	Redis    string         `json:"redis"`
	Checks   []check        `json:"checks"`
}

// check is one line proving (or disproving) that a limit was shared.
type check struct {
	Name string `json:"name"`
	// OK is false when the limit was exceeded; Skipped when the policy
	// was not wired in.
	OK      bool   `json:"ok"`
	Skipped bool   `json:"skipped,omitempty"`
	Line    string `json:"line"`
}

// skipped is the check of a policy that was off or not wired in: it
// passes, and line says why it did not run.
func skipped(name, line string) check { return check{Name: name, OK: true, Skipped: true, Line: line} }

// Failed reports whether any check found a limit exceeded.
func (r *report) Failed() bool {
	for _, c := range r.Checks {
		if !c.OK && !c.Skipped {
			return true
		}
	}
	return false
}

func newReport(sums []summary) *report {
	sort.Slice(sums, func(i, j int) bool { return sums[i].Replica < sums[j].Replica })
	r := &report{Replicas: sums}
	t := summary{Held: map[string]int{}, Kinds: map[string]*kindStats{}, Endpoints: map[string]int{},
		EndpointFailures: map[string]int{}, Accepted: map[string][][2]int64{}}
	for i, s := range sums {
		if i == 0 {
			t.Limits, t.Wired, t.RunID, t.Seed, t.Replicas, t.Redis = s.Limits, s.Wired, s.RunID, s.Seed, s.Replicas, s.Redis
			t.StartedAt, t.FinishedAt = s.StartedAt, s.FinishedAt
		}
		t.StartedAt = min(t.StartedAt, s.StartedAt)
		t.FinishedAt = max(t.FinishedAt, s.FinishedAt)
		t.Messages += s.Messages
		t.Answered += s.Answered
		t.Degraded += s.Degraded
		for k, v := range s.Held {
			t.Held[k] += v
		}
		for k, v := range s.Kinds {
			if t.Kinds[k] == nil {
				t.Kinds[k] = &kindStats{}
			}
			t.Kinds[k].Messages += v.Messages
			t.Kinds[k].Answered += v.Answered
			for why, n := range v.Held {
				if t.Kinds[k].Held == nil {
					t.Kinds[k].Held = map[string]int{}
				}
				t.Kinds[k].Held[why] += n
			}
		}
		for k, v := range s.Endpoints {
			t.Endpoints[k] += v
		}
		for k, v := range s.EndpointFailures {
			t.EndpointFailures[k] += v
		}
		for k, v := range s.OutageCalls {
			if t.OutageCalls == nil {
				t.OutageCalls = map[string]int{}
			}
			t.OutageCalls[k] += v
		}
		for u, v := range s.Accepted {
			t.Accepted[u] = append(t.Accepted[u], v...)
		}
		t.WikiCalls = append(t.WikiCalls, s.WikiCalls...)
		t.Leases = append(t.Leases, s.Leases...)
	}
	r.Total = t
	r.Redis = t.Redis
	r.Checks = []check{windowCheck(&t, len(sums)), slotsCheck(&t, len(sums)), wikiCheck(&t, len(sums))}
	if t.Degraded > 0 {
		for i := range r.Checks {
			if !r.Checks[i].OK {
				r.Checks[i].Line += fmt.Sprintf(" — %d decisions were taken without Redis, each replica by its own limits", t.Degraded)
			}
		}
	}
	return r
}

func wired(s *summary, policy string) bool { return slices.Contains(s.Wired, policy) }

// windowCheck: no user had more than PerWindow requests accepted within
// any Window, counting the accepted requests of every replica together.
func windowCheck(t *summary, replicas int) check {
	lim := t.Limits
	if lim.PerWindow == 0 {
		return skipped("user_window", "per-user window: off (FLOODGATE_MAX_REQUESTS_PER_USER_HOUR=0)")
	}
	c := check{Name: "user_window"}
	worst, worstUser := 0, ""
	users := make([]string, 0, len(t.Accepted))
	for u := range t.Accepted {
		users = append(users, u)
	}
	sort.Strings(users)
	for _, u := range users {
		if n := maxInWindow(t.Accepted[u], lim.Window.Microseconds()); n > worst {
			worst, worstUser = n, u
		}
	}
	c.OK = worst <= lim.PerWindow
	c.Line = fmt.Sprintf("users held to %d per %v across %d replicas: max accepted for any user = %d (limit %d",
		lim.PerWindow, lim.Window, replicas, worst, lim.PerWindow)
	if worst > 0 {
		c.Line += ": " + worstUser
	}
	if replicas > 1 {
		c.Line += fmt.Sprintf("; %d unshared limiters would allow %d", replicas, replicas*lim.PerWindow)
	}
	c.Line += ")"
	return c
}

// maxInWindow is the largest number of spans that certainly fall within
// one window: spans j whose whole [before, after] lies in
// [before_i, before_i+window) for some i. Jitter can only lower it.
func maxInWindow(spans [][2]int64, window int64) int {
	s := slices.Clone(spans)
	sort.Slice(s, func(i, j int) bool { return s[i][0] < s[j][0] })
	best := 0
	for i := range s {
		n := 0
		for j := i; j < len(s); j++ {
			if s[j][1] < s[i][0]+window {
				n++
			}
		}
		best = max(best, n)
	}
	return best
}

// slotsCheck: no more than Slots generations ran at once across replicas.
func slotsCheck(t *summary, replicas int) check {
	if !wired(t, "slots") {
		return skipped("slots", "LLM slots: not wired in this build (Limiter.Slots)")
	}
	c := check{Name: "slots"}
	n := maxOverlap(t.Leases)
	c.OK = n <= t.Limits.Slots
	c.Line = fmt.Sprintf("max LLM slots held at once across %d replicas = %d ≤ %d (separate pools would allow %d)",
		replicas, n, t.Limits.Slots, replicas*t.Limits.Slots)
	if !c.OK {
		c.Line = strings.Replace(c.Line, "≤", ">", 1)
	}
	return c
}

// maxOverlap is the largest number of spans holding one instant. A span
// that ends when another starts does not overlap it.
func maxOverlap(spans [][2]int64) int {
	type ev struct {
		t     int64
		delta int
	}
	evs := make([]ev, 0, 2*len(spans))
	for _, s := range spans {
		evs = append(evs, ev{s[0], 1}, ev{s[1], -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if evs[i].t != evs[j].t {
			return evs[i].t < evs[j].t
		}
		return evs[i].delta < evs[j].delta // ends first
	})
	cur, best := 0, 0
	for _, e := range evs {
		cur += e.delta
		best = max(best, cur)
	}
	return best
}

// wikiCheck: the Wikipedia calls of all replicas together never went
// faster than the API's rate: within any span T, at most burst + ⌊rate·T⌋.
func wikiCheck(t *summary, replicas int) check {
	if !wired(t, "wiki") {
		return skipped("wikipedia_rate", "Wikipedia rate: not wired in this build (Limiter.Bucket)")
	}
	c := check{Name: "wikipedia_rate"}
	calls := slices.Clone(t.WikiCalls)
	sort.Slice(calls, func(i, j int) bool { return calls[i][0] < calls[j][0] })
	rate, burst := t.Limits.WikiPerSecond, t.Limits.WikiBurst
	c.OK = true
	for i := range calls {
		for j := i; j < len(calls); j++ {
			span := float64(calls[j][1]-calls[i][0]) / 1e6
			if j-i+1 > burst+int(math.Floor(rate*span+1e-9)) {
				c.OK = false
			}
		}
	}
	span := 0.0
	if len(calls) > 1 {
		span = float64(calls[len(calls)-1][1]-calls[0][0]) / 1e6
	}
	c.Line = fmt.Sprintf("wikipedia held to %g/s across %d replicas: %d lookups in %.1fs (at most %d + %g/s × %.1fs = %d)",
		rate, replicas, len(calls), span, burst, rate, span, burst+int(math.Floor(rate*span+1e-9)))
	return c
}

// heldColumns are the reasons always shown, in the order a message meets
// them; others appear when they happened.
var heldColumns = []string{"cooldown", "window", "rate", "slots", "backoff", "probing", heldLLMError}

func (r *report) columns() []string {
	cols := slices.Clone(heldColumns)
	var extra []string
	for k := range r.Total.Held {
		if !slices.Contains(cols, k) {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	return append(cols, extra...)
}

// writeTable prints the run for people.
func (r *report) writeTable(w io.Writer) error {
	t := &r.Total
	var b strings.Builder
	users := 0
	for _, n := range r.Chatters {
		users += n
	}
	fmt.Fprintf(&b, "Floodgate chatbot demo: %d messages from %d users (%d regulars, %d spammers, %d raiders), seed %d, %d replicas sharing %s\n",
		t.Messages, users, r.Chatters[kindRegular], r.Chatters[kindSpammer], r.Chatters[kindRaider], t.Seed, len(r.Replicas), r.Redis)
	fmt.Fprintf(&b, "limits: cooldown %v, %d per %v per user, %d LLM slots, wikipedia %g/s; policies: %s\n\n",
		t.Limits.Cooldown, t.Limits.PerWindow, t.Limits.Window, t.Limits.Slots, t.Limits.WikiPerSecond, strings.Join(t.Wired, " → "))

	cols := r.columns()
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "replica\tmessages\tanswered\t")
	for _, c := range cols {
		fmt.Fprintf(tw, "%s\t", c)
	}
	fmt.Fprintln(tw)
	row := func(name string, s *summary) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t", name, s.Messages, s.Answered)
		for _, c := range cols {
			fmt.Fprintf(tw, "%d\t", s.Held[c])
		}
		fmt.Fprintln(tw)
	}
	for i := range r.Replicas {
		row(fmt.Sprint(r.Replicas[i].Replica), &r.Replicas[i])
	}
	row("total", t)
	if err := tw.Flush(); err != nil {
		return err
	}

	b.WriteString("\nheld back: ")
	var why []string
	for _, c := range cols {
		if n := t.Held[c]; n > 0 {
			why = append(why, fmt.Sprintf("%s %d", c, n))
		}
	}
	if len(why) == 0 {
		why = append(why, "none")
	}
	b.WriteString(strings.Join(why, ", "))
	b.WriteString("\n")
	for _, k := range kinds {
		s := t.Kinds[k]
		if s == nil || s.Messages == 0 {
			continue
		}
		fmt.Fprintf(&b, "%-9s %d of %d answered", k+"s:", s.Answered, s.Messages)
		var held []string
		for _, c := range cols {
			if n := s.Held[c]; n > 0 {
				held = append(held, fmt.Sprintf("%s %d", c, n))
			}
		}
		if len(held) > 0 {
			fmt.Fprintf(&b, "; held back: %s", strings.Join(held, ", "))
		}
		b.WriteString("\n")
	}
	b.WriteString("answered by: ")
	var eps []string
	for _, e := range endpoints {
		eps = append(eps, fmt.Sprintf("%s %d (%d failed calls)", e, t.Endpoints[e], t.EndpointFailures[e]))
	}
	b.WriteString(strings.Join(eps, ", "))
	if r.Duration > 0 {
		o := &fakeLLM{duration: r.Duration}
		from, to := o.outageWindow()
		fmt.Fprintf(&b, "\n%s down from %.1fs to %.1fs: %d calls reached it from %d replicas",
			endpointLocal, from.Seconds(), to.Seconds(), t.OutageCalls[endpointLocal], len(r.Replicas))
		if wired(t, "backoff") {
			b.WriteString(" (the first failures, then one probe at a time)")
		}
		fmt.Fprintf(&b, "; %s took %d meanwhile", endpointRemote, t.OutageCalls[endpointRemote])
	}
	if t.Degraded > 0 {
		fmt.Fprintf(&b, "\n%d decisions were taken without Redis (Degraded: no answer within FLOODGATE_REDIS_TIMEOUT=%v, so each replica fell back to its own limits)",
			t.Degraded, t.Limits.RedisTimeout)
	}
	b.WriteString("\n\n")
	for _, c := range r.Checks {
		mark := "✔"
		switch {
		case c.Skipped:
			mark = "·"
		case !c.OK:
			mark = "✘"
		}
		fmt.Fprintf(&b, "%s %s\n", c.Line, mark)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
