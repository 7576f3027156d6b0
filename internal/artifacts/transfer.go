package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// PutDir uploads the regular files under dir whose path relative to dir matches one of the glob
// patterns, to prefix+relpath, and returns their objects sorted by key, Name being the relative
// path. A pattern is "/"-separated and matched segment by segment with path.Match; a "**"
// segment matches any number of segments (zero included; at the end, at least one), so "**/*.pt"
// is every .pt file at any depth and "logs/**" everything under logs/. Patterns must be relative and must not contain
// "..": others are rejected, naming the pattern, before anything is uploaded. A pattern ending in
// "/" means everything under that directory.
//
// Nothing outside dir is read: a symbolic link is followed only when it resolves inside dir (then
// its target's bytes are stored under the link's path); links that lead out of dir, and links
// to directories, are skipped.
func PutDir(ctx context.Context, s Store, prefix, dir string, patterns []string) ([]Object, error) {
	pats, err := compilePatterns(patterns)
	if err != nil {
		return nil, err
	}
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", dir, err)
	}
	defer root.Close()
	var rels []string
	err = fs.WalkDir(root.FS(), ".", func(rel string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if rel == "." || de.IsDir() {
			return nil
		}
		if !matchAny(pats, rel) {
			return nil
		}
		if de.Type()&fs.ModeSymlink != 0 {
			// os.Root resolves links only inside dir: one that leads out is an error, skipped.
			fi, err := root.Stat(rel)
			if err != nil || !fi.Mode().IsRegular() {
				return nil
			}
		} else if !de.Type().IsRegular() {
			return nil // sockets, fifos, devices
		}
		rels = append(rels, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("upload %s: %w", dir, err)
	}
	objs := make([]Object, 0, len(rels))
	for _, rel := range rels {
		if err := checkKey(prefix + rel); err != nil {
			return objs, fmt.Errorf("upload %s: %w", filepath.Join(dir, rel), err)
		}
		obj, err := putFromRoot(ctx, s, root, prefix+rel, rel)
		if err != nil {
			return objs, err
		}
		obj.Name = rel
		objs = append(objs, obj)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	return objs, nil
}

func putFromRoot(ctx context.Context, s Store, root *os.Root, key, rel string) (Object, error) {
	f, err := root.Open(rel)
	if err != nil {
		return Object{}, fmt.Errorf("upload %s: %w", rel, err)
	}
	defer f.Close()
	return s.Put(ctx, key, f)
}

// GetPrefix downloads every object under prefix into dir, the object's name (its key relative to
// prefix) becoming its path under dir, and checks each file's sha256 against the object's. Keys
// that would land outside dir (absolute, "..", empty segments) are refused before anything is
// written. Each file is written beside its destination and renamed into place only once its
// sha256 matched, so a corrupt object never replaces a good file.
func GetPrefix(ctx context.Context, s Store, prefix, dir string) ([]Object, error) {
	objs, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	return GetObjects(ctx, s, objs, dir)
}

// GetObjects downloads the objects, as listed by List (Name relative to the listed prefix), into
// dir as GetPrefix does.
func GetObjects(ctx context.Context, s Store, objs []Object, dir string) ([]Object, error) {
	for _, o := range objs {
		if err := checkPath(o.Name); err != nil {
			return nil, fmt.Errorf("download %s: refusing the name %q, which would not stay inside %s: %v", o.Key, o.Name, dir, err)
		}
		if o.SHA256 == "" {
			return nil, fmt.Errorf("download %s: the store has no sha256 for it (not stored by gpujobs?)", o.Key)
		}
	}
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("download into %s: %w", dir, err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("download into %s: %w", dir, err)
	}
	defer root.Close()
	got := make([]Object, 0, len(objs))
	for _, o := range objs {
		if err := getOne(ctx, s, root, o); err != nil {
			return got, fmt.Errorf("download %s: %w", o.Key, err)
		}
		got = append(got, o)
	}
	return got, nil
}

func getOne(ctx context.Context, s Store, root *os.Root, want Object) error {
	name := filepath.FromSlash(want.Name)
	if d := filepath.Dir(name); d != "." {
		// os.Root refuses to go through a link out of dir, so a planted link cannot redirect it.
		if err := root.MkdirAll(d, dirMode); err != nil {
			return err
		}
	}
	rc, obj, err := s.Get(ctx, want.Key)
	if err != nil {
		return err
	}
	defer rc.Close()
	if obj.SHA256 != want.SHA256 || obj.Size != want.Size {
		return fmt.Errorf("%w: it changed since it was listed (sha256 %s, %d bytes; listed %s, %d bytes)",
			ErrCorrupt, obj.SHA256, obj.Size, want.SHA256, want.Size)
	}
	tmp := name + ".gpujobs-download-" + randomHex(4)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer root.Remove(tmp) // a no-op after the rename
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), ctxReader{ctx, rc}) // the store's reader checks too
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != want.SHA256 {
		return fmt.Errorf("%w: sha256 of the downloaded bytes %s, the store recorded %s", ErrCorrupt, sum, want.SHA256)
	}
	return root.Rename(tmp, name)
}

