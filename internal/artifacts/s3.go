package artifacts

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"
)

// The S3 store keeps an object under s3://BUCKET/PREFIX/KEY with its sha256 in the object's
// metadata (x-amz-meta-sha256). S3 takes metadata before the bytes, so Put knows the sha256
// first: a regular file is hashed where it lies and then sent, checking afterwards that it did
// not change meanwhile; any other reader is spooled to a temporary file while it is hashed.
// Objects above partSize go up as multipart uploads, partSize at a time, each part read straight
// from the file (nothing buffered in memory).
type s3Store struct {
	client   *s3.Client
	bucket   string
	prefix   string // "" or ending in "/"
	url      string // for messages
	endpoint string
	partSize int64
	parallel int // parts (and HEAD requests of List) in flight at once
}

const (
	metaSHA256      = "sha256" // x-amz-meta-sha256
	defaultPartSize = 16 << 20
	maxParts        = 10000 // S3's limit
	openTimeout     = 20 * time.Second
)

func openS3(ctx context.Context, c Config, u *url.URL) (*s3Store, error) {
	name := "s3://" + u.Host + u.Path
	if u.Host == "" {
		return nil, fmt.Errorf("artifact store %s: no bucket: want s3://bucket/optional/prefix", c.URL)
	}
	if !validBucket(u.Host) {
		return nil, fmt.Errorf("artifact store %s: bucket name %q: want 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit", c.URL, u.Host)
	}
	if u.RawQuery != "" || u.User != nil {
		return nil, fmt.Errorf("artifact store %s: want s3://bucket/optional/prefix, without credentials or query (credentials come from the environment)", name)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		if err := checkPath(prefix); err != nil {
			return nil, fmt.Errorf("artifact store %s: prefix %q: %v", name, prefix, err)
		}
		prefix += "/"
	}
	creds, err := credentialsFromEnv()
	if err != nil {
		return nil, fmt.Errorf("artifact store %s: %w", name, err)
	}
	region := c.Region
	if region == "" {
		region = os.Getenv("AWS_REGION")
	}
	if region == "" {
		region = "us-east-1"
	}
	opts := s3.Options{
		Region:      region,
		Credentials: creds,
		// Checksums only where the API requires them: S3-compatible servers differ in which
		// of the newer flexible checksums they take, and the sha256 is verified end to end anyway.
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	}
	if c.Endpoint != "" {
		ep, err := url.Parse(c.Endpoint)
		if err != nil || (ep.Scheme != "http" && ep.Scheme != "https") || ep.Host == "" {
			return nil, fmt.Errorf("artifact store %s: S3 endpoint %q: want an http:// or https:// URL such as http://127.0.0.1:8333", name, c.Endpoint)
		}
		opts.BaseEndpoint = aws.String(c.Endpoint)
		// S3-compatible servers (SeaweedFS, Ceph, ...) take the bucket in the path, not as a
		// DNS name; AWS itself takes both.
		opts.UsePathStyle = true
	}
	s := &s3Store{
		client:   s3.New(opts),
		bucket:   u.Host,
		prefix:   prefix,
		url:      name,
		endpoint: c.Endpoint,
		partSize: defaultPartSize,
		parallel: 4,
	}
	if s.endpoint == "" {
		s.endpoint = "AWS S3 (" + region + ")"
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *s3Store) String() string { return s.url }

// check makes sure the bucket exists (creating it when it does not and the credentials may),
// answers to the credentials, and takes a write.
func (s *s3Store) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.bucket})
	if httpStatus(err) == 404 {
		if _, cerr := s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.bucket}); cerr != nil {
			var owned *types.BucketAlreadyOwnedByYou
			if !errors.As(cerr, &owned) {
				return fmt.Errorf("artifact store %s: bucket %s does not exist, and creating it failed: %w", s, s.bucket, s.explain(cerr))
			}
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("artifact store %s: %w", s, s.explain(err))
	}
	probe := s.prefix + ".gpujobs-probe/" + randomHex(8)
	if _, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &probe, Body: strings.NewReader("probe")}); err != nil {
		return fmt.Errorf("artifact store %s: not writable: %w", s, s.explain(err))
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &probe}); err != nil {
		return fmt.Errorf("artifact store %s: cannot delete: %w", s, s.explain(err))
	}
	return nil
}

func (s *s3Store) Put(ctx context.Context, key string, r io.Reader) (Object, error) {
	if err := checkKey(key); err != nil {
		return Object{}, err
	}
	if f, ok := r.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			return s.putFile(ctx, key, f, fi)
		}
	}
	tmp, err := os.CreateTemp("", "gpujobs-upload-*")
	if err != nil {
		return Object{}, storeErr(s.url, "put", key, fmt.Errorf("spool: %w", err))
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	hr := newHashingReader(ctxReader{ctx, r})
	if _, err := io.Copy(tmp, hr); err != nil {
		return Object{}, storeErr(s.url, "put", key, err)
	}
	obj := Object{Key: key, Name: key, Size: hr.n, SHA256: hr.sum()}
	if err := s.upload(ctx, obj, tmp, 0); err != nil {
		return Object{}, storeErr(s.url, "put", key, err)
	}
	return obj, nil
}

