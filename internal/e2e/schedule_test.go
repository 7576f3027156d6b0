package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/internal/testutil"
	"github.com/gpujobs/gpujobs/jobs"
)

// describeSchedule runs `starter schedule describe NAME --json`.
func (e *environment) describeSchedule(t *testing.T, name string) jobclient.Schedule {
	t.Helper()
	out, stderr, code := e.schedule(t, "describe", name, "--json")
	var s jobclient.Schedule
	if err := json.Unmarshal([]byte(out), &s); code != 0 || err != nil {
		t.Fatalf("schedule describe %s: exit %d %v\n%s%s", name, code, err, out, stderr)
	}
	return s
}

// schedule runs `starter schedule args...` against the test's server; the server's address goes
// before the args, since what follows a -- is the scheduled job's.
func (e *environment) schedule(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return e.starterRaw(t, append([]string{"schedule", "--temporal-address", e.address}, args...)...)
}

func (e *environment) scheduleCmd(t *testing.T, args ...string) string {
	t.Helper()
	out, stderr, code := e.schedule(t, args...)
	if code != 0 {
		t.Fatalf("starter schedule %v: exit %d\n%s%s", args, code, out, stderr)
	}
	return out
}

// Schedules through the starter: trigger starts a job now; a cron starts jobs on its own until
// pause stops it; every job a schedule started ran once and was published once.
func TestScheduleStartsJobsAndPauseStopsThem(t *testing.T) {
	e := env
	e.startWorker(t, "scheduler", "sched-t1")
	e.startWorker(t, "cpu", "cpu-t1")
	run := testutil.RandomHex(3)
	job := []string{"--", "vector_addition", "--size", "1000", "--iterations", "1", "--cpu", "--tenant", "cron"}

	// A schedule that would first run in 2099: only trigger starts it.
	once := "e2e-trigger-" + run
	out := e.scheduleCmd(t, append([]string{"create", once, "--cron", "0 0 1 1 * 2099", "--note", "triggered by hand"}, job...)...)
	if !strings.HasPrefix(out, "created schedule "+once+"  vector_addition  cpu") || !strings.Contains(out, "/schedules/"+once) {
		t.Errorf("create printed %q", out)
	}
	t.Cleanup(func() { e.schedule(t, "delete", once) })
	if s := e.describeSchedule(t, once); s.Runs != 0 || s.Cron != "0 0 1 1 * 2099" || s.Overlap != "skip" || s.Job == nil ||
		s.Job.JobType != "vector_addition" || s.Job.Device != "cpu" || s.Job.Tenant != "cron" || len(s.Next) == 0 || s.Next[0].Year() != 2099 {
		t.Fatalf("described %+v", s)
	}
	e.scheduleCmd(t, "trigger", once)
	var s jobclient.Schedule
	testutil.WaitFor(t, "the triggered run to start", 30*time.Second, func() bool {
		s = e.describeSchedule(t, once)
		return s.Runs == 1 && len(s.Recent) == 1
	})
	id := s.Recent[0].JobID
	if !strings.HasPrefix(id, once+"-") {
		t.Errorf("the run's job ID %q does not start with the schedule's name", id)
	}
	if pub := e.resultsOf(t, id, 30*time.Second); len(pub) != 1 || pub[0].Status != jobs.StatusCompleted || pub[0].Tenant != "cron" || pub[0].SubmitTime.IsZero() {
		t.Errorf("triggered job %s published %+v, want one completed result", id, pub)
	}

	// A schedule every 2 seconds (7 fields: seconds first).
	cron := "e2e-cron-" + run
	e.scheduleCmd(t, append([]string{"create", cron, "--cron", "*/2 * * * * * *"}, job...)...)
	t.Cleanup(func() { e.schedule(t, "delete", cron) })
	testutil.WaitFor(t, "the cron to start 2 jobs", 30*time.Second, func() bool {
		return e.describeSchedule(t, cron).Runs >= 2
	})
	listed := e.scheduleCmd(t, "list")
	for _, name := range []string{once, cron} {
		if !strings.Contains(listed, name) {
			t.Errorf("schedule list lacks %s:\n%s", name, listed)
		}
	}
	e.scheduleCmd(t, "pause", cron, "--note", "e2e pause")
	testutil.WaitFor(t, "the schedule to say paused", 10*time.Second, func() bool {
		s = e.describeSchedule(t, cron)
		return s.Paused && s.Note == "e2e pause"
	})
	atPause := s.Runs
	// Paused, it starts nothing for 3 of its periods.
	for deadline := time.Now().Add(6 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		if n := e.describeSchedule(t, cron).Runs; n != atPause {
			t.Fatalf("the paused schedule started a job: %d runs, %d at the pause", n, atPause)
		}
	}
	e.scheduleCmd(t, "unpause", cron)
	testutil.WaitFor(t, "the unpaused schedule to start a job again", 30*time.Second, func() bool {
		s = e.describeSchedule(t, cron)
		return s.Runs > atPause
	})
	e.scheduleCmd(t, "delete", cron)
	if _, stderr, code := e.schedule(t, "describe", cron); code == 0 || !strings.Contains(stderr, "no schedule "+cron) {
		t.Errorf("describe after delete: exit %d %q", code, stderr)
	}

	// Every run the cron schedule started (at most 10 so far, all in Recent) completed and was
	// published once.
	completed := 0
	for _, r := range s.Recent {
		pub := e.resultsOf(t, r.JobID, 30*time.Second)
		if len(pub) == 1 && pub[0].Status == jobs.StatusCompleted {
			completed++
		}
	}
	t.Logf("cron schedule: %d jobs started (%d before the pause, none while paused), %d completed and published once, lost %d",
		s.Runs, atPause, completed, s.Runs-completed)
	if len(s.Recent) != s.Runs || completed != s.Runs {
		t.Errorf("%d runs, %d recent, %d completed once", s.Runs, len(s.Recent), completed)
	}
}

func TestScheduleErrorsAreOneClearLine(t *testing.T) {
	e := env
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "x", "--cron", "* * * * *"}, "usage: starter schedule create <name> --cron EXPR -- <job_type>"},
		{[]string{"create", "x", "--", "vector_addition"}, `required flag(s) "cron" not set`},
		{[]string{"create", "bad name", "--cron", "* * * * *", "--", "vector_addition"}, `invalid schedule name "bad name"`},
		{[]string{"create", "x", "--cron", "* * * * *", "--overlap", "never", "--", "vector_addition"}, `invalid --overlap "never": allowed skip, buffer, buffer-all, allow`},
		{[]string{"create", "x", "--cron", "* * * * *", "--", "vector_addition", "--count", "3"}, "cannot take --count"},
		{[]string{"create", "x", "--cron", "* * * * *", "--", "sorting"}, `unknown job type "sorting"`},
		{[]string{"create", "x", "--cron", "* * * * *", "--", "matrix_multiply", "--size", "-1"}, "invalid size: -1 is out of range"},
		{[]string{"create", "x-" + testutil.RandomHex(3), "--cron", "every tuesday", "--", "vector_addition"}, "every tuesday"},
		{[]string{"pause", "no-such-schedule"}, "no schedule no-such-schedule"},
	} {
		out, stderr, code := e.schedule(t, tc.args...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code == 0 || len(lines) != 1 || !strings.Contains(stderr, tc.want) || out != "" {
			t.Errorf("starter %v: exit %d, stdout %q, stderr %q: want one line with %q", tc.args, code, out, stderr, tc.want)
		}
	}
}
