package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// ObserveUnits adds units under the budget and outcome; a nil Observer
// ignores them.
func TestObserveUnits(t *testing.T) {
	obs, _ := newObserver(t)
	obs.ObserveUnits("llm", true, 900)
	obs.ObserveUnits("llm", true, 120)
	obs.ObserveUnits("llm", false, 1500)
	if got := testutil.ToFloat64(obs.units.WithLabelValues("llm", "spent")); got != 1020 {
		t.Fatalf("spent %v, want 1020", got)
	}
	if got := testutil.ToFloat64(obs.units.WithLabelValues("llm", "denied")); got != 1500 {
		t.Fatalf("denied %v, want 1500", got)
	}
	var none *Observer
	none.ObserveUnits("llm", true, 1)
}
