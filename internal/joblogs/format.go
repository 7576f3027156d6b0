// Package joblogs carries the lines that jobs print from the workers to the monitor: a worker
// writes them through a Writer (one per job attempt), which batches them into persistent
// messages on the durable log queue (publisher confirms, bounded memory, bounded size per
// attempt), and `monitor serve` consumes that queue and keeps each job's log on disk.
//
// The package defines the wire format both sides share (Message, EncodeMessage, DecodeMessage)
// and validates it, so that no message can make the monitor store an unbounded, mislabelled or
// malformed log. It runs no job and reads no process output itself: the command runner hands it
// lines. It must never block a job for long, whatever the broker does.
package joblogs

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gpujobs/gpujobs/jobs"
)

// Line is one line a job printed (or a notice of gpujobs's own).
type Line struct {
	JobID   string    `json:"job_id"`
	Attempt int       `json:"attempt"`
	Seq     int64     `json:"seq"`    // 1, 2, ... per (job, attempt)
	Stream  string    `json:"stream"` // stdout, stderr or gpujobs (notices: cut, restored from checkpoint, ...)
	Time    time.Time `json:"time"`
	Text    string    `json:"text"` // without the newline; a very long line is split
}

// End marks the end of an attempt's log: its Writer was closed after writing EndSeq lines (the
// last line's seq; 0 when it wrote none). A reader that has seen lines up to EndSeq and this
// record has the attempt's whole log.
type End struct {
	JobID   string    `json:"job_id"`
	Attempt int       `json:"attempt"`
	EndSeq  int64     `json:"end_seq"`
	Time    time.Time `json:"time"`
}

// The streams a line may come from.
const (
	StreamStdout  = "stdout"
	StreamStderr  = "stderr"
	StreamGpujobs = "gpujobs" // gpujobs's own notices in the job's log
)

// Streams lists the valid streams.
var Streams = []string{StreamStdout, StreamStderr, StreamGpujobs}

// DefaultQueue is the log queue's name; tests and deployments sharing a broker use others
// (flag --log-queue, env LOG_QUEUE).
const DefaultQueue = "log_queue"

// Bounds of the wire format, which the monitor enforces on every message.
const (
	// MaxLineBytesLimit is the longest text one line may have: Limits.MaxLineBytes is capped to it.
	MaxLineBytesLimit = 64 << 10
	// MaxMessageBytes bounds one message's body.
	MaxMessageBytes = 4 << 20
	// MaxMessageRecords bounds the records (lines, and an end) of one message.
	MaxMessageRecords = 4096
	// MaxAttempt and MaxSeq bound an attempt number and a line's sequence number.
	MaxAttempt = 1 << 20
	MaxSeq     = 1 << 40
	// MaxClockSkew is how far ahead of the monitor's clock a line's time may be.
	MaxClockSkew = 5 * time.Minute
)

// Epoch is the earliest time a line may carry: older ones are a broken clock or a forgery.
var Epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// ErrInvalid marks a message that is not a valid log message.
var ErrInvalid = errors.New("invalid log message")

// Message is what one AMQP message on the log queue carries: consecutive lines of one job
// attempt and, on the attempt's last message, its End. The body is JSON lines: one Line object
// per line, then the End object.
type Message struct {
	JobID   string
	Attempt int
	Lines   []Line
	End     *End
}

// ID is the message's AMQP message_id: job/attempt/first-seq (or job/attempt/end-N for a last
// message without lines), so a redelivery or a re-publish is recognisable.
func (m Message) ID() string {
	if len(m.Lines) > 0 {
		return fmt.Sprintf("%s/%d/%d", m.JobID, m.Attempt, m.Lines[0].Seq)
	}
	end := int64(0)
	if m.End != nil {
		end = m.End.EndSeq
	}
	return fmt.Sprintf("%s/%d/end-%d", m.JobID, m.Attempt, end)
}

// EncodeMessage writes the message's body.
func EncodeMessage(m Message) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	for _, l := range m.Lines {
		enc.Encode(l) //nolint:errcheck // strings, ints and a time: cannot fail
	}
	if m.End != nil {
		enc.Encode(m.End) //nolint:errcheck
	}
	return b.Bytes()
}

// record is a line or an end as decoded, before it is checked; pointers tell absent fields.
type record struct {
	JobID   *string   `json:"job_id"`
	Attempt *int      `json:"attempt"`
	Seq     *int64    `json:"seq"`
	Stream  *string   `json:"stream"`
	Time    time.Time `json:"time"`
	Text    *string   `json:"text"`
	EndSeq  *int64    `json:"end_seq"`
}

