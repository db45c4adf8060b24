package limiter

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSlotsAcquireAllOrNothingOnForeignKey: README, "every decision either
// applies all of its effects or none". slots_acquire prunes expired leases
// and settles owed leaves (writes) before it reads the waiter sets; a
// foreign waiter key must fail the call before any of that is written.
func TestSlotsAcquireAllOrNothingOnForeignKey(t *testing.T) {
	ctx := context.Background()
	for _, key := range []string{waitersKey, aliveKey} {
		for _, mode := range []string{"TryAcquire", "Acquire"} {
			l, r := newTestLimiter(t, slotsConfig())
			s := mustSlots(t, l, "llm", 2, time.Minute)
			// An expired lease, which a successful call would prune.
			stale := float64(epoch.Add(-time.Second).UnixMilli())
			if _, err := r.mr.ZAdd(holdersKey, stale, "stale"); err != nil {
				t.Fatal(err)
			}
			if key == waitersKey {
				// A waiter whose heartbeat lapsed: pruning it writes alive
				// before waiters is touched.
				if _, err := r.mr.ZAdd(aliveKey, stale, "gone"); err != nil {
					t.Fatal(err)
				}
			}
			r.mr.Set(key, "not ours")
			var err error
			if mode == "TryAcquire" {
				_, err = s.TryAcquire(ctx, "b")
			} else {
				tctx, cancel := context.WithTimeout(ctx, time.Second)
				_, err = s.Acquire(tctx, "b")
				cancel()
			}
			if !errors.Is(err, ErrForeignKey) {
				t.Fatalf("%s with %s foreign = %v, want ErrForeignKey", mode, key, err)
			}
			if _, err := r.mr.ZScore(holdersKey, "stale"); err != nil {
				t.Errorf("%s with %s foreign wrote anyway: the expired lease was pruned (%v)", mode, key, err)
			}
			if key == waitersKey {
				if _, err := r.mr.ZScore(aliveKey, "gone"); err != nil {
					t.Errorf("%s with %s foreign wrote anyway: the lapsed waiter was pruned (%v)", mode, key, err)
				}
			}
		}
	}
}
