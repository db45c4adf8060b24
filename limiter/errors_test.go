package limiter

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/redis/go-redis/v9"
)

// fakeReply is a server error reply, as go-redis returns them.

type fakeReply string

func (e fakeReply) Error() string { return string(e) }

func (fakeReply) RedisError() {}

var _ redis.Error = fakeReply("")

func TestIsUnavailableReadsOnlyTheReply(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("limiter: user_allow on floodgate:{u:xEOFx}:w: %w", fakeReply("NOPERM this user has no permissions")), false},
		{fmt.Errorf("limiter: on floodgate:{u:READONLY}:w: %w", fakeReply("ERR script error")), false},
		{fmt.Errorf("limiter: on k: %w", fakeReply("LOADING Redis is loading the dataset in memory")), true},
		{fmt.Errorf("limiter: on k: %w", fakeReply("CLUSTERDOWN The cluster is down")), true},
		// READONLY alone is not an outage: the call path decides (health.readOnly).
		{fmt.Errorf("limiter: on k: %w", fakeReply("READONLY You can't write against a read only replica.")), false},
		{fmt.Errorf("limiter: on k: %w: %w", ErrReadOnly, fakeReply("READONLY You can't write against a read only replica.")), false},
		{fmt.Errorf("limiter: on k: %w", context.DeadlineExceeded), true},
		{errors.New("limiter: on floodgate:{u:i/o timeout}:w: boom"), false},
	} {
		if got := IsUnavailable(tc.err); got != tc.want {
			t.Errorf("IsUnavailable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
