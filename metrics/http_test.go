package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestHTTPMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	h, err := NewHTTP(reg)
	if err != nil {
		t.Fatal(err)
	}
	h.Observe("POST /v1/users/{user}/allow", 200, 300*time.Microsecond)
	h.Observe("POST /v1/users/{user}/allow", 200, time.Millisecond)
	h.Observe("unmatched", 404, time.Millisecond)
	want := `
# HELP floodgate_http_requests_total HTTP requests answered, by route pattern and status code.
# TYPE floodgate_http_requests_total counter
floodgate_http_requests_total{code="200",route="POST /v1/users/{user}/allow"} 2
floodgate_http_requests_total{code="404",route="unmatched"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "floodgate_http_requests_total"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(h.duration); n != 2 {
		t.Fatalf("duration series: %d, want 2 (one per route)", n)
	}
	// Twice on one registry: the same metrics, not an error.
	h2, err := NewHTTP(reg)
	if err != nil || h2.requests != h.requests {
		t.Fatalf("second NewHTTP: %v, same counter %v", err, h2 != nil && h2.requests == h.requests)
	}
	var nilH *HTTP
	nilH.Observe("x", 200, time.Second) // must not panic
}
