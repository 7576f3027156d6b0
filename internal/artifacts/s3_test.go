package artifacts

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/gpujobs/gpujobs/internal/testutil"
)

// s3Env is the real S3 server the tests use: scripts/seaweedfs.sh start, then
// eval "$(scripts/seaweedfs.sh env)" (make test does both). Without it the S3 tests skip, unless
// GPUJOBS_S3_REQUIRED=1 (make test sets it) makes that a failure.
type s3Env struct{ endpoint, region, bucket string }

func requireS3(t *testing.T) s3Env {
	t.Helper()
	e := s3Env{os.Getenv("GPUJOBS_S3_ENDPOINT"), os.Getenv("GPUJOBS_S3_REGION"), os.Getenv("GPUJOBS_S3_TEST_BUCKET")}
	if e.bucket == "" {
		e.bucket = "gpujobs-test"
	}
	if e.endpoint == "" || os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		msg := `no S3 server: run scripts/seaweedfs.sh start; eval "$(scripts/seaweedfs.sh env)"`
		if os.Getenv("GPUJOBS_S3_REQUIRED") == "1" {
			t.Fatal(msg + " (GPUJOBS_S3_REQUIRED=1)")
		}
		t.Skip(msg)
	}
	return e
}

func (e s3Env) config(prefix string) Config {
	return Config{URL: "s3://" + e.bucket + "/" + prefix, Endpoint: e.endpoint, Region: e.region}
}

func openS3Store(t *testing.T) storeUnderTest {
	t.Helper()
	e := requireS3(t)
	st, err := Open(context.Background(), e.config("conformance-"+randomHex(4)))
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*s3Store)
	return storeUnderTest{store: s, corrupt: func(t *testing.T, key string) {
		// Other bytes of the same length under the key, keeping the recorded sha256, as a
		// replaced or damaged object would be.
		ctx := context.Background()
		full := s.prefix + key
		head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &full})
		if err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte{'!'}, int(aws.ToInt64(head.ContentLength)))
		if _, err := s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: &s.bucket, Key: &full,
			Body: bytes.NewReader(data), Metadata: head.Metadata}); err != nil {
			t.Fatal(err)
		}
	}}
}

func TestS3Store(t *testing.T) { testStore(t, openS3Store) }

// Above the part size an object goes up in parts, and keeps its sha256 in the metadata.
func TestS3Multipart(t *testing.T) {
	e := requireS3(t)
	ctx := context.Background()
	st, err := Open(ctx, e.config("multipart-"+randomHex(4)))
	if err != nil {
		t.Fatal(err)
	}
	s := st.(*s3Store)
	s.partSize = 5 << 20 // S3's smallest part
	const size = 12<<20 + 12345
	data := randomBytes(9, size)
	// From a file (hashed where it lies) and from a stream (spooled): both in 3 parts.
	path := filepath.Join(t.TempDir(), "big.bin")
	must(t, os.WriteFile(path, data, 0o644))
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, in := range []struct {
		key string
		r   interface{ Read([]byte) (int, error) }
	}{{"from-file.bin", f}, {"from-stream.bin", bytes.NewBuffer(data)}} {
		obj, err := s.Put(ctx, in.key, in.r)
		if err != nil {
			t.Fatal(err)
		}
		if obj.Size != size || obj.SHA256 != sha(data) {
			t.Fatalf("Put %s = %+v", in.key, obj)
		}
		full := s.prefix + in.key
		head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &full})
		if err != nil {
			t.Fatal(err)
		}
		if etag := strings.Trim(aws.ToString(head.ETag), `"`); !strings.HasSuffix(etag, "-3") {
			t.Errorf("%s: ETag %s, want a 3-part upload's (suffix -3)", in.key, etag)
		}
		if head.Metadata[metaSHA256] != sha(data) {
			t.Errorf("%s: x-amz-meta-sha256 = %q, want %s", in.key, head.Metadata[metaSHA256], sha(data))
		}
		if got, _ := readObject(t, s, in.key); !bytes.Equal(got, data) {
			t.Errorf("%s: the downloaded bytes differ", in.key)
		}
	}
	if err := s.Delete(ctx, "from-"); err != nil {
		t.Fatal(err)
	}
}