// DecodeMessage reads and validates a message body against the clock now. Every record must
// name the same job (a valid job ID) and attempt (1..MaxAttempt); lines have consecutive seqs
// (1..MaxSeq), a stream of Streams, a time from Epoch to now+MaxClockSkew and a text of at most
// MaxLineBytesLimit bytes without a newline; an End comes last, after lines up to its EndSeq.
// Fields this version does not know are ignored. An error wraps ErrInvalid and names the record
// and the rule.
func DecodeMessage(body []byte, now time.Time) (Message, error) {
	var m Message
	if len(body) > MaxMessageBytes {
		return m, fmt.Errorf("%w: %d bytes, more than the %d a message may have", ErrInvalid, len(body), MaxMessageBytes)
	}
	n := 0
	for len(body) > 0 {
		var raw []byte
		raw, body, _ = bytes.Cut(body, []byte("\n"))
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		n++
		if n > MaxMessageRecords {
			return Message{}, fmt.Errorf("%w: more than %d records", ErrInvalid, MaxMessageRecords)
		}
		if m.End != nil {
			return Message{}, fmt.Errorf("%w: record %d follows the end record", ErrInvalid, n)
		}
		if err := m.add(raw, now); err != nil {
			return Message{}, fmt.Errorf("%w: record %d: %w", ErrInvalid, n, err)
		}
	}
	if n == 0 {
		return Message{}, fmt.Errorf("%w: no records", ErrInvalid)
	}
	return m, nil
}

func (m *Message) add(raw []byte, now time.Time) error {
	var r record
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("not a JSON object: %v", err)
	}
	if r.JobID == nil || r.Attempt == nil {
		return errors.New("job_id and attempt are required")
	}
	if err := jobs.ValidateJobID(*r.JobID); err != nil {
		return err
	}
	if *r.Attempt < 1 || *r.Attempt > MaxAttempt {
		return fmt.Errorf("attempt %d: allowed 1..%d", *r.Attempt, MaxAttempt)
	}
	if m.JobID == "" {
		m.JobID, m.Attempt = *r.JobID, *r.Attempt
	} else if *r.JobID != m.JobID || *r.Attempt != m.Attempt {
		return fmt.Errorf("job %q attempt %d in a message of job %q attempt %d: one message carries one attempt", *r.JobID, *r.Attempt, m.JobID, m.Attempt)
	}
	if err := checkTime(r.Time, now); err != nil {
		return err
	}
	if r.EndSeq != nil {
		if r.Seq != nil || r.Stream != nil || r.Text != nil {
			return errors.New("an end record has end_seq, and no seq, stream or text")
		}
		last := int64(0)
		if k := len(m.Lines); k > 0 {
			last = m.Lines[k-1].Seq
		}
		if *r.EndSeq < last || *r.EndSeq > MaxSeq {
			return fmt.Errorf("end_seq %d: allowed %d..%d (from the message's last line)", *r.EndSeq, last, int64(MaxSeq))
		}
		m.End = &End{JobID: m.JobID, Attempt: m.Attempt, EndSeq: *r.EndSeq, Time: r.Time}
		return nil
	}
	if r.Seq == nil || r.Stream == nil || r.Text == nil {
		return errors.New("a line has seq, stream and text (or it is an end record, with end_seq)")
	}
	l := Line{JobID: m.JobID, Attempt: m.Attempt, Seq: *r.Seq, Stream: *r.Stream, Time: r.Time, Text: *r.Text}
	if err := CheckLine(l); err != nil {
		return err
	}
	if k := len(m.Lines); k > 0 && l.Seq != m.Lines[k-1].Seq+1 {
		return fmt.Errorf("seq %d after seq %d: a message's lines are consecutive", l.Seq, m.Lines[k-1].Seq)
	}
	m.Lines = append(m.Lines, l)
	return nil
}

// CheckLine checks a line's own fields (not its job ID or time): seq, stream and text.
func CheckLine(l Line) error {
	if l.Seq < 1 || l.Seq > MaxSeq {
		return fmt.Errorf("seq %d: allowed 1..%d", l.Seq, int64(MaxSeq))
	}
	if !validStream(l.Stream) {
		return fmt.Errorf("stream %q: want %s", truncate(l.Stream, 40), strings.Join(Streams, ", "))
	}
	if len(l.Text) > MaxLineBytesLimit {
		return fmt.Errorf("text of %d bytes: allowed 0..%d (a longer line is split)", len(l.Text), MaxLineBytesLimit)
	}
	if strings.IndexByte(l.Text, '\n') >= 0 {
		return errors.New("text contains a newline: one line per record")
	}
	if !utf8.ValidString(l.Text) {
		return errors.New("text is not UTF-8")
	}
	return nil
}

func checkTime(t, now time.Time) error {
	if t.Before(Epoch) || t.After(now.Add(MaxClockSkew)) {
		return fmt.Errorf("time %s: want %s to %s ahead of the monitor's clock", t.Format(time.RFC3339), Epoch.Format("2006-01-02"), MaxClockSkew)
	}
	return nil
}

func validStream(s string) bool {
	return s == StreamStdout || s == StreamStderr || s == StreamGpujobs
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
