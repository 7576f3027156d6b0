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
