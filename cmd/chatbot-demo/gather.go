package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Replicas started on their own (docker compose) have no launcher to
// collect their summaries, so they pool them in Redis: each stores its
// summary and counts itself in; the one that completes the count reads
// them all and prints the report. The keys share the run's hash tag, so
// they sit in one Cluster slot, and expire after ttl.

// gatherSummary stores s and, when it is the last of s.Replicas to
// arrive, returns every replica's summary (nil otherwise).
func gatherSummary(ctx context.Context, rdb redis.UniversalClient, prefix string, s *summary, ttl time.Duration) ([]summary, error) {
	tag := prefix + "{demo-" + s.RunID + "}"
	data, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var n *redis.IntCmd
	_, err = rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, tag+":summary:"+strconv.Itoa(s.Replica), data, ttl)
		n = p.Incr(ctx, tag+":done")
		p.Expire(ctx, tag+":done", ttl)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storing the summary: %w", err)
	}
	if int(n.Val()) != s.Replicas {
		return nil, nil
	}
	keys := make([]string, s.Replicas)
	for i := range keys {
		keys[i] = tag + ":summary:" + strconv.Itoa(i+1)
	}
	vals, err := rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("reading the summaries: %w", err)
	}
	sums := make([]summary, 0, len(vals))
	for i, v := range vals {
		text, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("replica %d's summary is missing (expired, or two replicas share DEMO_REPLICA_ID)", i+1)
		}
		var one summary
		if err := json.Unmarshal([]byte(text), &one); err != nil {
			return nil, fmt.Errorf("replica %d's summary: %w", i+1, err)
		}
		sums = append(sums, one)
	}
	return sums, nil
}
