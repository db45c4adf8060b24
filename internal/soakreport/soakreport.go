// Package soakreport is the report of `chatbot-demo soak`, which -json
// prints: one definition for the command that writes it and the
// integration test that reads it, so a renamed field cannot turn into a
// zero the test passes on.
package soakreport

// Report is what the soak prints at the end (-json prints it as JSON).
type Report struct {
	Duration  string `json:"duration"`
	Decisions int    `json:"decisions"`
	Admitted  int    `json:"admitted"`
	Degraded  int    `json:"degraded"`
	// Errors counts failed calls by kind ("library: unavailable",
	// "sidecar: http 503 redis_down", ...).
	Errors map[string]int `json:"errors"`
	// MaxCall is the longest call, against Deadline.
	MaxCallMs    float64 `json:"max_call_ms"`
	DeadlineMs   float64 `json:"deadline_ms"`
	OverDeadline int     `json:"calls_over_deadline"`
	// Faults lists the outage windows: [start, end] in seconds from the
	// start, fault plus grace.
	Faults []Fault `json:"faults"`
	// OverLimit counts users admitted above their limit (more than the
	// window's count within the window, or twice within the cooldown):
	// InOutage when a degraded admission or one inside an outage window
	// took part, Outside otherwise (must be 0).
	OverLimitInOutage int      `json:"over_limit_in_outage"`
	OverLimitOutside  int      `json:"over_limit_outside"`
	OutsideExamples   []string `json:"outside_examples,omitempty"`
	// Goroutines and heap (HeapAlloc after a GC for this process; the
	// sidecars' go_goroutines and go_memstats_heap_alloc_bytes).
	Start []Proc `json:"start"`
	End   []Proc `json:"end"`
}

// Fault is one outage window.
type Fault struct {
	Kind  string  `json:"kind"`
	From  float64 `json:"from_s"`
	Until float64 `json:"until_s"`
}

// Proc is one process's goroutines and heap.
type Proc struct {
	Name       string  `json:"name"`
	Goroutines int     `json:"goroutines"`
	HeapMB     float64 `json:"heap_mb"`
	// RSSMB is the sidecar's resident memory (process_resident_memory_bytes).
	RSSMB float64 `json:"rss_mb,omitempty"`
	// LiveMB is the sidecar's heap marked live by its last GC (its
	// GODEBUG=gctrace=1 output): HeapMB, read between collections with
	// serve's GOGC=400, may be up to 5 times that.
	LiveMB float64 `json:"live_heap_mb,omitempty"`
}
