package pool

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	MiB = int64(1) << 20
	GiB = int64(1) << 30
)

// fakeGPU is a device as the driver sees it: a total and what is allocated on it, by the jobs
// (through alloc) and by other processes (other). It fails cuMemGetInfo with err when set.
type fakeGPU struct {
	mu          sync.Mutex
	total, used int64
	other       int64
	err         error
	freeQueries int
}

func (g *fakeGPU) free() (int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.freeQueries++
	if g.err != nil {
		return 0, g.err
	}
	return g.total - g.used - g.other, nil
}

func (g *fakeGPU) alloc(n int64) {
	g.mu.Lock()
	g.used += n
	g.mu.Unlock()
}

// cudaErr stands for a CUDA error with its CUresult.
type cudaErr struct{ code int }

func (e *cudaErr) Error() string { return fmt.Sprintf("CUDA error %d", e.code) }

func classify(err error) Severity {
	return Worst(err, func(e error) (Severity, bool) {
		var ce *cudaErr
		if errors.As(e, &ce) && ce == e {
			return Classify(ce.code), true
		}
		return 0, false
	})
}

func newPool(t *testing.T, o Options, gpus ...*fakeGPU) *Pool {
	t.Helper()
	var devs []Device
	for i, g := range gpus {
		devs = append(devs, Device{Name: fmt.Sprintf("GPU %d", i), Capacity: g.total})
	}
	return New(devs, o, Hooks{Free: func(i int) (int64, error) { return gpus[i].free() }, Classify: classify})
}

func acquire(t *testing.T, p *Pool, mem int64) *Lease {
	t.Helper()
	l, err := p.Acquire(context.Background(), mem)
	if err != nil {
		t.Fatalf("Acquire(%d MiB): %v", mem/MiB, err)
	}
	return l
}

type result struct {
	l   *Lease
	err error
}

// acquireAsync starts an Acquire that is expected to wait, and returns once it waits in the queue.
func acquireAsync(t *testing.T, p *Pool, ctx context.Context, mem int64) <-chan result {
	t.Helper()
	before := p.Waiting()
	ch := make(chan result, 1)
	go func() {
		l, err := p.Acquire(ctx, mem)
		ch <- result{l, err}
	}()
	waitFor(t, "the job to queue", func() bool { return p.Waiting() > before })
	return ch
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func received(t *testing.T, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Acquire did not return")
	}
	return result{}
}

func stillWaiting(t *testing.T, ch <-chan result) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("Acquire returned (%v, %v), want it to wait", r.l, r.err)
	default:
	}
}

// Small jobs share a device up to the per-device limit: with a limit of 3, three 1 GiB jobs run
// together on one 16 GiB GPU and a fourth waits for one of them to end.
func TestSmallJobsShareUpToTheLimit(t *testing.T) {
	g := &fakeGPU{total: 16 * GiB}
	p := newPool(t, Options{JobsPerDevice: 3}, g)
	if p.Slots() != 3 {
		t.Fatalf("Slots() = %d, want 3", p.Slots())
	}
	var ls []*Lease
	for i := 0; i < 3; i++ {
		ls = append(ls, acquire(t, p, GiB))
	}
	if st := p.Status()[0]; st.Running != 3 || st.Reserved != 3*(GiB+DefaultHeadroom) {
		t.Fatalf("status %+v, want 3 running, 3 GiB + headroom reserved", st)
	}
	ch := acquireAsync(t, p, context.Background(), GiB)
	stillWaiting(t, ch)
	ls[1].Release(nil)
	r := received(t, ch)
	if r.err != nil || r.l.Device() != 0 {
		t.Fatalf("fourth job: %v on %v", r.err, r.l)
	}
	if got := p.Status()[0].Running; got != 3 {
		t.Errorf("%d running, want 3", got)
	}
}

// A job whose estimate does not fit next to the running ones waits, though the job limit would
// allow it; it starts when enough memory is released.
func TestEstimateMustFitBesideRunningJobs(t *testing.T) {
	g := &fakeGPU{total: 10 * GiB}
	p := newPool(t, Options{JobsPerDevice: 4}, g)
	a := acquire(t, p, 6*GiB)
	small := acquire(t, p, GiB) // 6 + 1 + headroom fits in 10
	ch := acquireAsync(t, p, context.Background(), 6*GiB)
	small.Release(nil)
	stillWaiting(t, ch) // 6 + 6 GiB never fit together
	a.Release(nil)
	if r := received(t, ch); r.err != nil {
		t.Fatal(r.err)
	}
}

