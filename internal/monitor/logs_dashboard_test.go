package monitor

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/html"

	"github.com/gpujobs/gpujobs/internal/joblogs"
	"github.com/gpujobs/gpujobs/jobs"
)

const logJob = "job-0000000l0g01"

// logMessage builds a message of lines first..first+len(texts)-1 of an attempt.
func logMessage(job string, attempt int, first int64, stream string, texts ...string) joblogs.Message {
	m := joblogs.Message{JobID: job, Attempt: attempt}
	for i, t := range texts {
		m.Lines = append(m.Lines, joblogs.Line{JobID: job, Attempt: attempt, Seq: first + int64(i), Stream: stream,
			Time: time.Now().UTC().Add(-time.Minute), Text: t})
	}
	return m
}

func endOf(job string, attempt int, endSeq int64) joblogs.Message {
	return joblogs.Message{JobID: job, Attempt: attempt, End: &joblogs.End{JobID: job, Attempt: attempt, EndSeq: endSeq, Time: time.Now().UTC()}}
}

// logDashboard serves a monitor with one result and its job's log: attempt 1 (which died), then
// attempt 2's first lines. The first request of the log stream appends attempt 2's last lines
// and its end, as the consumer would while the job runs, so the page must follow the stream to
// show them. With token set, the API needs it.
func logDashboard(t *testing.T, token string) (*httptest.Server, *LogStore) {
	t.Helper()
	store, _, err := OpenLogStore(t.TempDir(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	first := []joblogs.Message{
		logMessage(logJob, 1, 1, joblogs.StreamStdout, "epoch 1 loss=2.31", "epoch 2 loss=1.87"),
		logMessage(logJob, 1, 3, joblogs.StreamStderr, "Killed"),
		logMessage(logJob, 2, 1, joblogs.StreamGpujobs, "restored from checkpoint: epoch 2"),
		logMessage(logJob, 2, 2, joblogs.StreamStdout, `<img src=x onerror="document.body.dataset.pwned=1"> & "quotes"`),
	}
	if _, err := store.Append(first); err != nil {
		t.Fatal(err)
	}
	agg := NewAggregator(nil)
	end := time.Now().Add(-time.Second).UTC()
	agg.Add(jobs.Result{JobID: logJob, JobType: "command", Status: jobs.StatusCompleted, WorkerType: jobs.WorkerTypeCPU,
		WorkerID: "cpu-1", ProcessingTime: 2.5, StartTime: end.Add(-3 * time.Second), EndTime: end})
	srv := NewServer(agg, nil, func() bool { return true }, "x", zap.NewNop())
	srv.SetLogs(store, func() bool { return true })
	srv.MaxStreamAge = 300 * time.Millisecond
	h := srv.Handler()
	if token != "" {
		h = RequireToken(h, token)
	}
	var once sync.Once
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/click-test.html" {
			w.Header().Set("Content-Type", "text/html")
			fmt.Fprint(w, clickTestPage)
			return
		}
		if strings.HasSuffix(r.URL.Path, "/logs/stream") && r.Header.Get("Authorization") == bearerOf(token) {
			// After the stream's first flush (the stored lines sent), the job prints more.
			w = flushHook{w, func() {
				once.Do(func() {
					if _, err := store.Append([]joblogs.Message{logMessage(logJob, 2, 3, joblogs.StreamStdout, "epoch 3 loss=1.12", "done"), endOf(logJob, 2, 4)}); err != nil {
						t.Error(err)
					}
				})
			}}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(ts.Close)
	return ts, store
}

// flushHook runs fn after each Flush of the response.
type flushHook struct {
	http.ResponseWriter
	fn func()
}

func (f flushHook) Flush() {
	f.ResponseWriter.(http.Flusher).Flush()
	f.fn()
}

func bearerOf(token string) string {
	if token == "" {
		return ""
	}
	return "Bearer " + token
}

// clickTestPage loads the dashboard in a frame, clicks the first job of the latest results as a
// user would, waits for the log view to show the whole log (the lines added while it streams
// included) and copies the view into this page, which chromium's --dump-dom prints.
const clickTestPage = `<!doctype html><html><body data-done="0">
<iframe id="f" width="1200" height="900"></iframe>
<script>
const f = document.getElementById("f");
f.src = new URLSearchParams(location.search).get("src") || "/";
function poll(cond, then) { const t = setInterval(() => { try { if (cond()) { clearInterval(t); then(); } } catch (e) {} }, 50); }
f.addEventListener("load", () => {
  const d = f.contentDocument;
  poll(() => d.querySelector("#latest tr[data-job-id]"), () => {
    d.querySelector("#latest tr[data-job-id] td").click();
    poll(() => d.getElementById("log-view").dataset.ended === "2", () => {
      const out = document.createElement("div");
      out.id = "copied";
      out.dataset.hash = f.contentWindow.location.hash;
      out.dataset.href = f.contentWindow.location.href;
      out.dataset.loaded = d.body.dataset.loaded;
      out.dataset.pwned = d.body.dataset.pwned || "";
      out.innerHTML = d.getElementById("log-view").outerHTML;
      document.body.appendChild(out);
      document.body.dataset.done = "1";
    });
  });
});
</script></body></html>`

type shownLine struct{ attempt, seq, stream, text string }

func shownLines(t *testing.T, doc *html.Node) []shownLine {
	t.Helper()
	var out []shownLine
	for _, n := range findAll(doc, func(n *html.Node) bool { return hasClass(n, "log-line") }) {
		out = append(out, shownLine{attr(n, "data-attempt"), attr(n, "data-seq"), attr(n, "data-stream"), text(n)})
	}
	return out
}

var wantShown = []shownLine{
	{"1", "1", "stdout", "epoch 1 loss=2.31"}, {"1", "2", "stdout", "epoch 2 loss=1.87"}, {"1", "3", "stderr", "Killed"},
	{"2", "1", "gpujobs", "restored from checkpoint: epoch 2"},
	{"2", "2", "stdout", `<img src=x onerror="document.body.dataset.pwned=1"> & "quotes"`},
	{"2", "3", "stdout", "epoch 3 loss=1.12"}, {"2", "4", "stdout", "done"},
}

func checkShown(t *testing.T, doc *html.Node) {
	t.Helper()
	got := shownLines(t, doc)
	if fmt.Sprint(got) != fmt.Sprint(wantShown) {
		t.Errorf("log view shows\n%v\nwant\n%v", got, wantShown)
	}
	if seps := findAll(doc, func(n *html.Node) bool { return hasClass(n, "log-attempt") }); len(seps) != 1 || attr(seps[0], "data-attempt") != "2" {
		t.Errorf("%d attempt separators, want one before attempt 2", len(seps))
	}
	if img := find(doc, func(n *html.Node) bool { return n.Data == "img" }); img != nil {
		t.Error("a line's text became HTML")
	}
}

// Clicking a job in the latest results shows its log, and the view follows lines added later.
func TestDashboardLogViewFollowsAJobsLog(t *testing.T) {
	bin := chromiumPath(t)
	ts, _ := logDashboard(t, "")
	doc, err := html.Parse(bytes.NewReader(headless(t, bin, ts.URL+"/click-test.html", "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	body := find(doc, func(n *html.Node) bool { return n.Data == "body" })
	if attr(body, "data-done") != "1" {
		t.Fatal("the log view never showed the whole log after the click")
	}
	copied := byID(doc, "copied")
	if h := attr(copied, "data-hash"); h != "#log="+logJob {
		t.Errorf("after the click the page's hash is %q", h)
	}
	if attr(copied, "data-pwned") != "" {
		t.Error("a line's text ran as script")
	}
	view := byID(copied, "log-view")
	if attr(view, "data-job") != logJob || attr(view, "data-lines") != "7" || text(byID(view, "log-job")) != logJob {
		t.Errorf("log view of %q with %q lines", attr(view, "data-job"), attr(view, "data-lines"))
	}
	checkShown(t, copied)
}

// With a token, the page takes it from ?token=, keeps it out of the address bar and sends it;
// without one it asks for it and shows no data.
func TestDashboardWithATokenAsksForItAndUsesIt(t *testing.T) {
	bin := chromiumPath(t)
	const token = "dashboard-test-token-0123456789"
	ts, _ := logDashboard(t, token)

	doc, err := html.Parse(bytes.NewReader(headless(t, bin, ts.URL+"/", "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	body := find(doc, func(n *html.Node) bool { return n.Data == "body" })
	login := byID(doc, "login")
	if attr(body, "data-auth") != "required" || login == nil || hasAttr(login, "hidden") || attr(body, "data-loaded") != "0" {
		t.Errorf("without a token: data-auth=%q, login shown=%v, data-loaded=%q", attr(body, "data-auth"), login != nil && !hasAttr(login, "hidden"), attr(body, "data-loaded"))
	}
	if rows := findAll(doc, func(n *html.Node) bool { return n.Data == "tr" && attr(n, "data-job-id") != "" }); len(rows) != 0 {
		t.Errorf("without a token the page shows %d results", len(rows))
	}

	src := url.QueryEscape("/?token=" + token + "#log=" + logJob)
	doc, err = html.Parse(bytes.NewReader(headless(t, bin, ts.URL+"/click-test.html?src="+src, "--dump-dom")))
	if err != nil {
		t.Fatal(err)
	}
	copied := byID(doc, "copied")
	if copied == nil {
		t.Fatal("with ?token= the log view never showed the whole log")
	}
	if href := attr(copied, "data-href"); strings.Contains(href, token) || !strings.HasSuffix(href, "/#log="+logJob) {
		t.Errorf("address after loading with ?token=: %s (want the token gone, the hash kept)", href)
	}
	if attr(copied, "data-loaded") != "1" {
		t.Errorf("with ?token= the results did not load")
	}
	checkShown(t, copied)
}

func hasAttr(n *html.Node, key string) bool {
	if n == nil {
		return false
	}
	for _, a := range n.Attr {
		if a.Key == key {
			return true
		}
	}
	return false
}
