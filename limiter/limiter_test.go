package limiter

import (
	"context"
	"errors"
	"testing"
)

func TestNilLimiter(t *testing.T) {
	var l *Limiter
	ctx := context.Background()
	if _, err := l.Allow(ctx, "u"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil Allow: %v", err)
	}
	if _, err := l.AllowMany(ctx, []string{"u"}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil AllowMany: %v", err)
	}
	if err := l.Reset(ctx, "u"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil Reset: %v", err)
	}
	if err := (&Limiter{}).Import(ctx, "u", nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("zero Import: %v", err)
	}
}
