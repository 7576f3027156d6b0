package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// The directory store keeps an object's bytes at DIR/objects/KEY, so they can be looked at with
// ls, and its size and sha256 in a sidecar at DIR/meta/KEY, so List does not rehash. Both are
// written as a temporary file in DIR/tmp, fsynced and renamed into place, the object first: a
// reader sees an old object or a new one whole, never part of one.
//
// The sidecar also records the object file's inode. A crash between the two renames leaves a
// new object with the old sidecar (or none): its inode differs, so the store hashes the object
// again and rewrites the sidecar. An object whose inode matches but whose bytes changed in place
// is corrupt, and keeps its recorded size and sha256, so downloads detect it.
type dirStore struct {
	root string // absolute
}

const (
	dirObjects = "objects"
	dirMeta    = "meta"
	dirTmp     = "tmp"
	fileMode   = 0o640
	dirMode    = 0o750
	// staleTmp: temporary files older than this are leftovers of a crashed writer.
	staleTmp = 24 * time.Hour
)

var errNotDir = syscall.ENOTDIR

type sidecar struct {
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Inode  uint64 `json:"inode"`
}

func openDir(root string) (*dirStore, error) {
	d := &dirStore{root: root}
	for _, sub := range []string{dirObjects, dirMeta, dirTmp} {
		if err := os.MkdirAll(filepath.Join(root, sub), dirMode); err != nil {
			return nil, fmt.Errorf("artifact store %s: %w", d, err)
		}
	}
	probe, err := os.CreateTemp(filepath.Join(root, dirTmp), "probe-*")
	if err != nil {
		return nil, fmt.Errorf("artifact store %s: not writable: %w", d, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	d.sweepTmp()
	return d, nil
}

func (d *dirStore) String() string { return "file://" + d.root }

// sweepTmp removes what crashed writers left in tmp/; a file younger than staleTmp may belong to a
// writer in another process, and is left alone.
func (d *dirStore) sweepTmp() {
	entries, err := os.ReadDir(filepath.Join(d.root, dirTmp))
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleTmp {
			os.Remove(filepath.Join(d.root, dirTmp, e.Name()))
		}
	}
}

func (d *dirStore) objPath(key string) string {
	return filepath.Join(d.root, dirObjects, filepath.FromSlash(key))
}

func (d *dirStore) metaPath(key string) string {
	return filepath.Join(d.root, dirMeta, filepath.FromSlash(key))
}

func (d *dirStore) Put(ctx context.Context, key string, r io.Reader) (Object, error) {
	if err := checkKey(key); err != nil {
		return Object{}, err
	}
	tmp, err := os.CreateTemp(filepath.Join(d.root, dirTmp), "put-*")
	if err != nil {
		return Object{}, storeErr(d.String(), "put", key, err)
	}
	defer func() { // after a successful rename there is nothing left to remove
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	hr := newHashingReader(ctxReader{ctx, r})
	if _, err := io.Copy(tmp, hr); err != nil {
		return Object{}, storeErr(d.String(), "put", key, err)
	}
	if err := tmp.Chmod(fileMode); err != nil {
		return Object{}, storeErr(d.String(), "put", key, err)
	}
	if err := tmp.Sync(); err != nil {
		return Object{}, storeErr(d.String(), "put", key, err)
	}
	fi, err := tmp.Stat()
	if err != nil {
		return Object{}, storeErr(d.String(), "put", key, err)
	}
	obj := Object{Key: key, Name: key, Size: hr.n, SHA256: hr.sum()}
	if err := d.install(tmp.Name(), d.objPath(key), key); err != nil {
		return Object{}, err
	}
	if err := d.writeMeta(key, sidecar{Size: obj.Size, SHA256: obj.SHA256, Inode: inode(fi)}); err != nil {
		// The object is in place; its sidecar will be rebuilt from its bytes when next read.
		return Object{}, storeErr(d.String(), "put", key, err)
	}
	return obj, nil
}

// install renames the finished temporary file tmp to path, creating its directories, and syncs
// the directory so the rename survives a crash.
func (d *dirStore) install(tmp, path, key string) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		if isNotExist(err) || errors.Is(err, syscall.EEXIST) {
			return storeErr(d.String(), "put", key, fmt.Errorf("a parent of it is an object itself: %w", err))
		}
		return storeErr(d.String(), "put", key, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		if fi, serr := os.Stat(path); serr == nil && fi.IsDir() {
			return storeErr(d.String(), "put", key, errors.New("other objects have keys under it, so it cannot be an object"))
		}
		return storeErr(d.String(), "put", key, err)
	}
	return syncDir(dir)
}

func (d *dirStore) writeMeta(key string, m sidecar) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(d.root, dirTmp), "meta-*")
	if err != nil {
		return err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if _, err := tmp.Write(b); err != nil {
		return err
	}
	if err := tmp.Chmod(fileMode); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	return d.install(tmp.Name(), d.metaPath(key), key)
}

func (d *dirStore) readMeta(key string) (sidecar, error) {
	var m sidecar
	b, err := os.ReadFile(d.metaPath(key))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, err
	}
	if len(m.SHA256) != 2*sha256.Size {
		return m, errors.New("sidecar without a sha256")
	}
	return m, nil
}

