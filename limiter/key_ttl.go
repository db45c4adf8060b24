package limiter

import (
	"math"
	"sort"
	"time"
)

// How long Bucket and Slots keys outlive their last use, and how
// Config.MaxIdleTime bounds them. None can simply be cut to MaxIdleTime:
// a key that vanished early would forget a limit still in force. So
// Config.Validate, Limiter.Bucket and Limiter.Slots reject settings whose
// keys would outlive MaxIdleTime, and the keys keep their natural TTLs:
//
//   - a Bucket's key: until the bucket is full again, at most its refill
//     time (Burst calls at PerSecond, rounded up to a millisecond) after
//     the last admitted call; a denial writes nothing;
//   - a pool's holders key: until its last lease expires, at most one lease
//     after the last grant or Refresh;
//   - a pool's waiter keys: until the last waiter's heartbeat lapses, at
//     most min(MaxIdleTime, max(2s, 4*(poll pause+RedisTimeout))) after
//     the last poll; a cancelled Acquire removes its entries at once.

// bucketKeyTTL is the longest TTL bucket_allow.lua gives a Bucket's key:
// burst emission intervals (each rounded up to a µs), rounded up to a ms.
func bucketKeyTTL(perSecond float64, burst int) time.Duration {
	interval := int64(math.Ceil(1e6 / perSecond))
	return time.Duration((int64(burst)*interval+999)/1000) * time.Millisecond
}

// checkIdleTTLs adds an error for each default Bucket or Slots setting
// whose keys would outlive c.MaxIdleTime.
func checkIdleTTLs(errs *[]error, c Config) {
	if c.MaxIdleTime <= 0 {
		return // reported as MaxIdleTime's own error
	}
	// With MaxConcurrentUsers 0 no default pool exists; Limiter.Slots
	// checks the lease of any other.
	if c.MaxConcurrentUsers > 0 && c.SlotLease > c.MaxIdleTime {
		*errs = append(*errs, fieldError("SlotLease", "(%v) is longer than MaxIdleTime (%v): a pool's key lives one lease after the last grant or Refresh", c.SlotLease, c.MaxIdleTime))
	}
	names := make([]string, 0, len(c.APIRates))
	for n := range c.APIRates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		r := c.APIRates[n]
		if validRate(n, r.PerSecond, r.Burst) != nil {
			continue // reported by APIRates.validate
		}
		if ttl := bucketKeyTTL(r.PerSecond, r.Burst); ttl > c.MaxIdleTime {
			*errs = append(*errs, fieldError("APIRates", "API %q refills in %v, longer than MaxIdleTime (%v): its key lives until the bucket is full again", n, ttl, c.MaxIdleTime))
		}
	}
}
