package artifacts

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
)

// storeUnderTest is one store with what the conformance suite needs besides the interface: a way
// to damage an object's bytes behind the store's back, keeping its recorded sha256 and its size.
type storeUnderTest struct {
	store   Store
	corrupt func(t *testing.T, key string)
}

// testStore is the conformance suite every Store passes. Each subtest works under its own
// prefix, so it also runs against a bucket that other runs have used.
func testStore(t *testing.T, open func(t *testing.T) storeUnderTest) {
	ctx := context.Background()
	t.Run("PutGetListOverwrite", func(t *testing.T) {
		s := open(t).store
		p := uniquePrefix()
		files := map[string][]byte{
			"model.pt":                     randomBytes(1, 300_000),
			"dir with space/file name.txt": []byte("hello, artifacts\n"),
			"a/b/c/deep.bin":               randomBytes(2, 70_001),
			"empty":                        {},
			"ünïcode-名前.txt":               []byte("utf-8 names"),
		}
		for name, data := range files {
			obj, err := s.Put(ctx, p+name, bytes.NewReader(data))
			if err != nil {
				t.Fatalf("Put %s: %v", name, err)
			}
			if obj.Key != p+name || obj.Size != int64(len(data)) || obj.SHA256 != sha(data) {
				t.Errorf("Put %s = %+v, want size %d sha256 %s", name, obj, len(data), sha(data))
			}
		}
		objs, err := s.List(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, o := range objs {
			names = append(names, o.Name)
			data := files[o.Name]
			if o.Key != p+o.Name || o.Size != int64(len(data)) || o.SHA256 != sha(data) {
				t.Errorf("List: %+v, want size %d sha256 %s", o, len(data), sha(data))
			}
		}
		want := sortedKeys(files)
		if !slices.Equal(names, want) {
			t.Errorf("List names = %q, want %q (sorted by key)", names, want)
		}
		for name, data := range files {
			got, obj := readObject(t, s, p+name)
			if !bytes.Equal(got, data) || obj.SHA256 != sha(data) || obj.Size != int64(len(data)) {
				t.Errorf("Get %s: %d bytes sha256 %s, object %+v; want %d bytes %s", name, len(got), sha(got), obj, len(data), sha(data))
			}
		}
		// Overwriting replaces the object: its new bytes, size and sha256, no second entry.
		v2 := []byte("second version, longer than the first one was")
		if _, err := s.Put(ctx, p+"dir with space/file name.txt", bytes.NewReader(v2)); err != nil {
			t.Fatal(err)
		}
		if got, _ := readObject(t, s, p+"dir with space/file name.txt"); !bytes.Equal(got, v2) {
			t.Errorf("after overwrite Get = %q, want %q", got, v2)
		}
		objs, _ = s.List(ctx, p+"dir with space/")
		if len(objs) != 1 || objs[0].Name != "file name.txt" || objs[0].SHA256 != sha(v2) || objs[0].Size != int64(len(v2)) {
			t.Errorf("after overwrite List = %+v, want the one new version", objs)
		}
	})

	t.Run("Streamed100MiB", func(t *testing.T) {
		s := open(t).store
		key := uniquePrefix() + "big/data.bin"
		const size = 100 << 20
		wantSum := sumReader(t, newGen(7, size))
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		obj, err := s.Put(ctx, key, newGen(7, size))
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if obj.Size != size || obj.SHA256 != wantSum {
			t.Fatalf("Put = %+v, want %d bytes sha256 %s", obj, size, wantSum)
		}
		// Streaming: what Put allocated in all is a fraction of the object, so it never held it.
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
			t.Errorf("Put of %d MiB allocated %d MiB: it buffers the object", size>>20, alloc>>20)
		} else {
			t.Logf("Put of %d MiB allocated %.1f MiB in all", size>>20, float64(alloc)/(1<<20))
		}
		rc, got, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		if got.Size != size || got.SHA256 != wantSum {
			t.Errorf("Get object = %+v", got)
		}
		if sum := sumReader(t, rc); sum != wantSum {
			t.Errorf("Get read sha256 %s, want %s", sum, wantSum)
		}
	})

	t.Run("PrefixIsolation", func(t *testing.T) {
		s := open(t).store
		p := uniquePrefix()
		// job-1's prefix is a string prefix of job-10's keys: "jobs/job-1/" must keep them apart.
		a, b := p+"job-1", p+"job-10"
		for _, id := range []string{a, b} {
			for _, name := range []string{"out.txt", "sub/x.bin"} {
				if _, err := s.Put(ctx, OutputPrefix(id)+name, strings.NewReader(id+name)); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := s.Put(ctx, CheckpointPrefix(id)+"state.json", strings.NewReader("{}")); err != nil {
				t.Fatal(err)
			}
		}
		outs, err := s.List(ctx, OutputPrefix(a))
		if err != nil {
			t.Fatal(err)
		}
		if names := objNames(outs); !slices.Equal(names, []string{"out.txt", "sub/x.bin"}) {
			t.Errorf("List(OutputPrefix(job-1)) = %q, want job-1's two outputs only", names)
		}
		if all, _ := s.List(ctx, JobPrefix(a)); len(all) != 3 {
			t.Errorf("List(JobPrefix(job-1)) = %d objects, want 3 (2 outputs, 1 checkpoint)", len(all))
		}
		if err := s.Delete(ctx, JobPrefix(a)); err != nil {
			t.Fatal(err)
		}
		if left, _ := s.List(ctx, JobPrefix(a)); len(left) != 0 {
			t.Errorf("after Delete(JobPrefix(job-1)) it still lists %+v", left)
		}
		if kept, _ := s.List(ctx, JobPrefix(b)); len(kept) != 3 {
			t.Errorf("Delete of job-1 left job-10 with %d objects, want 3", len(kept))
		}
		if _, _, err := s.Get(ctx, OutputPrefix(a)+"out.txt"); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of a deleted object: %v, want ErrNotFound", err)
		}
		if err := s.Delete(ctx, ""); err == nil {
			t.Error("Delete(\"\") was accepted: it would delete every object")
		}
	})

	t.Run("MissingAndBadKeys", func(t *testing.T) {
		s := open(t).store
		p := uniquePrefix()
		_, _, err := s.Get(ctx, p+"no/such/file")
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of a missing key: %v, want an error wrapping ErrNotFound", err)
		}
		if objs, err := s.List(ctx, p+"nothing/"); err != nil || len(objs) != 0 {
			t.Errorf("List of an empty prefix = %v, %v; want none, no error", objs, err)
		}
		if err := s.Delete(ctx, p+"nothing/"); err != nil {
			t.Errorf("Delete of an empty prefix: %v", err)
		}
		for _, bad := range []string{"", "/abs", p + "../escape", p + "a//b", p + "./x", p + "trailing/", p + "ctl\nname"} {
			if _, err := s.Put(ctx, bad, strings.NewReader("x")); !errors.Is(err, ErrBadKey) {
				t.Errorf("Put(%q): %v, want ErrBadKey", bad, err)
			}
		}
		// A canceled upload stores nothing.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Put(cctx, p+"canceled", newGen(1, 1<<20)); err == nil {
			t.Error("Put with a canceled context succeeded")
		}
		if objs, _ := s.List(ctx, p); len(objs) != 0 {
			t.Errorf("after a canceled Put the store lists %+v", objs)
		}
	})

	t.Run("PutDirPatterns", func(t *testing.T) {
		s := open(t).store
		p := uniquePrefix()
		dir := outputTree(t)
		objs, err := PutDir(ctx, s, p, dir, []string{"*.pt", "logs/**", "**/w.pt", "link.txt", "escape.txt", "escape-dir/*"})
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"ckpt/epoch 1/w.pt", "link.txt", "logs/a.log", "logs/sub/b.log", "model.pt"}
		if names := objNames(objs); !slices.Equal(names, want) {
			t.Errorf("PutDir names = %q, want %q (links out of the directory skipped)", names, want)
		}
		for _, o := range objs {
			src := o.Name
			if o.Name == "link.txt" {
				src = "notes.txt" // a link inside the directory stores its target's bytes
			}
			data, _ := os.ReadFile(filepath.Join(dir, src))
			if o.Key != p+o.Name || o.SHA256 != sha(data) || o.Size != int64(len(data)) {
				t.Errorf("PutDir object %+v, want key %s sha256 %s", o, p+o.Name, sha(data))
			}
		}
		listed, _ := s.List(ctx, p)
		if !slices.Equal(objNames(listed), want) {
			t.Errorf("List after PutDir = %q, want %q", objNames(listed), want)
		}

		p2 := uniquePrefix()
		objs, err = PutDir(ctx, s, p2, dir, []string{"**/*.log", "**/*.log"}) // duplicates upload once
		if err != nil {
			t.Fatal(err)
		}
		if names := objNames(objs); !slices.Equal(names, []string{"logs/a.log", "logs/sub/b.log", "top.log"}) {
			t.Errorf(`PutDir "**/*.log" = %q, want every .log at any depth, the top level included`, names)
		}
		p3 := uniquePrefix()
		objs, err = PutDir(ctx, s, p3, dir, []string{"**"})
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 8 {
			t.Errorf(`PutDir "**" = %q, want the 8 regular files inside the directory`, objNames(objs))
		}
	})

	t.Run("PutDirRejectsPatterns", func(t *testing.T) {
		s := open(t).store
		p := uniquePrefix()
		dir := outputTree(t)
		for _, bad := range []string{"/etc/*", "../*", "logs/../../x", "", ".", "a**b/*", "[z-a"} {
			_, err := PutDir(ctx, s, p, dir, []string{"*.pt", bad})
			if err == nil || !strings.Contains(err.Error(), `"`+bad+`"`) {
				t.Errorf("PutDir with pattern %q: %v, want an error naming the pattern", bad, err)
			}
		}
		if objs, _ := s.List(ctx, p); len(objs) != 0 {
			t.Errorf("a rejected pattern still uploaded %q", objNames(objs))
		}
	})

	t.Run("GetPrefix", func(t *testing.T) {
		s := open(t).store
		p := uniquePrefix()
		src := outputTree(t)
		put, err := PutDir(ctx, s, OutputPrefix(p+"job"), src, []string{"**"})
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(t.TempDir(), "download")
		got, err := GetPrefix(ctx, s, OutputPrefix(p+"job"), dst)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(objNames(got), objNames(put)) {
			t.Errorf("GetPrefix = %q, want %q", objNames(got), objNames(put))
		}
		for _, o := range put {
			data, err := os.ReadFile(filepath.Join(dst, filepath.FromSlash(o.Name)))
			if err != nil || sha(data) != o.SHA256 {
				t.Errorf("downloaded %s: %v, sha256 %s, want %s", o.Name, err, sha(data), o.SHA256)
			}
		}
		// Names that would leave the directory are refused, and nothing is written.
		outside := t.TempDir()
		evil := filepath.Join(t.TempDir(), "evil")
		// Without its trailing "/", the prefix leaves names starting with "/".
		if _, err := GetPrefix(ctx, s, strings.TrimSuffix(OutputPrefix(p+"job"), "/"), evil); err == nil {
			t.Error(`GetPrefix with names starting "/" was accepted`)
		}
		for _, name := range []string{"../" + filepath.Base(outside) + "/x", "/etc/passwd-copy", "a/../../x", ""} {
			objs := []Object{{Key: put[0].Key, Name: name, Size: put[0].Size, SHA256: put[0].SHA256}}
			if _, err := GetObjects(ctx, s, objs, evil); err == nil || !strings.Contains(err.Error(), "refusing") {
				t.Errorf("GetObjects with name %q: %v, want it refused", name, err)
			}
		}
		if _, err := os.Stat(evil); !os.IsNotExist(err) {
			t.Errorf("refused downloads created %s", evil)
		}
		// A link planted in the destination cannot redirect a download out of it.
		planted := filepath.Join(t.TempDir(), "planted")
		os.MkdirAll(planted, 0o755)
		os.Symlink(outside, filepath.Join(planted, "logs"))
		if _, err := GetPrefix(ctx, s, OutputPrefix(p+"job"), planted); err == nil {
			t.Error("GetPrefix wrote through a link that leads out of the directory")
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Errorf("a download escaped into %s: %v", outside, entries)
		}
	})

	t.Run("Corruption", func(t *testing.T) {
		sut := open(t)
		s := sut.store
		p := uniquePrefix()
		data := randomBytes(3, 5000)
		key := OutputPrefix(p+"job") + "result.bin"
		if _, err := s.Put(ctx, key, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		dst := t.TempDir()
		good := filepath.Join(dst, "result.bin")
		if _, err := GetPrefix(ctx, s, OutputPrefix(p+"job"), dst); err != nil {
			t.Fatal(err)
		}
		sut.corrupt(t, key)
		objs, err := s.List(ctx, OutputPrefix(p+"job"))
		if err != nil || len(objs) != 1 || objs[0].SHA256 != sha(data) {
			t.Fatalf("List of the corrupt object = %+v, %v: want its recorded sha256 %s", objs, err, sha(data))
		}
		rc, _, err := s.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(rc)
		rc.Close()
		if !errors.Is(err, ErrCorrupt) {
			t.Errorf("reading a corrupt object: %v, want ErrCorrupt", err)
		}
		_, err = GetPrefix(ctx, s, OutputPrefix(p+"job"), dst)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "sha256") {
			t.Errorf("GetPrefix of a corrupt object: %v, want an ErrCorrupt naming the sha256", err)
		}
		if kept, _ := os.ReadFile(good); !bytes.Equal(kept, data) {
			t.Error("the corrupt download replaced the good file")
		}
		if entries, _ := os.ReadDir(dst); len(entries) != 1 {
			t.Errorf("the corrupt download left files behind: %v", entries)
		}
	})
}

