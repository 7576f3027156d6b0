package ptx_test

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gpujobs/gpujobs/kernels/cuda/ptx"
)

// These run without a GPU: they check the generated files that the GPU worker embeds.

var entryRe = regexp.MustCompile(`(?m)^\.visible \.entry ([A-Za-z_][A-Za-z0-9_]*)\(`)

func TestPTXWellFormed(t *testing.T) {
	for _, m := range ptx.Modules {
		text, err := ptx.PTX(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, directive := range []string{".version 7.8", ".target sm_80", ".address_size 64"} {
			if !strings.Contains(text, "\n"+directive+"\n") {
				t.Errorf("%s.ptx: no %q line (regenerate with make kernels)", m.Name, directive)
			}
		}
		if open, closed := strings.Count(text, "{"), strings.Count(text, "}"); open != closed {
			t.Errorf("%s.ptx: %d '{' but %d '}': truncated?", m.Name, open, closed)
		}
		entries := map[string]bool{}
		for _, e := range entryRe.FindAllStringSubmatch(text, -1) {
			entries[e[1]] = true
		}
		for _, k := range m.Kernels {
			if !entries[k] {
				t.Errorf("%s.ptx has no .entry %s (entries: %v)", m.Name, k, keys(entries))
			}
		}
		if len(entries) != len(m.Kernels) {
			t.Errorf("%s.ptx has %d entries, ptx.Modules lists %d: keep them in step", m.Name, len(entries), len(m.Kernels))
		}
	}
}

func TestFatbinHeader(t *testing.T) {
	const fatbinMagic = 0xBA55ED50
	for _, m := range ptx.Modules {
		b, err := ptx.Fatbin(m.Name)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 16 || binary.LittleEndian.Uint32(b) != fatbinMagic {
			t.Errorf("%s.fatbin does not start with the fatbin magic", m.Name)
			continue
		}
		// The header's size field (bytes 8..16) covers everything after the 16-byte header.
		if size := binary.LittleEndian.Uint64(b[8:]); size+16 != uint64(len(b)) {
			t.Errorf("%s.fatbin: header says %d bytes, file has %d", m.Name, size+16, len(b))
		}
		// The kernel names appear in the SASS's symbol table and in the embedded PTX.
		for _, k := range m.Kernels {
			if !strings.Contains(string(b), k) {
				t.Errorf("%s.fatbin does not mention kernel %s", m.Name, k)
			}
		}
	}
}

// TestGeneratedFromCurrentSources fails when a .cu or .cuh file changed after `make kernels`.
func TestGeneratedFromCurrentSources(t *testing.T) {
	f, err := os.Open("sources.sha256")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if ok {
			want[name] = sum
		}
	}
	srcs, _ := filepath.Glob("../*.cu")
	hdrs, _ := filepath.Glob("../*.cuh")
	srcs = append(srcs, hdrs...)
	if len(srcs) == 0 {
		t.Fatal("no .cu sources found beside the generated files")
	}
	for _, path := range srcs {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		name := filepath.Base(path)
		if got := hex.EncodeToString(sum[:]); want[name] != got {
			t.Errorf("%s changed since the PTX was generated: run make kernels and commit kernels/cuda/ptx", name)
		}
		delete(want, name)
	}
	for name := range want {
		t.Errorf("sources.sha256 lists %s, which no longer exists: run make kernels", name)
	}
}

func keys(m map[string]bool) []string {
	var s []string
	for k := range m {
		s = append(s, k)
	}
	return s
}

func TestFromDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := ptx.FromDir(dir, "vector_addition"); err == nil || !strings.Contains(err.Error(), "neither vector_addition.fatbin nor vector_addition.ptx") {
		t.Errorf("empty dir: %v", err)
	}
	text, _ := ptx.PTX("vector_addition")
	fat, _ := ptx.Fatbin("vector_addition")
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("vector_addition.ptx", []byte(text))
	files, err := ptx.FromDir(dir, "vector_addition")
	if err != nil || len(files) != 1 || files[0].Kind != "ptx" || string(files[0].Data) != text {
		t.Fatalf("ptx only: %v %+v", err, files)
	}
	write("vector_addition.fatbin", fat)
	files, err = ptx.FromDir(dir, "vector_addition")
	if err != nil || len(files) != 2 || files[0].Kind != "fatbin" || files[1].Kind != "ptx" || files[0].Path != filepath.Join(dir, "vector_addition.fatbin") {
		t.Fatalf("both: %v %+v", err, files)
	}
	// A PTX file that lacks a kernel of its module is refused, naming it.
	write("vector_addition.ptx", []byte(strings.ReplaceAll(text, ptx.VectorAdd, "vadd_renamed")))
	if _, err := ptx.FromDir(dir, "vector_addition"); err == nil || !strings.Contains(err.Error(), ptx.VectorAdd) {
		t.Errorf("PTX without the kernel: %v", err)
	}
	write("vector_addition.ptx", nil)
	if _, err := ptx.FromDir(dir, "vector_addition"); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty PTX: %v", err)
	}
}

func TestEmbedded(t *testing.T) {
	for _, m := range ptx.Modules {
		files, err := ptx.Embedded(m.Name)
		if err != nil || len(files) != 2 || files[0].Kind != "fatbin" || files[1].Kind != "ptx" {
			t.Fatalf("%s: %v %+v", m.Name, err, files)
		}
		if missing := ptx.MissingEntries(m.Name, string(files[1].Data)); len(missing) > 0 {
			t.Errorf("%s.ptx lacks %v", m.Name, missing)
		}
	}
}
