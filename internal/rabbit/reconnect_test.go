package rabbit

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The backoff doubles up to its bound, starts over after a session that consumed, and a fatal
// error or the end of ctx ends the loop.
func TestReconnect(t *testing.T) {
	errAway, errFatal := errors.New("broker away"), errors.New("topology")
	script := []struct {
		consumed bool
		err      error
	}{{false, errAway}, {false, errAway}, {false, errAway}, {true, errAway}, {false, errAway}, {false, errFatal}}
	var waits []time.Duration
	n := 0
	err := Reconnect(context.Background(), time.Millisecond, 3*time.Millisecond,
		func(context.Context) (bool, error) { s := script[n]; n++; return s.consumed, s.err },
		func(err error) bool { return errors.Is(err, errFatal) },
		func(_ error, wait time.Duration) { waits = append(waits, wait) })
	if !errors.Is(err, errFatal) {
		t.Fatalf("Reconnect returned %v, want the fatal error", err)
	}
	want := []time.Duration{1, 2, 3, 1, 2}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if len(waits) != len(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	for i := range want {
		if waits[i] != want[i] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	err = Reconnect(ctx, time.Hour, time.Hour,
		func(context.Context) (bool, error) { cancel(); return false, errAway },
		func(error) bool { return false }, func(error, time.Duration) { t.Error("retrying after ctx ended") })
	if err != nil {
		t.Errorf("after ctx ended: %v, want nil", err)
	}
}
