// Package testutil holds the helpers that the end-to-end and monitor tests share: fresh names,
// free ports, polling with a deadline, and cleaning up the queues a test declared. Tests only.
package testutil

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/gpujobs/gpujobs/internal/rabbit"
)

// RandomHex returns 2n random hex digits, for queue names and the like.
func RandomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // never fails on Linux
	return hex.EncodeToString(b)
}

// FreeAddr returns a 127.0.0.1 address with a port nothing listens on right now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WaitFor polls cond until it holds, failing the test once timeout has passed.
func WaitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TailLines returns the last n lines of s, for quoting a log in a failure.
func TailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// DeleteQueues removes a result queue with its dead-letter queue and exchange, best effort.
func DeleteQueues(url, queue string) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	ch.QueueDelete(queue, false, false, false)                         //nolint:errcheck
	ch.QueueDelete(rabbit.DeadLetterQueue(queue), false, false, false) //nolint:errcheck
	ch.ExchangeDelete(rabbit.DeadLetterExchange(queue), false, false)  //nolint:errcheck
}
