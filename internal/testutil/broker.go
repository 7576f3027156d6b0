package testutil

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Broker is a RabbitMQ node of the test's own, on free ports, so that stopping it (a broker
// outage) disturbs nobody else. Its data survives Stop and Start, as a real broker's does.
type Broker struct {
	Node string
	URL  string
	dir  string
	env  []string
}

// StartBroker starts a private RabbitMQ node for the test, which the test's cleanup stops. It
// needs root (the server scripts switch to the rabbitmq user) and Debian's rabbitmq-server.
func StartBroker(t testing.TB) *Broker {
	t.Helper()
	if _, err := exec.LookPath("rabbitmq-server"); err != nil {
		t.Fatal("rabbitmq-server is not installed: make deps installs it")
	}
	if os.Getuid() != 0 {
		t.Skip("starting a private RabbitMQ node needs root")
	}
	dir, err := os.MkdirTemp("", "gpujobs-rabbit-")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o777) //nolint:errcheck // the node runs as the rabbitmq user
	_, amqpPort, _ := net.SplitHostPort(FreeAddr(t))
	_, distPort, _ := net.SplitHostPort(FreeAddr(t))
	b := &Broker{Node: "gpujobs-test-" + RandomHex(3), URL: "amqp://guest:guest@127.0.0.1:" + amqpPort + "/", dir: dir}
	b.env = append(os.Environ(),
		"RABBITMQ_NODENAME="+b.Node, "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1", "RABBITMQ_NODE_PORT="+amqpPort,
		"RABBITMQ_DIST_PORT="+distPort, "RABBITMQ_MNESIA_BASE="+dir+"/mnesia", "RABBITMQ_LOG_BASE="+dir+"/log",
		"RABBITMQ_PID_FILE="+dir+"/pid", "RABBITMQ_ENABLED_PLUGINS_FILE="+dir+"/enabled_plugins")
	t.Cleanup(func() {
		if err := b.Ctl("stop"); err != nil {
			// The node must not outlive the test: end it by its own pid.
			if pid, err := os.ReadFile(dir + "/pid"); err == nil {
				if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil {
					if p, err := os.FindProcess(n); err == nil {
						p.Kill() //nolint:errcheck
					}
				}
			}
		}
		os.RemoveAll(dir)
	})
	b.Start(t)
	return b
}

// Start starts the node (again) and waits until it accepts connections.
func (b *Broker) Start(t testing.TB) {
	t.Helper()
	cmd := exec.Command("rabbitmq-server", "-detached")
	cmd.Env = b.env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("start the private RabbitMQ node: %v\n%s", err, out)
	}
	WaitFor(t, "the private RabbitMQ node to accept connections", 3*time.Minute, func() bool {
		conn, err := amqp.Dial(b.URL)
		if err == nil {
			conn.Close()
		}
		return err == nil
	})
}

// Stop stops the whole node, as an outage does: connections drop and nothing listens any more.
func (b *Broker) Stop(t testing.TB) {
	t.Helper()
	if err := b.Ctl("stop"); err != nil {
		t.Fatal(err)
	}
	WaitFor(t, "the private RabbitMQ node to stop listening", time.Minute, func() bool {
		conn, err := amqp.Dial(b.URL)
		if err == nil {
			conn.Close()
		}
		return err != nil
	})
}

// Ctl runs rabbitmqctl against the node.
func (b *Broker) Ctl(args ...string) error {
	cmd := exec.Command("rabbitmqctl", append([]string{"-n", b.Node}, args...)...)
	cmd.Env = b.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbitmqctl %v: %v\n%s", args, err, out)
	}
	return nil
}

// SharedBroker returns the URL of the RabbitMQ that make test starts (RABBITMQ_URL, else the
// local default), or skips the test when GPUJOBS_E2E is not 1, so `go test ./...` works on a
// bare machine. With GPUJOBS_E2E=1 a broker that does not answer fails the test.
func SharedBroker(t testing.TB) string {
	t.Helper()
	if os.Getenv("GPUJOBS_E2E") != "1" {
		t.Skip("needs RabbitMQ: set GPUJOBS_E2E=1 (make test does, after starting it)")
	}
	url := os.Getenv("RABBITMQ_URL")
	if url == "" {
		url = "amqp://guest:guest@127.0.0.1:5672/"
	}
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatalf("GPUJOBS_E2E=1 but RabbitMQ is not reachable: %v", err)
	}
	conn.Close()
	return url
}

// Channel opens a channel on the broker at url; its connection closes when the test ends.
func Channel(t testing.TB, url string) *amqp.Channel {
	t.Helper()
	conn, err := amqp.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// Drain gets (and acknowledges) every message of a queue.
func Drain(t testing.TB, url, queue string) []amqp.Delivery {
	t.Helper()
	ch := Channel(t, url)
	var out []amqp.Delivery
	for {
		d, ok, err := ch.Get(queue, true)
		if err != nil {
			t.Fatalf("get from %s: %v", queue, err)
		}
		if !ok {
			return out
		}
		out = append(out, d)
	}
}
