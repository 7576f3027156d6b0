package monitor

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// hostileCase is a message that must never reach the aggregates: one of issue 9's hostile
// results (or a relative of one), with the field its rejection must name.
type hostileCase struct {
	name      string
	body      []byte
	malformed bool   // not a result at all (else a result that fails Validate)
	field     string // what the reason must mention
}

// validBody is a completed CPU result that ended an hour before now.
func validBody(id string, now time.Time) map[string]any {
	end := now.Add(-time.Hour).UTC()
	return map[string]any{
		"job_id": id, "job_type": "matrix_multiply", "params": map[string]any{"size": 64, "iterations": 1},
		"worker_id": "cpu-node-1", "worker_type": "cpu", "device": "AMD EPYC 9B14, 2 threads", "status": "completed",
		"processing_time": 0.01, "setup_time": 0.001, "queue_time": 0.02, "metrics": map[string]any{"gflops": 52.4},
		"submit_time": end.Add(-2 * time.Second).Format(time.RFC3339Nano), "start_time": end.Add(-time.Second).Format(time.RFC3339Nano),
		"end_time": end.Format(time.RFC3339Nano),
	}
}

// hostileCases returns the hostile messages, with job IDs job-<prefix><n>, relative to now.
func hostileCases(prefix string, now time.Time) []hostileCase {
	with := func(n int, change func(m map[string]any)) []byte {
		m := validBody(fmt.Sprintf("job-%s%04d", prefix, n), now)
		change(m)
		b, err := json.Marshal(m)
		if err != nil {
			panic(err)
		}
		return b
	}
	set := func(k string, v any) func(map[string]any) { return func(m map[string]any) { m[k] = v } }
	var out []hostileCase
	add := func(name, field string, change func(map[string]any)) {
		out = append(out, hostileCase{name: name, field: field, body: with(len(out), change)})
	}
	// The four.
	add("processing_time 1e308", "processing_time", set("processing_time", 1e308))
	add("gflops 1e308", "headline rate", set("metrics", map[string]any{"gflops": 1e308}))
	add("status bogus", "status", set("status", "bogus"))
	add("end_time in year 9999", "end_time", set("end_time", "9999-12-31T23:59:59Z"))
	// Relatives: what else would overflow, mislabel or stretch the aggregates.
	add("end_time 9999 in another zone", "end_time", set("end_time", "9999-12-31T23:30:00-01:00")) // year 10000 in UTC
	add("submit_time before 2020", "submit_time", set("submit_time", "2019-12-31T23:59:59Z"))
	add("end an hour before start", "end_time", set("end_time", now.Add(-3*time.Hour).UTC().Format(time.RFC3339)))
	add("start_time tomorrow", "start_time", set("start_time", now.Add(24*time.Hour).UTC().Format(time.RFC3339)))
	add("processing_time negative", "processing_time", set("processing_time", -1))
	add("processing_time denormal", "processing_time", set("processing_time", 5e-324)) // a speedup of +Inf
	add("queue_time over 30 days", "queue_time", set("queue_time", 3e6))
	add("estimated_time 1e300", "estimated_time", set("estimated_time", 1e300))
	add("gbps 1e10", "headline rate", set("metrics", map[string]any{"gbps": 1e10}))
	add("own rate 1e20", "headline rate", func(m map[string]any) {
		m["metrics"], m["rate_metric"], m["rate_unit"] = map[string]any{"points_per_sec": 1e20}, "points_per_sec", "points/s"
	})
	add("negative rate", "headline rate", set("metrics", map[string]any{"gflops": -5}))
	add("worker_type tpu", "worker_type", set("worker_type", "tpu"))
	add("error_type Bogus", "error_type", func(m map[string]any) { m["status"], m["error_type"], m["error"] = "failed", "Bogus", "x" })
	add("job_type not a kind name", "job_type", set("job_type", "Matrix Multiply"))
	add("completed without worker", "worker_type", func(m map[string]any) { delete(m, "worker_type") })
	add("terminal escape in device", "device", set("device", "\x1b[2J\x1b[31mpwned"))
	add("params not an object", "params", set("params", []int{1, 2}))
	add("priority 9", "priority", set("priority", 9))
	add("requested_device tpu", "requested_device", set("requested_device", "tpu"))
	// Not results at all.
	out = append(out,
		hostileCase{name: "not JSON", body: []byte("not json {"), malformed: true, field: "invalid character"},
		hostileCase{name: "no job_id", body: []byte(`{"job_type":"matrix_multiply","status":"completed"}`), malformed: true, field: "job_id"},
		hostileCase{name: "number beyond float64", malformed: true, field: "processing_time",
			body: []byte(strings.Replace(string(with(len(out), func(map[string]any) {})), `"processing_time":0.01`, `"processing_time":1e400`, 1))},
		hostileCase{name: "over 1 MiB", malformed: true, field: "bytes",
			body: with(len(out)+1, set("error", strings.Repeat("x", MaxResultBytes)))},
	)
	return out
}
