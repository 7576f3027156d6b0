// Package monitorclient is the HTTP client of the monitor's API that `monitor tail` and the
// starter share: the bearer token, errors that say what came back, and server-sent events. It
// holds no state of the monitor and links nothing of it.
package monitorclient

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client reaches one monitor.
type Client struct {
	API   string // base URL, e.g. http://127.0.0.1:8000
	Token string // bearer token; empty for a monitor without authentication
	HTTP  *http.Client
}

// New returns a client of the monitor at api.
func New(api, token string) Client {
	return Client{API: strings.TrimRight(api, "/"), Token: token, HTTP: http.DefaultClient}
}

// ErrUnauthorized means the monitor wants a token, or another one.
var ErrUnauthorized = errors.New("unauthorized")

// Get sends GET API+path with the token; a status other than 200 is an error with the body's
// first line (its "error" when it is JSON).
func (c Client) Get(ctx context.Context, path string, header http.Header) (*http.Response, error) {
	u := c.API + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the monitor (is monitor serve running?): %w", err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	msg, reason := OneLine(b), OneLine(b)
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		reason = e.Error
	}
	if resp.StatusCode == http.StatusUnauthorized {
		hint := "set --token or MONITOR_TOKEN (or MONITOR_TOKEN_FILE)"
		if c.Token != "" {
			hint = "the token given is not the monitor's"
		}
		return nil, fmt.Errorf("GET %s: %w (%s): %s", u, ErrUnauthorized, hint, reason)
	}
	return nil, &StatusError{URL: u, Status: resp.Status, Code: resp.StatusCode, Message: msg, Reason: reason}
}

// StatusError is an answer other than 200 (and 401).
type StatusError struct {
	URL, Status string
	Code        int
	Message     string // the body, on one line
	Reason      string // its "error" field when it is JSON, else Message
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("GET %s: %s: %s", e.URL, e.Status, e.Message)
}

// GetJSON decodes the answer to GET API+path into v.
func (c Client) GetJSON(ctx context.Context, path string, v any) error {
	resp, err := c.Get(ctx, path, nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Keep the start of the body, to say what came back when it is not the JSON expected.
	head := &prefixWriter{max: 200}
	if err := json.NewDecoder(io.TeeReader(resp.Body, head)).Decode(v); err != nil {
		got := "an empty body"
		if len(head.b) > 0 {
			got = fmt.Sprintf("%q", OneLine(head.b))
		}
		return fmt.Errorf("GET %s%s: %s, but the body is not the JSON expected (%v): got %s", c.API, path, resp.Status, err, got)
	}
	return nil
}

// prefixWriter keeps the first max bytes written to it.
type prefixWriter struct {
	b   []byte
	max int
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	if n := p.max - len(p.b); n > 0 {
		p.b = append(p.b, b[:min(n, len(b))]...)
	}
	return len(b), nil
}

// OneLine joins a body's lines, for a one-line error.
func OneLine(b []byte) string { return strings.Join(strings.Fields(string(b)), " ") }

// Event is one server-sent event.
type Event struct {
	ID, Name string
	Data     []byte
}

// Stream reads one SSE connection to API+path, calling fn for each event, until the server ends
// it, ctx ends or the connection breaks. lastEventID (if any) is sent as Last-Event-ID, so the
// server resumes after it. connected says whether the server answered 200.
func (c Client) Stream(ctx context.Context, path, lastEventID string, fn func(Event)) (connected bool, err error) {
	h := http.Header{"Accept": {"text/event-stream"}}
	if lastEventID != "" {
		h.Set("Last-Event-ID", lastEventID)
	}
	resp, err := c.Get(ctx, path, h)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var ev Event
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if ev.Name != "" || len(ev.Data) > 0 {
				fn(ev)
			}
			ev = Event{}
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Name = value
			case "data":
				if len(ev.Data) > 0 {
					ev.Data = append(ev.Data, '\n')
				}
				ev.Data = append(ev.Data, value...)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return true, err
	}
	return true, errors.New("stream closed")
}
