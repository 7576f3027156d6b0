package hostmem

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func TestReservationsShareTheBudget(t *testing.T) {
	l := &Ledger{Path: filepath.Join(t.TempDir(), "ledger.json"), Budget: 20 << 30}
	release, err := l.Reserve("job-a", 12<<30)
	if err != nil {
		t.Fatal(err)
	}
	var busy *BusyError
	if _, err := l.Reserve("job-b", 12<<30); !errors.As(err, &busy) || busy.Reserved != 12<<30 {
		t.Fatalf("second 12 GiB job: err %v, want busy with 12 GiB reserved", err)
	}
	small, err := l.Reserve("job-c", 4<<30)
	if err != nil {
		t.Fatalf("a small job beside the big one: %v", err)
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve("job-b", 12<<30); err != nil {
		t.Errorf("after the first job released its memory: %v", err)
	}
	small() //nolint:errcheck
	if e, _ := l.Entries(); len(e) != 1 || e[0].JobID != "job-b" {
		t.Errorf("entries %+v, want job-b's alone", e)
	}
}

func TestAvailableMemoryBoundsAReservation(t *testing.T) {
	l := &Ledger{Path: filepath.Join(t.TempDir(), "ledger.json"), Budget: 20 << 30, Margin: 1 << 30,
		Available: func() int64 { return 6 << 30 }}
	var busy *BusyError
	if _, err := l.Reserve("job-a", 6<<30); !errors.As(err, &busy) || busy.Available != 6<<30 {
		t.Errorf("6 GiB with 6 GiB available and a 1 GiB margin: %v", err)
	}
	if _, err := l.Reserve("job-a", 4<<30); err != nil {
		t.Errorf("4 GiB: %v", err)
	}
}

// The reservations of a process that died (a killed worker) do not hold memory back.
func TestReservationsOfADeadProcessAreDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.json")
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	dead := cmd.Process.Pid
	if err := os.WriteFile(path, []byte(`[{"pid":`+strconv.Itoa(dead)+`,"job_id":"job-x","bytes":`+strconv.Itoa(16<<30)+`}]`), 0o644); err != nil {
		t.Fatal(err)
	}
	l := &Ledger{Path: path, Budget: 20 << 30}
	if _, err := l.Reserve("job-a", 12<<30); err != nil {
		t.Errorf("a dead worker's 16 GiB still counted: %v", err)
	}
}
