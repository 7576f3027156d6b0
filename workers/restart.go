package workers

import (
	"context"
	"fmt"

	"go.uber.org/zap"
)

// restartable is a runner that can become unusable for good in this process: the GPU runner,
// after an error that CUDA says only a new process recovers from (an illegal address, a launch
// failure). Dead is closed then and DeadErr says why.
type restartable interface {
	Dead() <-chan struct{}
	DeadErr() error
}

// waitStop blocks until ctx is done or the runner died, then calls stop, which stops polling and
// returns once the running jobs have ended (or StopTimeout later, when they are handed back).
// After a death it returns an error, so that the process exits non-zero and its supervisor
// (systemd, Kubernetes, compose) starts a fresh one; the jobs that were on the dead device have
// failed retryably and run elsewhere meanwhile.
func waitStop(ctx context.Context, runner any, stop func(), logger *zap.Logger) error {
	var dead <-chan struct{}
	r, ok := runner.(restartable)
	if ok {
		dead = r.Dead()
	}
	select {
	case <-ctx.Done():
		stop()
		return nil
	case <-dead:
		logger.Error("a device is unusable: stopping to be restarted", zap.Error(r.DeadErr()))
		stop()
		return fmt.Errorf("%w: exiting so that the supervisor restarts the worker", r.DeadErr())
	}
}