// pattern is a compiled glob: its segments, "**" among them.
type pattern []string

func compilePatterns(patterns []string) ([]pattern, error) {
	if len(patterns) == 0 {
		return nil, errors.New("no output patterns: give at least one, e.g. \"*\" or \"**\"")
	}
	out := make([]pattern, 0, len(patterns))
	for _, p := range patterns {
		c, err := compilePattern(p)
		if err != nil {
			return nil, fmt.Errorf("output pattern %q: %w", p, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func compilePattern(p string) (pattern, error) {
	switch {
	case strings.TrimSpace(p) == "":
		return nil, errors.New("empty")
	case strings.HasPrefix(p, "/") || filepath.IsAbs(p):
		return nil, errors.New("absolute: patterns are relative to the output directory")
	}
	clean := path.Clean(p) // "./a//b" is "a/b"
	if strings.HasSuffix(p, "/") && clean != "." {
		clean += "/**" // "logs/": everything under logs
	}
	if clean == "." {
		return nil, errors.New("matches the directory itself, not files in it: use \"*\" or \"**\"")
	}
	segs := strings.Split(clean, "/")
	for _, seg := range segs {
		if seg == ".." {
			return nil, errors.New(`".." leads out of the output directory`)
		}
		if seg == "**" {
			continue
		}
		if strings.Contains(seg, "**") {
			return nil, errors.New(`"**" must be a whole path segment, as in "**/*.pt"`)
		}
		if _, err := path.Match(seg, ""); err != nil {
			return nil, fmt.Errorf("segment %q: %w", seg, err)
		}
	}
	return segs, nil
}

func matchAny(pats []pattern, rel string) bool {
	segs := strings.Split(rel, "/")
	for _, p := range pats {
		if matchSegs(p, segs) {
			return true
		}
	}
	return false
}

// matchSegs matches path segments against pattern segments, "**" taking zero or more.
func matchSegs(p pattern, segs []string) bool {
	for len(p) > 0 {
		if p[0] == "**" {
			for len(p) > 0 && p[0] == "**" {
				p = p[1:]
			}
			if len(p) == 0 { // a trailing "**": something under the directory, not the directory
				return len(segs) > 0
			}
			for i := range segs {
				if matchSegs(p, segs[i:]) {
					return true
				}
			}
			return false
		}
		if len(segs) == 0 {
			return false
		}
		if ok, _ := path.Match(p[0], segs[0]); !ok {
			return false
		}
		p, segs = p[1:], segs[1:]
	}
	return len(segs) == 0
}

// Select returns the objects whose Name matches one of the glob patterns, in PutDir's syntax;
// no patterns selects them all.
func Select(objs []Object, patterns []string) ([]Object, error) {
	if len(patterns) == 0 {
		return objs, nil
	}
	pats, err := compilePatterns(patterns)
	if err != nil {
		return nil, err
	}
	var out []Object
	for _, o := range objs {
		if matchAny(pats, o.Name) {
			out = append(out, o)
		}
	}
	return out, nil
}