// The driver's free figure counts what the running jobs already allocated; the pool charges a
// running job only for the part of its estimate it has not allocated yet, so that memory is not
// counted twice. Without Allocated reports, a job's allocations are charged twice and a job that
// fits is held back.
func TestAllocatedMemoryIsNotChargedTwice(t *testing.T) {
	for _, report := range []bool{true, false} {
		t.Run(fmt.Sprintf("report=%v", report), func(t *testing.T) {
			g := &fakeGPU{total: 10 * GiB}
			p := newPool(t, Options{}, g)
			a := acquire(t, p, 4*GiB)
			g.alloc(4 * GiB)
			if report {
				a.Allocated(4 * GiB)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := make(chan result, 1)
			go func() {
				l, err := p.Acquire(ctx, 5*GiB)
				ch <- result{l, err}
			}()
			if report {
				// room = min(10 - 4 - 5 headrooms..., free 6 GiB - 64 MiB outstanding): 5 GiB + headroom fits.
				if r := received(t, ch); r.err != nil {
					t.Fatal(r.err)
				}
				return
			}
			waitFor(t, "the job to queue", func() bool { return p.Waiting() == 1 })
			stillWaiting(t, ch)
		})
	}
}

// Memory that another process holds is seen through the driver's free figure: on an idle device
// nothing of ours can free it, so the job fails at once with a retryable "free now" error
// instead of waiting.
func TestMemoryHeldElsewhereFailsRetryably(t *testing.T) {
	g := &fakeGPU{total: 10 * GiB, other: 8 * GiB}
	p := newPool(t, Options{}, g)
	_, err := p.Acquire(context.Background(), 4*GiB)
	var me *MemoryError
	if !errors.As(err, &me) || !me.Free {
		t.Fatalf("Acquire = %v, want a MemoryError about free memory", err)
	}
	if want := "GPU 0 has 1.9 GiB free now"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if p.Waiting() != 0 {
		t.Errorf("%d waiting after the error", p.Waiting())
	}
}

func TestNeverFits(t *testing.T) {
	p := newPool(t, Options{}, &fakeGPU{total: 8 * GiB}, &fakeGPU{total: 16 * GiB})
	for _, err := range []error{p.Fits(16 * GiB), func() error { _, err := p.Acquire(context.Background(), 16*GiB); return err }()} {
		var me *MemoryError
		if !errors.As(err, &me) || me.Free || me.Device != "GPU 1" {
			t.Errorf("got %v, want a MemoryError naming the larger GPU's limit", err)
		}
	}
	if err := p.Fits(15 * GiB); err != nil {
		t.Errorf("Fits(15 GiB) on a 16 GiB GPU: %v", err)
	}
}

// Jobs go to the device running the fewest jobs.
func TestLeastBusyDevice(t *testing.T) {
	p := newPool(t, Options{JobsPerDevice: 2}, &fakeGPU{total: 8 * GiB}, &fakeGPU{total: 8 * GiB})
	var count [2]int
	for i := 0; i < 4; i++ {
		count[acquire(t, p, GiB).Device()]++
	}
	if count != [2]int{2, 2} {
		t.Errorf("jobs per device %v, want [2 2]", count)
	}
}

// Admission is first come, first served: a large job that waits for room holds back a small one
// that arrived after it, which would fit.
func TestFirstComeFirstServed(t *testing.T) {
	g := &fakeGPU{total: 10 * GiB}
	p := newPool(t, Options{JobsPerDevice: 4}, g)
	a := acquire(t, p, 6*GiB)
	big := acquireAsync(t, p, context.Background(), 9*GiB)
	small := acquireAsync(t, p, context.Background(), GiB)
	stillWaiting(t, small)
	a.Release(nil)
	r := received(t, big)
	if r.err != nil {
		t.Fatal(r.err)
	}
	stillWaiting(t, small) // 9 + 1 GiB + headrooms do not fit in 10
	r.l.Release(nil)
	if r := received(t, small); r.err != nil {
		t.Fatal(r.err)
	}
}

// A canceled wait leaves the queue, and the job behind it goes ahead.
func TestCanceledWaitLeavesTheQueue(t *testing.T) {
	p := newPool(t, Options{JobsPerDevice: 1}, &fakeGPU{total: 10 * GiB})
	a := acquire(t, p, GiB)
	ctx, cancel := context.WithCancel(context.Background())
	first := acquireAsync(t, p, ctx, GiB)
	second := acquireAsync(t, p, context.Background(), GiB)
	cancel()
	if r := received(t, first); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("canceled wait: %v", r.err)
	}
	a.Release(nil)
	if r := received(t, second); r.err != nil {
		t.Fatal(r.err)
	}
}