// outputTree is a job's output directory: files at several depths, a name with spaces, a link
// inside it, links out of it, and a fifo.
func outputTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	outside := t.TempDir()
	write := func(rel string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("model.pt", randomBytes(10, 40_000))
	write("logs/a.log", []byte("a\n"))
	write("logs/sub/b.log", []byte("b\n"))
	write("ckpt/epoch 1/w.pt", randomBytes(11, 1234))
	write("notes.txt", []byte("notes\n"))
	write("top.log", []byte("top\n"))
	write(".hidden", []byte("h"))
	os.WriteFile(filepath.Join(outside, "secret"), []byte("not yours"), 0o644)
	must(t, os.Symlink("notes.txt", filepath.Join(dir, "link.txt")))
	must(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(dir, "escape.txt")))
	must(t, os.Symlink("../"+filepath.Base(outside)+"/secret", filepath.Join(dir, "escape-rel.txt")))
	must(t, os.Symlink(outside, filepath.Join(dir, "escape-dir")))
	must(t, syscall.Mkfifo(filepath.Join(dir, "fifo.pt"), 0o644)) // matches "*.pt"; opening it would block
	return dir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func readObject(t *testing.T, s Store, key string) ([]byte, Object) {
	t.Helper()
	rc, obj, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatalf("Get %s: %v", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read %s: %v", key, err)
	}
	return data, obj
}

func uniquePrefix() string { return "t-" + randomHex(6) + "/" }

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func sumReader(t *testing.T, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rand.NewChaCha8([32]byte{byte(seed)}).Read(b)
	return b
}

// gen streams n seeded pseudo-random bytes without holding them.
type gen struct {
	rng  *rand.ChaCha8
	left int64
}

func newGen(seed uint64, n int64) *gen {
	return &gen{rng: rand.NewChaCha8([32]byte{byte(seed)}), left: n}
}

func (g *gen) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), g.left))
	g.rng.Read(p[:n])
	g.left -= int64(n)
	return n, nil
}

func objNames(objs []Object) []string {
	names := make([]string, len(objs))
	for i, o := range objs {
		names[i] = o.Name
	}
	return names
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
