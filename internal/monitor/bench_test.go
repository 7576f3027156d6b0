package monitor

import (
	"path/filepath"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gpujobs/gpujobs/internal/config"
)

// BenchmarkIngest measures how many results per second the monitor ingests (consume, fsync in
// batches, count, ack) from a pre-filled queue, against a bare amqp091-go consumer that acks
// each message, with the same prefetch, on the same broker, in the same run. Both queues are
// filled before either is drained. GPUJOBS_BENCH_RESULTS changes the count (default 50,000);
// make bench runs it.
func BenchmarkIngest(b *testing.B) {
	url := brokerURL(b)
	n := config.EnvInt("GPUJOBS_BENCH_RESULTS", 50_000)
	prefetch := DefaultPrefetch
	bodies := make([][]byte, n)
	for i, r := range fixtureResults(n, 200, t0) {
		bodies[i] = mustJSON(r)
	}
	var bare, mon float64
	for range b.N {
		bq, mq := testQueue(b, url), testQueue(b, url)
		start := time.Now()
		if err := publishAll(bq, bodies); err != nil {
			b.Fatal(err)
		}
		if err := publishAll(mq, bodies); err != nil {
			b.Fatal(err)
		}
		b.Logf("pre-filled 2 queues with %d results each in %s", n, time.Since(start).Round(time.Millisecond))

		bare = float64(n) / bareConsume(b, bq, prefetch, n).Seconds()
		mon = float64(n) / monitorIngest(b, mq, prefetch, n).Seconds()
	}
	b.ReportMetric(mon, "results/s")
	b.ReportMetric(bare, "bare_results/s")
	b.ReportMetric(mon/bare, "ratio")
	b.ReportMetric(float64(prefetch), "prefetch")
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

// monitorIngest runs the monitor's consumer on a fresh store until n results are acked.
func monitorIngest(b *testing.B, rc config.RabbitMQ, prefetch, n int) time.Duration {
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
	return d
}
