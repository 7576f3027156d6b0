package workers

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Only a scheduler worker serves queue predictions; another worker says where they are.
func TestQueueEndpointOnlyOnASchedulerWorker(t *testing.T) {
	ts := httptest.NewServer(newHealth().handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/queue")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "a scheduler worker serves them") {
		t.Errorf("/api/queue on a worker that is not a scheduler: %d %s", resp.StatusCode, b)
	}
}
