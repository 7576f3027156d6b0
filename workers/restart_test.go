package workers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

type dyingRunner struct {
	dead chan struct{}
	err  error
}

func (d *dyingRunner) Dead() <-chan struct{} { return d.dead }
func (d *dyingRunner) DeadErr() error        { return d.err }

// A worker stops when it is told to, and exits with nil; a runner whose device died stops it too,
// after the running jobs (stop waits for them), with an error naming the device, so that the
// process exits non-zero.
func TestWaitStop(t *testing.T) {
	t.Run("signal", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		stopped := false
		if err := waitStop(ctx, &dyingRunner{dead: make(chan struct{})}, func() { stopped = true }, zap.NewNop()); err != nil || !stopped {
			t.Fatalf("err %v, stopped %v", err, stopped)
		}
	})
	t.Run("device died", func(t *testing.T) {
		r := &dyingRunner{dead: make(chan struct{}), err: errors.New("GPU 0 (NVIDIA H200) is unusable until the worker restarts: CUDA_ERROR_ILLEGAL_ADDRESS")}
		done := make(chan error, 1)
		stopped := make(chan struct{})
		go func() {
			done <- waitStop(context.Background(), r, func() { close(stopped) }, zap.NewNop())
		}()
		select {
		case <-stopped:
			t.Fatal("stopped before the device died")
		case <-time.After(10 * time.Millisecond):
		}
		close(r.dead)
		err := <-done
		if err == nil || !strings.Contains(err.Error(), "CUDA_ERROR_ILLEGAL_ADDRESS") || !strings.Contains(err.Error(), "restarts the worker") {
			t.Fatalf("err %v", err)
		}
		select {
		case <-stopped:
		default:
			t.Fatal("returned without stopping the worker")
		}
	})
	t.Run("runner that cannot die", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
		defer cancel()
		if err := waitStop(ctx, struct{}{}, func() {}, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
	})
}
