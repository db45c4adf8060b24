package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/floodgate/floodgate/limiter"
)

// decisionBody.appendJSON writes what json.Marshal would.
func TestDecisionJSON(t *testing.T) {
	ep, probe := "gpu \"1\"\n<é>\xff", true
	for _, b := range []decisionBody{
		newDecisionBody(limiter.Decision{Allowed: true, Remaining: 19, ResetAfter: time.Hour}),
		newDecisionBody(limiter.Decision{Reason: limiter.ReasonCooldown, RetryAfter: time.Second + 1, Degraded: true, Cached: true}),
		backoffBody(limiter.Decision{Allowed: true, Probe: true, Token: "9f86d081884c7d65", Remaining: limiter.Unlimited}),
		{Reason: "rate", decisionExtra: decisionExtra{Probe: &probe, Endpoint: &ep, Error: "redis \"down\""}},
		{Allowed: true, Remaining: 18500, decisionExtra: decisionExtra{Reservation: "3.1500.9f86d081884c7d65"}},
	} {
		want, _ := json.Marshal(b)
		if got := b.appendJSON(nil); string(got) != string(want)+"\n" {
			t.Errorf("appendJSON:\n%s\njson.Marshal:\n%s", got, want)
		}
	}
}
