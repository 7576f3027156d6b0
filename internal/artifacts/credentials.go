package artifacts

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// CredentialsFileEnv names a file holding the S3 key pair, or a directory holding one file per
// key, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and optionally AWS_SESSION_TOKEN): what a
// Kubernetes Secret with those keys looks like mounted as a volume. A file takes either form:
//
//	AWS_ACCESS_KEY_ID=...            [default]
//	AWS_SECRET_ACCESS_KEY=...        aws_access_key_id = ...
//	                                 aws_secret_access_key = ...
//
// (an env file, or AWS's shared credentials file with one profile), and an optional session
// token (AWS_SESSION_TOKEN / aws_session_token). It is read again every few minutes, so a
// rotated secret is picked up without a restart.
const CredentialsFileEnv = "GPUJOBS_S3_CREDENTIALS_FILE"

// credentialsReread is how long credentials read from a file are used before it is read again.
const credentialsReread = 5 * time.Minute

// errNoCredentials: neither the environment nor a credentials file gives a key pair.
var errNoCredentials = errors.New("no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, " +
	"or " + CredentialsFileEnv + " to a file holding them (e.g. a mounted secret)")

// credentialsFromEnv returns the provider for the credentials the environment gives, checking
// them once now so that a missing or unreadable one is an error at Open, not at the first upload.
func credentialsFromEnv() (aws.CredentialsProvider, error) {
	if path := os.Getenv(CredentialsFileEnv); path != "" {
		p := fileCredentials(path)
		if _, err := p.Retrieve(context.Background()); err != nil {
			return nil, err
		}
		return aws.NewCredentialsCache(p), nil
	}
	id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	switch {
	case id == "" && secret == "":
		return nil, errNoCredentials
	case id == "":
		return nil, errors.New("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both")
	case secret == "":
		return nil, errors.New("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both")
	}
	creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secret, SessionToken: os.Getenv("AWS_SESSION_TOKEN"), Source: "environment"}
	return aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) { return creds, nil }), nil
}

// fileCredentials reads path on every Retrieve; aws.NewCredentialsCache keeps the result until
// it expires.
type fileCredentials string

func (f fileCredentials) Retrieve(context.Context) (aws.Credentials, error) {
	path := string(f)
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return dirCredentials(path)
	}
	file, err := os.Open(path)
	if err != nil {
		return aws.Credentials{}, fmt.Errorf("S3 credentials (%s): %w", CredentialsFileEnv, err)
	}
	defer file.Close()
	vals := map[string]string{}
	sc := bufio.NewScanner(file)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' || s[0] == ';' || s[0] == '[' {
			continue
		}
		s = strings.TrimPrefix(s, "export ")
		k, v, ok := strings.Cut(s, "=")
		if !ok {
			return aws.Credentials{}, fmt.Errorf("S3 credentials file %s, line %d: want KEY=VALUE", path, line)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		vals[strings.ToLower(strings.TrimSpace(k))] = v
	}
	if err := sc.Err(); err != nil {
		return aws.Credentials{}, fmt.Errorf("S3 credentials file %s: %w", path, err)
	}
	c := aws.Credentials{
		AccessKeyID:     vals["aws_access_key_id"],
		SecretAccessKey: vals["aws_secret_access_key"],
		SessionToken:    vals["aws_session_token"],
		Source:          path,
		CanExpire:       true,
		Expires:         time.Now().Add(credentialsReread),
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return aws.Credentials{}, fmt.Errorf("S3 credentials file %s: want both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or aws_access_key_id and aws_secret_access_key)", path)
	}
	return c, nil
}

// dirCredentials reads a mounted secret: one file per key, named as the variables are.
func dirCredentials(dir string) (aws.Credentials, error) {
	read := func(name string, required bool) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			if !required && errors.Is(err, os.ErrNotExist) {
				return "", nil
			}
			return "", fmt.Errorf("S3 credentials directory %s (%s): want files AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: %w", dir, CredentialsFileEnv, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	c := aws.Credentials{Source: dir, CanExpire: true, Expires: time.Now().Add(credentialsReread)}
	var err error
	if c.AccessKeyID, err = read("AWS_ACCESS_KEY_ID", true); err != nil {
		return aws.Credentials{}, err
	}
	if c.SecretAccessKey, err = read("AWS_SECRET_ACCESS_KEY", true); err != nil {
		return aws.Credentials{}, err
	}
	if c.SessionToken, err = read("AWS_SESSION_TOKEN", false); err != nil {
		return aws.Credentials{}, err
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return aws.Credentials{}, fmt.Errorf("S3 credentials directory %s: AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is empty", dir)
	}
	return c, nil
}