// A lost context (CUDA_ERROR_ASSERT) breaks the device: no job starts on it while the failing
// ones run; then one lease resets it, and jobs run there again.
func TestContextLostIsResetOnceIdle(t *testing.T) {
	p := newPool(t, Options{JobsPerDevice: 2}, &fakeGPU{total: 10 * GiB})
	a, b := acquire(t, p, GiB), acquire(t, p, GiB)
	a.Release(fmt.Errorf("launch: %w", &cudaErr{710}))
	if st := p.Status()[0]; st.State != Broken {
		t.Fatalf("state %v after CUDA_ERROR_ASSERT, want broken", st.State)
	}
	next := acquireAsync(t, p, context.Background(), GiB)
	stillWaiting(t, next) // b still runs in the broken context
	b.Release(&cudaErr{710})
	r := received(t, next)
	if r.err != nil || !r.l.NeedsReset() {
		t.Fatalf("next job: %v, reset %v; want a lease that resets first", r.err, r.l != nil && r.l.NeedsReset())
	}
	if st := p.Status()[0]; st.State != Resetting {
		t.Fatalf("state %v, want resetting", st.State)
	}
	r.l.ResetDone(nil)
	if st := p.Status()[0]; st.State != Healthy {
		t.Fatalf("state %v after the reset, want healthy", st.State)
	}
	c := acquire(t, p, GiB) // shares the device with the job that reset it
	r.l.Release(nil)
	c.Release(nil)
	select {
	case <-p.Dead():
		t.Fatal("Dead closed")
	default:
	}
}

// Resets that do not help (the context is lost again before any job completes) end in a dead
// device after MaxResets.
func TestResetsThatDoNotHelpKillTheDevice(t *testing.T) {
	p := newPool(t, Options{MaxResets: 2}, &fakeGPU{total: 10 * GiB})
	acquire(t, p, GiB).Release(&cudaErr{709})
	for i := 0; i < 2; i++ {
		l := acquire(t, p, GiB)
		if !l.NeedsReset() {
			t.Fatalf("round %d: no reset asked", i)
		}
		l.ResetDone(nil)
		l.Release(&cudaErr{709})
	}
	if st := p.Status()[0]; st.State != Dead || !strings.Contains(st.Cause.Error(), "after 2 context resets") {
		t.Fatalf("status %+v, want dead after 2 resets", st)
	}
	// A success between resets starts the count again.
	p = newPool(t, Options{MaxResets: 1}, &fakeGPU{total: 10 * GiB})
	for i := 0; i < 3; i++ {
		acquire(t, p, GiB).Release(&cudaErr{710})
		l := acquire(t, p, GiB)
		l.ResetDone(nil)
		l.Release(nil)
	}
	if st := p.Status()[0]; st.State != Healthy {
		t.Fatalf("state %v, want healthy: every reset was followed by a completed job", st.State)
	}
}

// A failed reset kills the device.
func TestFailedResetKillsTheDevice(t *testing.T) {
	p := newPool(t, Options{}, &fakeGPU{total: 10 * GiB})
	acquire(t, p, GiB).Release(&cudaErr{710})
	l := acquire(t, p, GiB)
	l.ResetDone(&cudaErr{999})
	l.Release(errors.New("not run"))
	if st := p.Status()[0]; st.State != Dead {
		t.Fatalf("state %v, want dead", st.State)
	}
	if !strings.Contains(p.Err().Error(), "context reset failed") {
		t.Errorf("Err() = %v", p.Err())
	}
}

// An error that CUDA says needs a new process (700, 719, ...) kills its device: Dead closes, new
// jobs are refused at once with ErrDraining (retryable: they run on another worker), and the jobs
// running on the other devices go on to the end.
func TestDeviceLostDrainsTheWorker(t *testing.T) {
	for _, code := range []int{700, 719, 716} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			p := newPool(t, Options{JobsPerDevice: 1}, &fakeGPU{total: 10 * GiB}, &fakeGPU{total: 10 * GiB})
			a, b := acquire(t, p, GiB), acquire(t, p, GiB)
			if a.Device() == b.Device() {
				t.Fatal("both jobs on one device")
			}
			waiting := acquireAsync(t, p, context.Background(), GiB)
			a.Release(errors.Join(errors.New("cublasSgemm: CUBLAS_STATUS_EXECUTION_FAILED"), fmt.Errorf("cuStreamSynchronize: %w", &cudaErr{code})))
			select {
			case <-p.Dead():
			default:
				t.Fatal("Dead not closed")
			}
			if r := received(t, waiting); !errors.Is(r.err, ErrDraining) {
				t.Fatalf("waiting job: %v, want ErrDraining", r.err)
			}
			if _, err := p.Acquire(context.Background(), GiB); !errors.Is(err, ErrDraining) || !strings.Contains(err.Error(), "GPU "+fmt.Sprint(a.Device())) {
				t.Fatalf("new job: %v, want ErrDraining naming the dead GPU", err)
			}
			st := p.Status()
			if st[a.Device()].State != Dead || st[b.Device()].State != Healthy || st[b.Device()].Running != 1 {
				t.Fatalf("status %+v", st)
			}
			b.Release(nil)
			if got := p.Status()[b.Device()].Running; got != 0 {
				t.Errorf("%d running after the last release", got)
			}
		})
	}
}

