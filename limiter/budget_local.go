package limiter

import (
	"sync"
	"time"
)

// maxLocalBudgetUsers bounds the users one Budget's fallback remembers.
const maxLocalBudgetUsers = 10_000

// localBudget is one Budget's in-process fallback (FailLocal): the same
// window and reservations as budget_reserve.lua, for this replica's calls
// alone, on this process's clock; N replicas admit at most N times the
// limit while Redis is out of reach. Its tokens are "l" + the nonce, so
// Settle finds them here whatever Redis does meanwhile. It keeps at most
// maxLocalBudgetUsers users (forgetting one whose window is empty first,
// else any) and maxBudgetEntries entries per user (merging as the script
// does), 40 bytes each: about 50 MB at worst, 8 MB at 20 entries a user;
// and it outlives the outage: what a replica admitted locally was never
// counted in Redis, so it keeps counting here until it ages out.
type localBudget struct {
	mu    sync.Mutex
	users map[string][]localSpend
}

type localSpend struct {
	at    time.Time
	units int
	nonce string // "" once settled
}

func (s *localState) budget(name string) *localBudget {
	return shared(s, &s.budgets, name, func() *localBudget { return &localBudget{users: map[string][]localSpend{}} })
}

// live drops user's entries that aged out; mu is held.
func (lb *localBudget) live(user string, now time.Time, window time.Duration) []localSpend {
	es := lb.users[user]
	i := 0
	for i < len(es) && !es[i].at.After(now.Add(-window)) {
		i++
	}
	es = es[i:]
	if len(es) == 0 {
		delete(lb.users, user)
		return nil
	}
	lb.users[user] = es
	return es
}

// admit mirrors budget_reserve.lua: n units now, as a reservation named
// nonce, or a spend when nonce is "".
func (lb *localBudget) admit(now time.Time, user string, n int, nonce string, limit int, window, lease time.Duration) Decision {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	es := lb.live(user, now, window)
	used := 0
	for _, e := range es {
		used += e.units
	}
	deny := func(retry time.Duration) Decision {
		d := Decision{Reason: ReasonBudget, Remaining: max(limit-used, 0), RetryAfter: retry}
		d.ResetAfter = es[len(es)-1].at.Add(window).Sub(now)
		return d // degraded gives it the 1 ms floor
	}
	if used+n > limit {
		freed := 0
		for _, e := range es {
			freed += e.units
			if used-freed+n <= limit {
				return deny(e.at.Add(window).Sub(now))
			}
		}
	}
	if len(es) >= maxBudgetEntries {
		a := -1
		merged := false
		for i, e := range es {
			if e.nonce != "" && e.at.Add(lease).After(now) {
				continue
			}
			if a < 0 {
				a = i
				continue
			}
			es[i].units += es[a].units
			es[i].nonce = ""
			es = append(es[:a], es[a+1:]...)
			merged = true
			break
		}
		if !merged {
			// As the script: wait until enough leases end for two
			// entries to merge. Entries are in time order, and so are
			// the live reservations' lease ends.
			need := 2
			if a >= 0 {
				need = 1
			}
			for _, e := range es {
				if e.nonce != "" && e.at.Add(lease).After(now) {
					if need--; need == 0 {
						return deny(e.at.Add(lease).Sub(now))
					}
				}
			}
		}
	}
	if len(lb.users) >= maxLocalBudgetUsers && len(es) == 0 {
		for u, other := range lb.users {
			if len(other) == 0 || !other[len(other)-1].at.After(now.Add(-window)) {
				delete(lb.users, u)
				break
			}
		}
		if len(lb.users) >= maxLocalBudgetUsers {
			for u := range lb.users {
				delete(lb.users, u)
				break
			}
		}
	}
	lb.users[user] = append(es, localSpend{at: now, units: n, nonce: nonce})
	d := Decision{Allowed: true, Remaining: limit - used - n, ResetAfter: window}
	if nonce != "" {
		d.Token = "l" + nonce
	}
	return d
}

// settle mirrors budget_settle.lua, with its statuses.
func (lb *localBudget) settle(now time.Time, user, nonce string, actual int, lease time.Duration) int64 {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	es := lb.users[user]
	for i, e := range es {
		if e.nonce != nonce {
			continue
		}
		if !e.at.Add(lease).After(now) {
			return -2
		}
		if actual == 0 {
			lb.users[user] = append(es[:i], es[i+1:]...)
		} else {
			es[i].units, es[i].nonce = actual, ""
		}
		return 1
	}
	return 0
}
