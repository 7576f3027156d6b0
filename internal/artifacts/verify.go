package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
)

// verifier passes an object's bytes through and, at their end, checks their size and sha256
// against the object's: a mismatch is returned instead of io.EOF, so a reader that copies to the
// end cannot miss it.
type verifier struct {
	r    io.Reader
	c    io.Closer
	obj  Object
	h    hash.Hash
	n    int64
	done error // the verdict, once EOF was reached
}

func newVerifier(rc io.ReadCloser, obj Object) *verifier {
	return &verifier{r: rc, c: rc, obj: obj, h: sha256.New()}
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.done != nil {
		return 0, v.done
	}
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.obj.Size {
		v.done = fmt.Errorf("%w: %s: more than its recorded %d bytes", ErrCorrupt, v.obj.Key, v.obj.Size)
		return n, v.done
	}
	if err == io.EOF {
		v.done = io.EOF
		if v.n != v.obj.Size {
			v.done = fmt.Errorf("%w: %s: %d bytes, %d recorded", ErrCorrupt, v.obj.Key, v.n, v.obj.Size)
		} else if got := hex.EncodeToString(v.h.Sum(nil)); v.obj.SHA256 != "" && got != v.obj.SHA256 {
			v.done = fmt.Errorf("%w: %s: sha256 %s, %s recorded", ErrCorrupt, v.obj.Key, got, v.obj.SHA256)
		}
		return n, v.done
	}
	return n, err
}

func (v *verifier) Close() error { return v.c.Close() }

// hashingReader hashes and counts what passes through it.
type hashingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func newHashingReader(r io.Reader) *hashingReader { return &hashingReader{r: r, h: sha256.New()} }

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	return n, err
}

func (h *hashingReader) sum() string { return hex.EncodeToString(h.h.Sum(nil)) }

// ctxReader stops a long copy when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
