package command

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"
)

// PR_SET_PDEATHSIG fires when the thread that started the program exits, not only the worker:
// Go ends a thread whose goroutine exits while locked to it (gorgonia's context goroutine does on
// an error). A command job's program survives any number of those; without the runner holding
// its thread, one of the runs here is killed by SIGKILL within seconds.
func TestAProgramOutlivesThreadsThatExit(t *testing.T) {
	fx := newFixture(t, Config{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			done := make(chan struct{})
			go func() { runtime.LockOSThread(); close(done) }() // exits locked: its thread ends
			<-done
			time.Sleep(time.Millisecond)
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	for i := range 3 {
		if _, err := fx.run(context.Background(), "job-threads", i+1, sh("sleep 1"), nil); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
	}
}