// A sticky error seen by the free-memory query kills the device before any job starts on it.
func TestFreeQueryErrorClassified(t *testing.T) {
	bad := &fakeGPU{total: 10 * GiB, err: &cudaErr{700}}
	p := newPool(t, Options{}, bad)
	if _, err := p.Acquire(context.Background(), GiB); !errors.Is(err, ErrDraining) {
		t.Fatalf("Acquire = %v, want ErrDraining", err)
	}
	// A harmless error only skips the device for this job.
	g := &fakeGPU{total: 10 * GiB, err: &cudaErr{2}}
	p = newPool(t, Options{}, g)
	if _, err := p.Acquire(context.Background(), GiB); err == nil || errors.Is(err, ErrDraining) {
		t.Fatalf("Acquire = %v, want a plain failure", err)
	}
	g.err = nil
	acquire(t, p, GiB)
}

// Releasing twice changes nothing.
func TestReleaseTwice(t *testing.T) {
	p := newPool(t, Options{}, &fakeGPU{total: 10 * GiB})
	l := acquire(t, p, GiB)
	l.Release(nil)
	l.Release(&cudaErr{700})
	if st := p.Status()[0]; st.State != Healthy || st.Running != 0 {
		t.Fatalf("status %+v", st)
	}
}

// Many concurrent jobs never exceed the limit or the memory, and all of them run.
func TestConcurrentJobsRespectLimits(t *testing.T) {
	g := &fakeGPU{total: 6 * GiB}
	p := newPool(t, Options{JobsPerDevice: 3}, g)
	var mu sync.Mutex
	running, peak, peakMem, mem := 0, 0, int64(0), int64(0)
	var wg sync.WaitGroup
	const jobs = 200
	for i := 0; i < jobs; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			need := int64(1+i%3) * GiB / 2
			l, err := p.Acquire(context.Background(), need)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			running++
			mem += need + DefaultHeadroom
			peak, peakMem = max(peak, running), max(peakMem, mem)
			mu.Unlock()
			g.alloc(need)
			l.Allocated(need)
			g.alloc(-need)
			mu.Lock()
			running--
			mem -= need + DefaultHeadroom
			mu.Unlock()
			l.Release(nil)
		}(i)
	}
	wg.Wait()
	if peak > 3 || peakMem > 6*GiB {
		t.Errorf("peak %d jobs and %d MiB reserved; limits 3 and 6144 MiB", peak, peakMem/MiB)
	}
	if st := p.Status()[0]; st.Running != 0 || p.Waiting() != 0 {
		t.Errorf("after all jobs: %+v, %d waiting", st, p.Waiting())
	}
}

func TestClassify(t *testing.T) {
	for code, want := range map[int]Severity{
		2: JobFailed, 1: JobFailed, 46: JobFailed, 400: JobFailed, 720: JobFailed,
		709: ContextLost, 710: ContextLost, 201: ContextLost,
		700: DeviceLost, 702: DeviceLost, 714: DeviceLost, 715: DeviceLost, 716: DeviceLost, 717: DeviceLost,
		718: DeviceLost, 719: DeviceLost, 214: DeviceLost, 999: DeviceLost, 4: DeviceLost,
	} {
		if got := Classify(code); got != want {
			t.Errorf("Classify(%d) = %v, want %v", code, got, want)
		}
	}
	err := fmt.Errorf("job: %w", errors.Join(&cudaErr{2}, fmt.Errorf("sync: %w", &cudaErr{710}), &cudaErr{719}))
	if got := classify(err); got != DeviceLost {
		t.Errorf("Worst = %v, want device lost", got)
	}
	if got := classify(errors.New("plain")); got != JobFailed {
		t.Errorf("Worst(plain) = %v", got)
	}
}
