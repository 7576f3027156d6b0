package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/internal/artifacts"
	"github.com/gpujobs/gpujobs/jobs"
)

// A job's outputs in the real S3 server (SeaweedFS, started by make test), listed and downloaded
// with bin/starter as a user would, with the store settings and credentials from the
// environment: what was stored comes back byte for byte, sha256 checked.
func TestArtifactsThroughS3(t *testing.T) {
	endpoint, bucket := os.Getenv("GPUJOBS_S3_ENDPOINT"), os.Getenv("GPUJOBS_S3_TEST_BUCKET")
	if endpoint == "" || bucket == "" {
		msg := `no S3 server: scripts/seaweedfs.sh start; eval "$(scripts/seaweedfs.sh env)"`
		if os.Getenv("GPUJOBS_S3_REQUIRED") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ctx := context.Background()
	url := "s3://" + bucket + "/e2e-" + randHex(4)
	s, err := artifacts.Open(ctx, artifacts.Config{URL: url, Endpoint: endpoint, Region: os.Getenv("GPUJOBS_S3_REGION")})
	if err != nil {
		t.Fatal(err)
	}
	job := jobs.NewJobID()
	out := t.TempDir()
	big := make([]byte, 40<<20+7) // above the part size: a multipart upload
	rand.Read(big)
	files := map[string][]byte{"model.pt": big, "metrics.json": []byte(`{"loss": 0.25}`), "plots/loss curve.svg": []byte("<svg/>")}
	for name, data := range files {
		p := filepath.Join(out, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put, err := artifacts.PutDir(ctx, s, artifacts.OutputPrefix(job), out, []string{"*.pt", "*.json", "plots/**"})
	if err != nil || len(put) != 3 {
		t.Fatalf("PutDir: %v, %d objects", err, len(put))
	}
	t.Setenv("GPUJOBS_ARTIFACTS", url) // the starter reads the store from the environment

	stdout, stderr, code := env.starterRaw(t, "artifacts", job, "--json")
	if code != 0 {
		t.Fatalf("starter artifacts: exit %d: %s", code, stderr)
	}
	var listed []artifacts.Object
	if err := json.Unmarshal([]byte(stdout), &listed); err != nil {
		t.Fatalf("starter artifacts --json printed %q: %v", stdout, err)
	}
	if len(listed) != 3 {
		t.Fatalf("starter artifacts listed %d, want 3: %s", len(listed), stdout)
	}
	for i, o := range listed {
		if o != put[i] || o.SHA256 != shaHex(files[o.Name]) {
			t.Errorf("listed %+v, stored %+v", o, put[i])
		}
	}
	stdout, stderr, code = env.starterRaw(t, "artifacts", job)
	if code != 0 || !strings.Contains(stdout, "model.pt") || !strings.Contains(stdout, put[1].SHA256) || !strings.Contains(stdout, "40.0 MiB") {
		t.Errorf("starter artifacts: exit %d\n%s%s", code, stdout, stderr)
	}

	dst := filepath.Join(t.TempDir(), "all")
	if stdout, stderr, code = env.starterRaw(t, "download", job, "-o", dst); code != 0 {
		t.Fatalf("starter download: exit %d: %s", code, stderr)
	}
	for name, data := range files {
		got, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(name)))
		if err != nil || !bytes.Equal(got, data) {
			t.Errorf("downloaded %s: %v, %d bytes, want %d", name, err, len(got), len(data))
		}
		if !strings.Contains(stdout, shaHex(data)+" ok") {
			t.Errorf("the download does not report %s's sha256:\n%s", name, stdout)
		}
	}
	one := filepath.Join(t.TempDir(), "one")
	if _, stderr, code = env.starterRaw(t, "download", job, "metrics.json", "-o", one); code != 0 {
		t.Fatalf("starter download metrics.json: exit %d: %s", code, stderr)
	}
	if entries, _ := os.ReadDir(one); len(entries) != 1 || entries[0].Name() != "metrics.json" {
		t.Errorf("download metrics.json wrote %v", entries)
	}

	// Without credentials the starter says which variables to set, in one line, exit 1.
	cmd := exec.Command(filepath.Join(env.bin, "starter"), "artifacts", job)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") && !strings.HasPrefix(kv, artifacts.CredentialsFileEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	var se bytes.Buffer
	cmd.Stderr = &se
	err = cmd.Run()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(se.String(), "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") ||
		strings.Count(strings.TrimSpace(se.String()), "\n") != 0 {
		t.Errorf("starter without credentials: %v, stderr %q", err, se.String())
	}
	if err := s.Delete(ctx, artifacts.JobPrefix(job)); err != nil {
		t.Error(err)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func shaHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
