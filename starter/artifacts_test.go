package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/internal/artifacts"
)

// starter runs the starter's command line in-process and returns its output and error.
func starter(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// jobOutputs stores a job's outputs in a fresh directory store, as a worker would, and returns
// the store's URL and the objects.
func jobOutputs(t *testing.T, job string) (string, []artifacts.Object) {
	t.Helper()
	url := "file://" + t.TempDir()
	s, err := artifacts.Open(context.Background(), artifacts.Config{URL: url})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	for name, data := range map[string]string{"model.pt": strings.Repeat("w", 5000), "plots/loss curve.svg": "<svg/>", "plots/acc.svg": "<svg></svg>", "metrics.json": `{"loss": 0.1}`} {
		p := filepath.Join(out, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(data), 0o644)
	}
	objs, err := artifacts.PutDir(context.Background(), s, artifacts.OutputPrefix(job), out, []string{"**"})
	if err != nil || len(objs) != 4 {
		t.Fatalf("PutDir: %v, %d objects", err, len(objs))
	}
	return url, objs
}

func TestArtifactsCommand(t *testing.T) {
	url, objs := jobOutputs(t, "job-0123456789ab")
	out, err := starter(t, "artifacts", "job-0123456789ab", "--artifacts", url, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var listed []artifacts.Object
	if err := json.Unmarshal([]byte(out), &listed); err != nil {
		t.Fatalf("--json printed %q: %v", out, err)
	}
	if len(listed) != len(objs) {
		t.Fatalf("--json listed %d objects, want %d", len(listed), len(objs))
	}
	for i := range objs {
		if listed[i] != objs[i] {
			t.Errorf("--json [%d] = %+v, want %+v", i, listed[i], objs[i])
		}
	}
	// The table, with the store taken from the environment.
	t.Setenv("GPUJOBS_ARTIFACTS", url)
	out, err = starter(t, "artifacts", "job-0123456789ab")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if !strings.Contains(out, o.Name) || !strings.Contains(out, o.SHA256) {
			t.Errorf("the table lacks %s %s:\n%s", o.Name, o.SHA256, out)
		}
	}
	if !strings.Contains(out, "4 files") || !strings.Contains(out, "4.9 KiB") {
		t.Errorf("the table has no summary line or sizes:\n%s", out)
	}
	// A job without outputs: an empty list, not an error.
	if out, err := starter(t, "artifacts", "job-ffffffffffff", "--json"); err != nil || strings.TrimSpace(out) != "[]" {
		t.Errorf("artifacts of a job without outputs --json = %q, %v; want []", out, err)
	}
	if out, err := starter(t, "artifacts", "job-ffffffffffff"); err != nil || !strings.Contains(out, "has no artifacts") {
		t.Errorf("artifacts of a job without outputs = %q, %v", out, err)
	}
	if _, err := starter(t, "artifacts", "job 1"); err == nil || !strings.Contains(err.Error(), "invalid job_id") {
		t.Errorf("a bad job ID: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "nowhere")
	if _, err := starter(t, "artifacts", "job-1", "--artifacts", "file://"+missing); err == nil || !strings.Contains(err.Error(), "no artifact store at") {
		t.Errorf("a store directory that does not exist: %v", err)
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Error("listing created the store directory")
	}
	if _, err := starter(t, "artifacts", "job-1", "--artifacts", "ftp://x"); err == nil || !strings.Contains(err.Error(), `unknown scheme "ftp"`) {
		t.Errorf("a bad store URL: %v", err)
	}
}

func TestDownloadCommand(t *testing.T) {
	url, objs := jobOutputs(t, "job-0123456789ab")
	byName := map[string]artifacts.Object{}
	for _, o := range objs {
		byName[o.Name] = o
	}
	dst := filepath.Join(t.TempDir(), "all")
	out, err := starter(t, "download", "job-0123456789ab", "-o", dst, "--artifacts", url)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		data, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(o.Name)))
		if err != nil || int64(len(data)) != o.Size || !strings.Contains(out, o.SHA256+" ok") {
			t.Errorf("download of %s: %v, %d bytes; output:\n%s", o.Name, err, len(data), out)
		}
	}
	// Named files and a directory of them; nothing else.
	some := filepath.Join(t.TempDir(), "some")
	if _, err := starter(t, "download", "job-0123456789ab", "model.pt", "plots/", "--output", some, "--artifacts", url); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(some, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(some, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if strings.Join(got, ",") != "model.pt,plots/acc.svg,plots/loss curve.svg" {
		t.Errorf("download model.pt plots/ wrote %q", got)
	}
	_, err = starter(t, "download", "job-0123456789ab", "weights.bin", "-o", some, "--artifacts", url)
	if err == nil || !strings.Contains(err.Error(), `no artifact "weights.bin"; it has: metrics.json, model.pt`) {
		t.Errorf("download of a name the job lacks: %v", err)
	}
	if _, err := starter(t, "download", "job-ffffffffffff", "--artifacts", url); err == nil || !strings.Contains(err.Error(), "has no artifacts") {
		t.Errorf("download of a job without outputs: %v", err)
	}
	// A damaged object fails the download with its sha256, and leaves no file.
	root := strings.TrimPrefix(url, "file://")
	victim := filepath.Join(root, "objects", filepath.FromSlash(byName["model.pt"].Key))
	f, _ := os.OpenFile(victim, os.O_RDWR, 0)
	f.WriteAt([]byte("X"), 10)
	f.Close()
	bad := filepath.Join(t.TempDir(), "bad")
	_, err = starter(t, "download", "job-0123456789ab", "model.pt", "-o", bad, "--artifacts", url)
	if err == nil || !strings.Contains(err.Error(), "sha256") || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("download of a damaged object: %v", err)
	}
	if _, err := os.Stat(filepath.Join(bad, "model.pt")); !os.IsNotExist(err) {
		t.Error("the damaged object was written out")
	}
}
