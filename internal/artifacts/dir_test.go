package artifacts

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func openDirStore(t *testing.T) storeUnderTest {
	t.Helper()
	root := t.TempDir()
	s, err := Open(context.Background(), Config{URL: "file://" + root})
	if err != nil {
		t.Fatal(err)
	}
	return storeUnderTest{store: s, corrupt: func(t *testing.T, key string) {
		// Bytes changed in place, as a failing disk or a stray write would: same file, same size.
		f, err := os.OpenFile(filepath.Join(root, dirObjects, filepath.FromSlash(key)), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		f.ReadAt(b, 0)
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
	}}
}

func TestDirStore(t *testing.T) { testStore(t, openDirStore) }

func TestDirStoreLayoutAndSidecars(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := Open(ctx, Config{URL: "file://" + root})
	if err != nil {
		t.Fatal(err)
	}
	key := OutputPrefix("job-0123456789ab") + "model.pt"
	data := randomBytes(5, 10_000)
	if _, err := s.Put(ctx, key, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	// The bytes lie where a person looks for them.
	if got, err := os.ReadFile(filepath.Join(root, "objects", "jobs", "job-0123456789ab", "outputs", "model.pt")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("objects/%s: %v", key, err)
	}
	objPath := filepath.Join(root, dirObjects, filepath.FromSlash(key))

	// List takes size and sha256 from the sidecar: bytes changed in place (same file) do not
	// change what it reports, so it did not hash them.
	f, _ := os.OpenFile(objPath, os.O_RDWR, 0)
	f.WriteAt([]byte("XXXX"), 100)
	f.Close()
	objs, _ := s.List(ctx, JobPrefix("job-0123456789ab"))
	if len(objs) != 1 || objs[0].SHA256 != sha(data) {
		t.Errorf("List = %+v, want the recorded sha256 %s", objs, sha(data))
	}
	// Truncated in place: still the recorded size and sha256, and reading it fails.
	os.Truncate(objPath, 10)
	objs, _ = s.List(ctx, JobPrefix("job-0123456789ab"))
	if len(objs) != 1 || objs[0].Size != int64(len(data)) {
		t.Errorf("List of a truncated object = %+v, want the recorded size %d", objs, len(data))
	}
	rc, _, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = readAll(rc)
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("reading a truncated object: %v, want ErrCorrupt", err)
	}

	// A crash between the object's rename and its sidecar's leaves a new file under the old
	// sidecar: the store sees the inode differ, hashes the new bytes and rewrites the sidecar.
	v2 := []byte("the new version, whose sidecar was never written")
	tmp := filepath.Join(root, dirTmp, "crashed")
	os.WriteFile(tmp, v2, 0o640)
	if err := os.Rename(tmp, objPath); err != nil {
		t.Fatal(err)
	}
	objs, _ = s.List(ctx, JobPrefix("job-0123456789ab"))
	if len(objs) != 1 || objs[0].SHA256 != sha(v2) || objs[0].Size != int64(len(v2)) {
		t.Errorf("List after a crash = %+v, want the new bytes' sha256 %s", objs, sha(v2))
	}
	m, err := s.(*dirStore).readMeta(key)
	if err != nil || m.SHA256 != sha(v2) {
		t.Errorf("sidecar after recovery = %+v, %v", m, err)
	}
	if got, _ := readObject(t, s, key); !bytes.Equal(got, v2) {
		t.Errorf("Get after recovery = %q", got)
	}
	// A sidecar the crash left without its object lists nothing and is removed by Delete.
	os.Remove(objPath)
	if objs, _ := s.List(ctx, JobPrefix("job-0123456789ab")); len(objs) != 0 {
		t.Errorf("a sidecar without its object lists %+v", objs)
	}
	if err := s.Delete(ctx, JobPrefix("job-0123456789ab")); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{dirObjects, dirMeta} {
		if entries, _ := os.ReadDir(filepath.Join(root, sub)); len(entries) != 0 {
			t.Errorf("after Delete %s/ still holds %v", sub, entries)
		}
	}
}

func TestDirStoreTmpAndConflicts(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := Open(ctx, Config{URL: root}) // a plain path is a directory store too
	if err != nil {
		t.Fatal(err)
	}
	// Temporary files of writers that crashed are swept at the next Open, once old; a young one
	// may be another process's upload in progress.
	old, young := filepath.Join(root, dirTmp, "put-old"), filepath.Join(root, dirTmp, "put-young")
	os.WriteFile(old, []byte("x"), 0o600)
	os.WriteFile(young, []byte("x"), 0o600)
	past := time.Now().Add(-48 * time.Hour)
	os.Chtimes(old, past, past)
	if _, err := Open(ctx, Config{URL: "file://" + root}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Error("a two-day-old temporary file survived Open")
	}
	if _, err := os.Stat(young); err != nil {
		t.Error("Open removed a fresh temporary file")
	}
	if objs, _ := s.List(ctx, ""); len(objs) != 0 {
		t.Errorf("temporary files are listed: %+v", objs)
	}
	// A key cannot be both an object and a directory of objects; the error says which.
	if _, err := s.Put(ctx, "a/b", strings.NewReader("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, "a/b/c", strings.NewReader("2")); err == nil || !strings.Contains(err.Error(), "is an object") {
		t.Errorf("Put under an object: %v", err)
	}
	if _, err := s.Put(ctx, "a", strings.NewReader("3")); err == nil || !strings.Contains(err.Error(), "other objects") {
		t.Errorf("Put over a directory of objects: %v", err)
	}
	if _, _, err := s.Get(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a directory of objects: %v, want ErrNotFound", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "a-file")
	os.WriteFile(file, nil, 0o600)
	for _, tt := range []struct{ url, want string }{
		{"", "empty URL"},
		{"file://relative/dir", `not host "relative"`},
		{"ftp://host/x", `unknown scheme "ftp"`},
		{"file://" + file + "/store", "not a directory"},
		{"s3://", "no bucket"},
		{"s3://bucket/a/../b", `".." path segment`},
		{"s3://Bad_Bucket/x", `bucket name "Bad_Bucket"`},
		{"s3://key:secret@bucket/x", "without credentials"},
	} {
		_, err := Open(ctx, Config{URL: tt.url})
		if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("Open(%q): %v, want one line containing %q", tt.url, err, tt.want)
		}
	}
}

func readAll(rc interface {
	Read([]byte) (int, error)
	Close() error
}) ([]byte, error) {
	defer rc.Close()
	var b bytes.Buffer
	_, err := b.ReadFrom(rc)
	return b.Bytes(), err
}