// Stores with different URL prefixes in one bucket do not see each other's objects, and a
// bucket that does not exist yet is created.
func TestS3URLPrefixAndNewBucket(t *testing.T) {
	e := requireS3(t)
	ctx := context.Background()
	a, err := Open(ctx, e.config("tenant-a-"+randomHex(4)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, e.config("tenant-b-"+randomHex(4)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Put(ctx, OutputPrefix("job-1")+"x", strings.NewReader("a's")); err != nil {
		t.Fatal(err)
	}
	if objs, _ := b.List(ctx, OutputPrefix("job-1")); len(objs) != 0 {
		t.Errorf("store b lists store a's objects: %+v", objs)
	}
	if _, _, err := b.Get(ctx, OutputPrefix("job-1")+"x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("store b gets store a's object: %v", err)
	}
	fresh := e
	fresh.bucket = "gpujobs-new-" + randomHex(4)
	c, err := Open(ctx, fresh.config(""))
	if err != nil {
		t.Fatalf("Open of a new bucket: %v", err)
	}
	if objs, err := c.List(ctx, ""); err != nil || len(objs) != 0 {
		t.Errorf("a new bucket lists %+v, %v", objs, err)
	}
}

// Credentials: a file (a mounted secret, in either form) works as the environment does; wrong
// ones fail at Open with one line saying to check them.
func TestS3Credentials(t *testing.T) {
	e := requireS3(t)
	ctx := context.Background()
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	dir := t.TempDir()
	envFile := filepath.Join(dir, "env")
	must(t, os.WriteFile(envFile, []byte("# from a secret\nAWS_ACCESS_KEY_ID="+id+"\nAWS_SECRET_ACCESS_KEY=\""+secret+"\"\n"), 0o600))
	iniFile := filepath.Join(dir, "credentials")
	must(t, os.WriteFile(iniFile, []byte("[default]\naws_access_key_id = "+id+"\naws_secret_access_key = "+secret+"\n"), 0o600))
	secretDir := filepath.Join(dir, "mounted-secret") // a Kubernetes Secret volume: a file per key
	must(t, os.MkdirAll(secretDir, 0o700))
	must(t, os.WriteFile(filepath.Join(secretDir, "AWS_ACCESS_KEY_ID"), []byte(id), 0o600))
	must(t, os.WriteFile(filepath.Join(secretDir, "AWS_SECRET_ACCESS_KEY"), []byte(secret+"\n"), 0o600))
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	for _, f := range []string{envFile, iniFile, secretDir} {
		t.Setenv(CredentialsFileEnv, f)
		s, err := Open(ctx, e.config("creds"))
		if err != nil {
			t.Errorf("credentials from %s: %v", filepath.Base(f), err)
			continue
		}
		if _, err := s.List(ctx, "nothing/"); err != nil {
			t.Errorf("List with credentials from %s: %v", filepath.Base(f), err)
		}
	}
	t.Setenv(CredentialsFileEnv, "")
	t.Setenv("AWS_ACCESS_KEY_ID", id)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret+"wrong")
	_, err := Open(ctx, e.config("creds"))
	if err == nil || !strings.Contains(err.Error(), "check the S3 credentials") || strings.Contains(err.Error(), "\n") {
		t.Errorf("Open with a wrong secret: %v, want one line saying to check the credentials", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "GJNOSUCHKEY0000000")
	if _, err := Open(ctx, e.config("creds")); err == nil || !strings.Contains(err.Error(), "check the S3 credentials") {
		t.Errorf("Open with an unknown key: %v", err)
	}
}

// Without credentials, with half of them, with a bad credentials file or an endpoint nobody
// answers on, Open fails at once with one line that says what to set. No server needed.
func TestS3OpenWithoutCredentials(t *testing.T) {
	ctx := context.Background()
	cfg := Config{URL: "s3://bucket/prefix", Endpoint: "http://" + testutil.FreeAddr(t)}
	dir := t.TempDir()
	partial := filepath.Join(dir, "partial")
	os.WriteFile(partial, []byte("AWS_ACCESS_KEY_ID=abc\n"), 0o600)
	garbled := filepath.Join(dir, "garbled")
	os.WriteFile(garbled, []byte("this is not a credentials file\n"), 0o600)
	for _, tt := range []struct {
		name             string
		id, secret, file string
		want             string
	}{
		{"none", "", "", "", "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or GPUJOBS_S3_CREDENTIALS_FILE"},
		{"no secret", "abc", "", "", "AWS_SECRET_ACCESS_KEY is not"},
		{"no id", "", "abc", "", "AWS_ACCESS_KEY_ID is not"},
		{"missing file", "", "", filepath.Join(dir, "absent"), "no such file"},
		{"partial file", "", "", partial, "want both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
		{"garbled file", "", "", garbled, "line 1: want KEY=VALUE"},
		{"empty secret directory", "", "", dir, "want files AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
		{"unreachable", "abc", "def", "", "cannot reach the S3 endpoint " + cfg.Endpoint},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("AWS_ACCESS_KEY_ID", tt.id)
			t.Setenv("AWS_SECRET_ACCESS_KEY", tt.secret)
			t.Setenv(CredentialsFileEnv, tt.file)
			_, err := Open(ctx, cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("Open: %v\nwant one line containing %q", err, tt.want)
			}
			if err != nil && !strings.HasPrefix(err.Error(), "artifact store s3://bucket/prefix: ") {
				t.Errorf("the error does not name the store: %v", err)
			}
		})
	}
	cfg.Endpoint = "ftp://x"
	t.Setenv("AWS_ACCESS_KEY_ID", "a")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "b")
	if _, err := Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), "want an http:// or https:// URL") {
		t.Errorf("Open with an ftp endpoint: %v", err)
	}
}