// object describes the object file f (whose FileInfo is fi) under key, from its sidecar when the
// sidecar belongs to this file, else by hashing it (and rewriting the sidecar).
func (d *dirStore) object(key string, f *os.File, fi os.FileInfo) (Object, error) {
	ino := inode(fi)
	if m, err := d.readMeta(key); err == nil && m.Inode == ino {
		// The same file as when it was stored: what was recorded then stands, even if its bytes
		// changed since (the verifier reports that when they are read).
		return Object{Key: key, Name: key, Size: m.Size, SHA256: m.SHA256}, nil
	}
	h := sha256.New()
	n, err := io.Copy(h, io.NewSectionReader(f, 0, fi.Size()))
	if err != nil {
		return Object{}, storeErr(d.String(), "read", key, err)
	}
	obj := Object{Key: key, Name: key, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}
	_ = d.writeMeta(key, sidecar{Size: obj.Size, SHA256: obj.SHA256, Inode: ino}) // a cache: best effort
	return obj, nil
}

func (d *dirStore) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	if err := checkKey(key); err != nil {
		return nil, Object{}, err
	}
	f, err := os.Open(d.objPath(key))
	if err != nil {
		if isNotExist(err) {
			return nil, Object{}, storeErr(d.String(), "get", key, ErrNotFound)
		}
		return nil, Object{}, storeErr(d.String(), "get", key, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = ErrNotFound // a directory: objects under key/, none at key
	}
	var obj Object
	if err == nil {
		obj, err = d.object(key, f, fi)
	}
	if err != nil {
		f.Close()
		return nil, Object{}, storeErr(d.String(), "get", key, err)
	}
	return newVerifier(f, obj), obj, nil
}

func (d *dirStore) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	var objs []Object
	err := d.walk(dirObjects, prefix, func(key, path string, de fs.DirEntry) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if !de.Type().IsRegular() {
			return nil
		}
		obj, err := d.describe(key, path)
		if isNotExist(err) {
			return nil // deleted while listing
		}
		if err != nil {
			return err
		}
		obj.Name, _ = underPrefix(key, prefix)
		objs = append(objs, obj)
		return nil
	}, nil)
	if err != nil {
		return nil, fmt.Errorf("artifact store %s: list %s: %w", d, prefix, err)
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	return objs, nil
}

// describe is object for a file not yet open: the sidecar alone when it matches, which is the
// usual case, so listing reads no object's bytes.
func (d *dirStore) describe(key, path string) (Object, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Object{}, err
	}
	if m, err := d.readMeta(key); err == nil && m.Inode == inode(fi) {
		return Object{Key: key, Name: key, Size: m.Size, SHA256: m.SHA256}, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return Object{}, err
	}
	defer f.Close()
	return d.object(key, f, fi)
}

// walk calls fn for every file in the tree sub (objects or meta) whose key starts with prefix,
// descending only into directories that can hold such keys.
// onDir, when not nil, is told each directory it descends into.
func (d *dirStore) walk(sub, prefix string, fn func(key, path string, de fs.DirEntry) error, onDir func(path string)) error {
	top := filepath.Join(d.root, sub)
	start := top
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = filepath.Join(top, filepath.FromSlash(prefix[:i]))
	}
	err := filepath.WalkDir(start, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			if path == start && isNotExist(err) {
				return fs.SkipAll
			}
			if isNotExist(err) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(top, path)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if de.IsDir() {
			if path == start || strings.HasPrefix(key+"/", prefix) || strings.HasPrefix(prefix, key+"/") {
				if onDir != nil {
					onDir(path)
				}
				return nil
			}
			return fs.SkipDir
		}
		if !strings.HasPrefix(key, prefix) {
			return nil
		}
		return fn(key, path, de)
	})
	if errors.Is(err, fs.SkipAll) {
		return nil
	}
	return err
}

func (d *dirStore) Delete(ctx context.Context, prefix string) error {
	if prefix == "" {
		return fmt.Errorf("artifact store %s: delete: an empty prefix would delete every object", d)
	}
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	// Objects first, then sidecars (including those a crash left without an object).
	for _, sub := range []string{dirObjects, dirMeta} {
		var dirs []string
		err := d.walk(sub, prefix, func(key, path string, de fs.DirEntry) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := os.Remove(path); err != nil && !isNotExist(err) {
				return err
			}
			return nil
		}, func(dir string) { dirs = append(dirs, dir) })
		if err != nil {
			return fmt.Errorf("artifact store %s: delete %s: %w", d, prefix, err)
		}
		d.prune(filepath.Join(d.root, sub), dirs)
	}
	return nil
}

// prune removes the directories in dirs, and their parents below top, that are empty now.
func (d *dirStore) prune(top string, dirs []string) {
	sort.Sort(sort.Reverse(sort.StringSlice(dirs))) // deepest first
	for _, dir := range dirs {
		for dir != top && strings.HasPrefix(dir, top+string(filepath.Separator)) {
			if os.Remove(dir) != nil { // not empty (or gone): its parents are not empty either
				break
			}
			dir = filepath.Dir(dir)
		}
	}
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) { // some file systems cannot
		return err
	}
	return nil
}
