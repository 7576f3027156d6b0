package command

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/internal/artifacts"
)

// A checkpoint is restored whole: a save that died before its marker is ignored, a file the
// program deleted does not come back, and each save leaves one generation in the store.
func TestCheckpointsAreWholeGenerations(t *testing.T) {
	ctx := context.Background()
	store, err := artifacts.Open(ctx, artifacts.Config{URL: "file://" + t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	write := func(dir, name, text string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := NewCheckpoints(store, "job-g", t.TempDir())
	write(first.Dir(), "model", "epoch 1")
	write(first.Dir(), "stale", "only in epoch 1")
	if err := first.Save(ctx); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(first.Dir(), "stale"))
	write(first.Dir(), "model", "epoch 2")
	if err := first.Save(ctx); err != nil {
		t.Fatal(err)
	}
	objs, _ := store.List(ctx, artifacts.CheckpointPrefix("job-g"))
	if len(objs) != 2 { // epoch 2's model and its marker
		t.Errorf("after two saves the store holds %v, want one generation", objs)
	}
	// A worker that died uploading epoch 3: its files are there, its marker is not.
	if _, err := store.Put(ctx, genPrefix("job-g", first.gen+1)+"files/model", strings.NewReader("half of epoch 3")); err != nil {
		t.Fatal(err)
	}
	second, _ := NewCheckpoints(store, "job-g", t.TempDir())
	desc, err := second.Restore(ctx)
	if err != nil || !strings.Contains(desc, "1 file(s)") {
		t.Fatalf("restore: %q %v", desc, err)
	}
	if b, _ := os.ReadFile(filepath.Join(second.Dir(), "model")); string(b) != "epoch 2" {
		t.Errorf("restored model %q, want the last complete save's", b)
	}
	if _, err := os.Stat(filepath.Join(second.Dir(), "stale")); err == nil {
		t.Error("a file deleted before the last save came back")
	}
	write(second.Dir(), "model", "epoch 4")
	if err := second.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if second.gen <= first.gen+1 {
		t.Errorf("generation %d does not follow the incomplete %d", second.gen, first.gen+1)
	}
	objs, _ = store.List(ctx, artifacts.CheckpointPrefix("job-g"))
	if len(objs) != 2 {
		t.Errorf("the superseded and incomplete generations are kept: %v", objs)
	}
	if err := second.Forget(ctx); err != nil {
		t.Fatal(err)
	}
	if objs, _ = store.List(ctx, artifacts.CheckpointPrefix("job-g")); len(objs) != 0 {
		t.Errorf("forgotten, yet %v", objs)
	}
}