// putFile sends the rest of the regular file f, from its current offset: hashed first, then
// uploaded, then checked to be unchanged.
func (s *s3Store) putFile(ctx context.Context, key string, f *os.File, fi os.FileInfo) (Object, error) {
	off, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return Object{}, storeErr(s.url, "put", key, err)
	}
	hr := newHashingReader(ctxReader{ctx, io.NewSectionReader(f, off, fi.Size()-off)})
	if _, err := io.Copy(io.Discard, hr); err != nil {
		return Object{}, storeErr(s.url, "put", key, err)
	}
	obj := Object{Key: key, Name: key, Size: hr.n, SHA256: hr.sum()}
	if err := s.upload(ctx, obj, f, off); err != nil {
		return Object{}, storeErr(s.url, "put", key, err)
	}
	after, err := f.Stat()
	if err == nil && (after.Size() != fi.Size() || !after.ModTime().Equal(fi.ModTime())) {
		err = fmt.Errorf("%s changed while it was uploaded (size %d -> %d): upload it again once it is complete", f.Name(), fi.Size(), after.Size())
	}
	if err != nil {
		s.deleteKeys(context.WithoutCancel(ctx), []string{s.prefix + key})
		return Object{}, storeErr(s.url, "put", key, err)
	}
	if _, err := f.Seek(off+obj.Size, io.SeekStart); err != nil { // as if r had been read to its end
		return Object{}, storeErr(s.url, "put", key, err)
	}
	return obj, nil
}

// upload sends obj.Size bytes of ra from off, in one request or as a multipart upload.
func (s *s3Store) upload(ctx context.Context, obj Object, ra io.ReaderAt, off int64) error {
	full := s.prefix + obj.Key
	meta := map[string]string{metaSHA256: obj.SHA256}
	ctype := "application/octet-stream"
	if obj.Size <= s.partSize {
		_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
			Bucket: &s.bucket, Key: &full, Body: io.NewSectionReader(ra, off, obj.Size),
			ContentLength: aws.Int64(obj.Size), Metadata: meta, ContentType: &ctype,
		})
		return s.explain(err)
	}
	part := s.partSize
	if need := (obj.Size + maxParts - 1) / maxParts; need > part {
		part = (need + 1<<20 - 1) &^ (1<<20 - 1) // whole MiB
	}
	mp, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: &full, Metadata: meta, ContentType: &ctype,
	})
	if err != nil {
		return s.explain(err)
	}
	n := int((obj.Size + part - 1) / part)
	parts := make([]types.CompletedPart, n)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.parallel)
	for i := range n {
		g.Go(func() error {
			start := int64(i) * part
			size := min(part, obj.Size-start)
			num := int32(i + 1)
			out, err := s.client.UploadPart(gctx, &s3.UploadPartInput{
				Bucket: &s.bucket, Key: &full, UploadId: mp.UploadId, PartNumber: &num,
				Body: io.NewSectionReader(ra, off+start, size), ContentLength: aws.Int64(size),
			})
			if err != nil {
				return fmt.Errorf("part %d of %d: %w", num, n, s.explain(err))
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: &num}
			return nil
		})
	}
	err = g.Wait()
	if err == nil {
		_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &s.bucket, Key: &full, UploadId: mp.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		err = s.explain(err)
	}
	if err != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &full, UploadId: mp.UploadId})
		return err
	}
	return nil
}

func (s *s3Store) Get(ctx context.Context, key string) (io.ReadCloser, Object, error) {
	if err := checkKey(key); err != nil {
		return nil, Object{}, err
	}
	full := s.prefix + key
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &full})
	if err != nil {
		return nil, Object{}, storeErr(s.url, "get", key, s.notFound(err))
	}
	obj := Object{Key: key, Name: key, Size: aws.ToInt64(out.ContentLength), SHA256: out.Metadata[metaSHA256]}
	return newVerifier(out.Body, obj), obj, nil
}

func (s *s3Store) List(ctx context.Context, prefix string) ([]Object, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, err
	}
	keys, sizes, err := s.listKeys(ctx, prefix)
	if err != nil {
		return nil, err
	}
	// ListObjects returns no metadata: the sha256 of each object is in its HEAD.
	objs := make([]Object, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2 * s.parallel)
	var mu sync.Mutex
	var gone []int
	for i, k := range keys {
		g.Go(func() error {
			full := s.prefix + k
			out, err := s.client.HeadObject(gctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &full})
			if err != nil {
				if errors.Is(s.notFound(err), ErrNotFound) { // deleted while listing
					mu.Lock()
					gone = append(gone, i)
					mu.Unlock()
					return nil
				}
				return fmt.Errorf("head %s: %w", k, s.explain(err))
			}
			name, _ := underPrefix(k, prefix)
			size := sizes[i]
			if out.ContentLength != nil {
				size = *out.ContentLength
			}
			objs[i] = Object{Key: k, Name: name, Size: size, SHA256: out.Metadata[metaSHA256]}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("artifact store %s: list %s: %w", s, prefix, err)
	}
	if len(gone) > 0 {
		sort.Ints(gone)
		for j := len(gone) - 1; j >= 0; j-- {
			objs = append(objs[:gone[j]], objs[gone[j]+1:]...)
		}
	}
	return objs, nil
}

