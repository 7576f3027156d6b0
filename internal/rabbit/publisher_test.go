package rabbit_test

// Against the real RabbitMQ that make test starts (GPUJOBS_E2E=1; skipped otherwise), each test
// on a queue of its own.

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/rabbit"
	"github.com/gpujobs/gpujobs/internal/testutil"
)

func testConfig(t testing.TB) config.RabbitMQ {
	rc := config.RabbitMQ{URL: testutil.SharedBroker(t), Queue: "rabbit_test_" + testutil.RandomHex(4), QueueType: "classic"}
	t.Cleanup(func() { testutil.DeleteQueues(rc.URL, rc.Queue) })
	return rc
}

// publishAll publishes n messages from n goroutines and returns their errors by message ID.
func publishAll(p *rabbit.Publisher, prefix string, n int) map[string]error {
	var mu sync.Mutex
	errs := map[string]error{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("%s-%04d", prefix, i)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := p.Publish(ctx, id, []byte(`{"job_id":"`+id+`"}`))
			mu.Lock()
			errs[id] = err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return errs
}

// Publishes from many goroutines at once are each confirmed, and each message is in the queue
// once.
func TestConcurrentPublishesAreEachConfirmedOnce(t *testing.T) {
	rc := testConfig(t)
	p := rabbit.NewPublisher(rc, "rabbit-test", zap.NewNop())
	defer p.Close()
	const n = 600 // more than the publisher lets wait for a confirm at once
	for id, err := range publishAll(p, "job", n) {
		if err != nil {
			t.Errorf("%s: %v", id, err)
		}
	}
	seen := map[string]int{}
	for _, d := range testutil.Drain(t, rc.URL, rc.Queue) {
		seen[d.MessageId]++
		if d.DeliveryMode != amqp.Persistent {
			t.Errorf("%s: delivery mode %d, want persistent", d.MessageId, d.DeliveryMode)
		}
	}
	twice := 0
	for _, c := range seen {
		if c > 1 {
			twice++
		}
	}
	if len(seen) != n || twice != 0 {
		t.Errorf("the queue holds %d distinct messages (%d more than once), want %d once each", len(seen), twice, n)
	}
}

// A message no queue takes is an error for its own publisher, with many in flight at once: a
// result is never "published" into nowhere.
func TestUnroutedPublishesFailEachTheirOwn(t *testing.T) {
	rc := testConfig(t)
	p := rabbit.NewPublisher(rc, "rabbit-test", zap.NewNop())
	defer p.Close()
	if err := p.Publish(context.Background(), "first", []byte(`{}`)); err != nil {
		t.Fatal(err) // connected, the queue declared
	}
	testutil.DeleteQueues(rc.URL, rc.Queue) // now nothing routes to it
	for id, err := range publishAll(p, "lost", 40) {
		if !errors.Is(err, rabbit.ErrNotRouted) {
			t.Errorf("%s: %v, want ErrNotRouted", id, err)
		}
	}
}

// BenchmarkPublish: persistent, confirmed publishes one at a time (the baseline) and from 64
// goroutines at once, as a burst of finishing jobs publishes them; compare the msgs/s.
func BenchmarkPublish(b *testing.B) {
	for _, parallel := range []int{1, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", parallel), func(b *testing.B) {
			rc := testConfig(b)
			p := rabbit.NewPublisher(rc, "rabbit-bench", zap.NewNop())
			defer p.Close()
			b.ResetTimer()
			var wg sync.WaitGroup
			next := make(chan int)
			for range parallel {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range next {
						if err := p.Publish(context.Background(), fmt.Sprintf("m-%d", i), []byte(`{"job_id":"x"}`)); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			for i := range b.N {
				next <- i
			}
			close(next)
			wg.Wait()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
