package ptx

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KernelDirEnv names a directory of .fatbin/.ptx files that the GPU runner loads instead of the
// embedded ones, so that a kernel rebuilt with another nvcc (scripts/gpu-check.sh does it with the
// GPU machine's own) is tried without rebuilding Go.
const KernelDirEnv = "GPUJOBS_KERNEL_DIR"

// A File is a module's compiled code, in the order the loader tries them.
type File struct {
	Path string // where it came from: embedded:NAME.fatbin or a file
	Kind string // fatbin or ptx
	Data []byte
}

// Embedded returns the module's embedded fatbin, then its PTX (for a driver that refuses the
// fatbin).
func Embedded(module string) ([]File, error) {
	var files []File
	for _, kind := range []string{"fatbin", "ptx"} {
		b, err := generated.ReadFile(module + "." + kind)
		if err != nil {
			return nil, fmt.Errorf("no embedded %s for module %q: %w", kind, module, err)
		}
		files = append(files, File{Path: "embedded:" + module + "." + kind, Kind: kind, Data: b})
	}
	return files, nil
}

// FromDir returns the module's files in dir: NAME.fatbin and NAME.ptx, whichever exist, fatbin
// first. Neither is an error naming both: a directory that lacks a module must not silently fall
// back to the embedded one, or a benchmark of the rebuilt kernels would measure the old ones.
// A .ptx file must declare every kernel of the module.
func FromDir(dir, module string) ([]File, error) {
	var files []File
	for _, kind := range []string{"fatbin", "ptx"} {
		path := filepath.Join(dir, module+"."+kind)
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", KernelDirEnv, err)
		}
		if len(b) == 0 {
			return nil, fmt.Errorf("%s: %s is empty", KernelDirEnv, path)
		}
		if kind == "ptx" {
			if missing := MissingEntries(module, string(b)); len(missing) > 0 {
				return nil, fmt.Errorf("%s: %s lacks the kernels %v", KernelDirEnv, path, missing)
			}
		}
		files = append(files, File{Path: path, Kind: kind, Data: b})
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s=%s has neither %s.fatbin nor %s.ptx", KernelDirEnv, dir, module, module)
	}
	return files, nil
}

// MissingEntries lists the kernels of module that the PTX text does not declare as entries.
func MissingEntries(module, text string) []string {
	entries := map[string]bool{}
	for _, e := range entryRe.FindAllStringSubmatch(text, -1) {
		entries[e[1]] = true
	}
	var missing []string
	for _, m := range Modules {
		if m.Name != module {
			continue
		}
		for _, k := range m.Kernels {
			if !entries[k] {
				missing = append(missing, k)
			}
		}
	}
	return missing
}