// listKeys lists the keys (relative to the store's prefix) under prefix, sorted, with sizes.
func (s *s3Store) listKeys(ctx context.Context, prefix string) ([]string, []int64, error) {
	full := s.prefix + prefix
	var keys []string
	var sizes []int64
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &full})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("artifact store %s: list %s: %w", s, prefix, s.explain(err))
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if strings.HasSuffix(k, "/") || !strings.HasPrefix(k, prefix) {
				continue // a "directory" marker some servers list
			}
			keys = append(keys, k)
			sizes = append(sizes, aws.ToInt64(o.Size))
		}
	}
	// S3 lists in UTF-8 byte order already; some S3-compatible servers do not.
	idx := make([]int, len(keys))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return keys[idx[a]] < keys[idx[b]] })
	sk, ss := make([]string, len(keys)), make([]int64, len(keys))
	for i, j := range idx {
		sk[i], ss[i] = keys[j], sizes[j]
	}
	return sk, ss, nil
}

func (s *s3Store) Delete(ctx context.Context, prefix string) error {
	if prefix == "" {
		return fmt.Errorf("artifact store %s: delete: an empty prefix would delete every object", s)
	}
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	keys, _, err := s.listKeys(ctx, prefix)
	if err != nil {
		return err
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = s.prefix + k
	}
	if err := s.deleteKeys(ctx, full); err != nil {
		return fmt.Errorf("artifact store %s: delete %s: %w", s, prefix, err)
	}
	return nil
}

// deleteKeys deletes full keys, 1000 to a request (S3's limit).
func (s *s3Store) deleteKeys(ctx context.Context, keys []string) error {
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		ids := make([]types.ObjectIdentifier, len(batch))
		for i := range batch {
			ids[i] = types.ObjectIdentifier{Key: &batch[i]}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &s.bucket, Delete: &types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return s.explain(err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("%d of %d objects not deleted, e.g. %s: %s %s", len(out.Errors), len(batch),
				aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
		}
	}
	return nil
}

// notFound turns S3's missing-key answers into ErrNotFound.
func (s *s3Store) notFound(err error) error {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) || httpStatus(err) == 404 {
		return ErrNotFound
	}
	return s.explain(err)
}

// explain makes the SDK's error one short line that says what to do, keeping it as the cause.
// The SDK's own text ("operation error S3: HeadBucket, exceeded maximum number of attempts, 3,
// https response error StatusCode: 0, RequestID: ...") says little to a user.
func (s *s3Store) explain(err error) error {
	if err == nil {
		return nil
	}
	var ee *explained
	if errors.As(err, &ee) {
		return err
	}
	var msg string
	var apiErr smithy.APIError
	var opErr *net.OpError
	status := httpStatus(err)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return err
	case errors.As(err, &opErr):
		msg = fmt.Sprintf("cannot reach the S3 endpoint %s: %v", s.endpoint, opErr)
	case status == 403 || (errors.As(err, &apiErr) && isAuthCode(apiErr.ErrorCode())):
		code := "access denied"
		if apiErr != nil && apiErr.ErrorCode() != "" {
			code = apiErr.ErrorCode()
		}
		msg = fmt.Sprintf("%s (HTTP %d) at %s: check the S3 credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or %s) and that they may use bucket %s",
			code, status, s.endpoint, CredentialsFileEnv, s.bucket)
	case errors.As(err, &apiErr):
		msg = fmt.Sprintf("%s (HTTP %d): %s", apiErr.ErrorCode(), status, apiErr.ErrorMessage())
	default:
		return err
	}
	return &explained{msg: msg, err: err}
}

type explained struct {
	msg string
	err error
}

func (e *explained) Error() string { return e.msg }
func (e *explained) Unwrap() error { return e.err }

func isAuthCode(code string) bool {
	switch code {
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden", "InvalidToken", "ExpiredToken":
		return true
	}
	return false
}

func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// validBucket applies S3's bucket naming rules (which S3-compatible servers share).
func validBucket(b string) bool {
	if len(b) < 3 || len(b) > 63 || strings.Contains(b, "..") {
		return false
	}
	for i, r := range b {
		alnum := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		if !alnum && (i == 0 || i == len(b)-1 || (r != '-' && r != '.')) {
			return false
		}
	}
	return true
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
