package monitor

import (
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gpujobs/gpujobs/internal/config"
	"github.com/gpujobs/gpujobs/internal/testutil"
)

// BenchmarkIngest measures how many results per second the monitor ingests (consume, fsync in
// batches, count, ack) from a pre-filled queue, against a bare amqp091-go consumer that acks
// each message, with the same prefetch, on the same broker, in the same run. Four queues are
// filled before any is drained, then drained in the order bare, monitor, monitor, bare, so that
// a broker still settling its disk writes early in the run weighs on both sides alike.
// GPUJOBS_BENCH_RESULTS changes the count per queue (default 50,000); make bench runs it.
func BenchmarkIngest(b *testing.B) {
	url := testutil.SharedBroker(b)
	n := config.EnvInt("GPUJOBS_BENCH_RESULTS", 50_000)
	prefetch := DefaultPrefetch
	bodies := make([][]byte, n)
	for i, r := range fixtureResults(n, 200, t0) {
		bodies[i] = mustJSON(r)
	}
	var bare, mon, perFsync float64
	for range b.N {
		queues := make([]config.RabbitMQ, 4)
		start := time.Now()
		for i := range queues {
			queues[i] = testQueue(b, url)
			if err := publishAll(queues[i], bodies); err != nil {
				b.Fatal(err)
			}
		}
		b.Logf("pre-filled 4 queues with %d results each in %s", n, time.Since(start).Round(time.Millisecond))
		rate := func(d time.Duration) float64 { return float64(n) / d.Seconds() }
		b1 := rate(bareConsume(b, queues[0], prefetch, n))
		d1, batches1 := monitorIngest(b, queues[1], prefetch, n)
		d2, batches2 := monitorIngest(b, queues[2], prefetch, n)
		m1, m2 := rate(d1), rate(d2)
		perFsync = float64(2*n) / float64(batches1+batches2)
		b2 := rate(bareConsume(b, queues[3], prefetch, n))
		b.Logf("bare %.0f, monitor %.0f, monitor %.0f, bare %.0f results/s", b1, m1, m2, b2)
		bare, mon = (b1+b2)/2, (m1+m2)/2
	}
	b.ReportMetric(mon, "results/s")
	b.ReportMetric(bare, "bare_results/s")
	b.ReportMetric(mon/bare, "ratio")
	b.ReportMetric(float64(prefetch), "prefetch")
	b.ReportMetric(perFsync, "results/fsync")
}

// bareConsume drains n messages with a plain consumer, one ack per message.
func bareConsume(b *testing.B, rc config.RabbitMQ, prefetch, n int) time.Duration {
	start := time.Now()
	conn, err := amqp.Dial(rc.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		b.Fatal(err)
	}
	deliveries, err := ch.Consume(rc.Queue, "", false, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i++ {
		d, ok := <-deliveries
		if !ok {
			b.Fatal("bare consumer: channel closed")
		}
		if err := d.Ack(false); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// monitorIngest runs the monitor's consumer on a fresh store until n results are acked, and
// returns the time and the number of batches (one fsync each).
func monitorIngest(b *testing.B, rc config.RabbitMQ, prefetch, n int) (time.Duration, uint64) {
	start := time.Now()
	m := startInProcess(b, ConsumerOptions{RabbitMQ: rc, Prefetch: prefetch}, filepath.Join(b.TempDir(), "results.jsonl"))
	for m.consumer.Ingested() < int64(n) {
		time.Sleep(time.Millisecond)
	}
	d := time.Since(start)
	if m.agg.Len() != n {
		b.Fatalf("counted %d results, want %d", m.agg.Len(), n)
	}
	m.stop(b)
	families, err := m.agg.metrics.Registry.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "gpujobs_monitor_batch_size" {
			return d, f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	b.Fatal("no batch-size histogram")
	return d, 0
}
