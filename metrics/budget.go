package metrics

import "github.com/floodgate/floodgate/limiter"

var _ limiter.BudgetObserver = (*Observer)(nil)

// ObserveUnits counts a Budget's units spent or denied. It implements
// limiter.BudgetObserver.
func (o *Observer) ObserveUnits(budget string, spent bool, units int) {
	if o == nil {
		return
	}
	outcome := "denied"
	if spent {
		outcome = "spent"
	}
	o.units.WithLabelValues(budget, outcome).Add(float64(units))
}
