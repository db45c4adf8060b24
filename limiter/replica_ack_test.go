package limiter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// miniredis has no replicas: WAIT answers 0 at once, which is what a
// master whose replicas are all gone answers after WaitTimeout.
func TestReplicaAckUnacknowledgedAdmissionIsAnOutage(t *testing.T) {
	cfg := userConfig(time.Minute, 5, time.Hour)
	cfg.WaitReplicas = 1
	cfg.WaitTimeout = 5 * time.Millisecond
	cfg.OnRedisError = FailClosed
	l, r := newTestLimiter(t, cfg)
	d := mustAllow(t, l, "u1")
	if d.Allowed || !d.Degraded || d.Reason != ReasonRedisDown {
		t.Fatalf("unacknowledged admission under FailClosed: %+v, want a degraded redis_down denial", d)
	}
	// The master counted it: the cooldown holds the user, and a denial
	// needs no acknowledgement, so it is Redis's own answer.
	d = mustAllow(t, l, "u1")
	if d.Allowed || d.Degraded || d.Reason != ReasonCooldown {
		t.Fatalf("second call: %+v, want a non-degraded cooldown denial", d)
	}
	if n := r.mr.Keys(); len(n) == 0 {
		t.Fatal("the master holds no key: the decision was not written")
	}
	// AllowMany takes the same path.
	ds, err := l.AllowMany(context.Background(), []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}
	if ds[0].Allowed || ds[1].Allowed || !ds[1].Degraded {
		t.Fatalf("AllowMany: %+v, want both denied, u2 degraded", ds)
	}
}

func TestReplicaAckOffAdmits(t *testing.T) {
	l, _ := newTestLimiter(t, userConfig(time.Minute, 5, time.Hour))
	if d := mustAllow(t, l, "u1"); !d.Allowed || d.Degraded {
		t.Fatalf("WaitReplicas 0: %+v, want a plain admission", d)
	}
}

func TestReplicaAckErrorIsUnavailable(t *testing.T) {
	if !IsUnavailable(ErrReplicaAck) || !errors.Is(ErrReplicaAck, ErrRedisUnavailable) {
		t.Fatal("ErrReplicaAck must count as an outage, so the FailureMode applies")
	}
}

func TestReplicaAckConfig(t *testing.T) {
	for _, tc := range []struct {
		replicas int
		timeout  time.Duration
		want     string // "" for valid
	}{
		{0, 0, ""},
		{1, 0, ""},
		{1, 100 * time.Millisecond, ""},
		{-1, 0, "WaitReplicas (FLOODGATE_REDIS_WAIT_REPLICAS)"},
		{17, 0, "WaitReplicas (FLOODGATE_REDIS_WAIT_REPLICAS)"},
		{1, -time.Second, "WaitTimeout (FLOODGATE_REDIS_WAIT_TIMEOUT)"},
		{1, time.Microsecond, "WaitTimeout (FLOODGATE_REDIS_WAIT_TIMEOUT)"},
		{1, 500 * time.Millisecond, "shorter than RedisTimeout"},
	} {
		cfg := DefaultConfig()
		cfg.WaitReplicas, cfg.WaitTimeout = tc.replicas, tc.timeout
		err := cfg.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("WaitReplicas %d WaitTimeout %v: %v, want %q", tc.replicas, tc.timeout, err, tc.want)
		}
	}
	cfg, err := configFromEnv(map[string]string{"FLOODGATE_REDIS_WAIT_REPLICAS": "1", "FLOODGATE_REDIS_WAIT_TIMEOUT": "50ms"})
	if err != nil || cfg.WaitReplicas != 1 || cfg.WaitTimeout != 50*time.Millisecond {
		t.Fatalf("from the environment: %+v %v", cfg, err)
	}
}
