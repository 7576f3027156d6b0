package validate

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/dotenv"
	corev1 "k8s.io/api/core/v1"
)

// In compose the executing workers and the starter reach the seaweedfs service with the key pair
// from .env, which SeaweedFS takes as its identity; nothing else gets it.
func TestComposeArtifactStore(t *testing.T) {
	p := mustLoadCompose(t, "gpu", "tools")
	sw := p.Services["seaweedfs"]
	if !slices.Contains(sw.Command, "-s3") || !slices.Contains(sw.Command, "-master.telemetry=false") {
		t.Errorf("seaweedfs command %v: want the S3 gateway and no telemetry", sw.Command)
	}
	if deref(sw.Environment["AWS_SECRET_ACCESS_KEY"]) != testSecrets["S3_SECRET_KEY"] ||
		deref(sw.Environment["AWS_ACCESS_KEY_ID"]) != testSecrets["S3_ACCESS_KEY"] {
		t.Error("seaweedfs does not take its identity from S3_ACCESS_KEY and S3_SECRET_KEY")
	}
	if !hasHealthCheck(t, sw) {
		t.Error("seaweedfs has no health check for the workers to wait on")
	}
	var data bool
	for _, v := range sw.Volumes {
		data = data || (v.Source == "seaweedfs_data" && v.Target == "/data")
	}
	if !data {
		t.Error("seaweedfs does not keep /data on the volume seaweedfs_data")
	}
	for _, name := range []string{"cpu-worker", "gpu-worker", "starter"} {
		env := p.Services[name].Environment
		if got := deref(env["GPUJOBS_ARTIFACTS"]); !strings.HasPrefix(got, "s3://") {
			t.Errorf("%s: GPUJOBS_ARTIFACTS %q, want an s3:// store", name, got)
		}
		if got := deref(env["GPUJOBS_S3_ENDPOINT"]); got != "http://seaweedfs:8333" {
			t.Errorf("%s: GPUJOBS_S3_ENDPOINT %q, want the seaweedfs service", name, got)
		}
		if deref(env["AWS_SECRET_ACCESS_KEY"]) != testSecrets["S3_SECRET_KEY"] {
			t.Errorf("%s does not get the store's secret key from .env", name)
		}
	}
	for _, name := range []string{"scheduler", "monitor"} {
		if _, ok := p.Services[name].Environment["AWS_SECRET_ACCESS_KEY"]; ok {
			t.Errorf("%s gets the store's secret key, which it does not use", name)
		}
	}
	example, err := dotenv.Read(filepath.Join(repoRoot(t), ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"S3_ACCESS_KEY", "S3_SECRET_KEY"} {
		if v, ok := example[k]; !ok || v != "" {
			t.Errorf(".env.example: %s must be named and left empty (got %q)", k, v)
		}
	}
	env := exampleEnv(t)
	delete(env, "S3_SECRET_KEY")
	if _, err := loadCompose(t, env); err == nil || !strings.Contains(err.Error(), "S3_SECRET_KEY") {
		t.Errorf("loading without S3_SECRET_KEY: err = %v, want a required-variable error", err)
	}
}

// In Kubernetes the executing workers read the store's URL from gpujobs-config and its key pair
// from the Secret gpujobs-s3, mounted read-only where GPUJOBS_S3_CREDENTIALS_FILE points; the
// scheduler and the monitor do not get it. dev runs SeaweedFS with the same Secret.
func TestK8sArtifactStore(t *testing.T) {
	for _, overlay := range overlays {
		r := render(t, overlay)
		cm := r.configMap(t, "gpujobs-config")
		if !strings.HasPrefix(cm.Data["GPUJOBS_ARTIFACTS"], "s3://") {
			t.Errorf("%s: gpujobs-config GPUJOBS_ARTIFACTS %q, want an s3:// store", overlay, cm.Data["GPUJOBS_ARTIFACTS"])
		}
		workers := []string{"cpu-worker"}
		if overlay == "prod" {
			workers = append(workers, "gpu-worker")
		}
		var secret string
		for _, name := range workers {
			d, ok := r.deployments[name]
			if !ok {
				t.Fatalf("%s: no Deployment %s", overlay, name)
			}
			s, ok := mountedSecret(d.Spec.Template.Spec, "/etc/gpujobs/s3")
			if !ok || !strings.HasPrefix(s, "gpujobs-s3") {
				t.Errorf("%s: %s does not mount the Secret gpujobs-s3 read-only at /etc/gpujobs/s3 (got %q)", overlay, name, s)
			}
			secret = s
			if v, _ := envValue(d.Spec.Template.Spec.Containers[0], "GPUJOBS_S3_CREDENTIALS_FILE"); v != "/etc/gpujobs/s3" {
				t.Errorf("%s: %s GPUJOBS_S3_CREDENTIALS_FILE %q, want /etc/gpujobs/s3", overlay, name, v)
			}
		}
		for _, name := range []string{"scheduler", "monitor"} {
			if d, ok := r.deployments[name]; ok {
				if s, ok := mountedSecret(d.Spec.Template.Spec, "/etc/gpujobs/s3"); ok {
					t.Errorf("%s: %s mounts %s, which it does not use", overlay, name, s)
				}
			}
		}
		if overlay != "dev" {
			continue
		}
		if cm.Data["GPUJOBS_S3_ENDPOINT"] != "http://seaweedfs:8333" {
			t.Errorf("dev: GPUJOBS_S3_ENDPOINT %q, want the seaweedfs Service", cm.Data["GPUJOBS_S3_ENDPOINT"])
		}
		if svc, ok := r.services["seaweedfs"]; !ok || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8333 {
			t.Errorf("dev: no Service seaweedfs on 8333")
		}
		sw, ok := r.deployments["seaweedfs"]
		if !ok {
			t.Fatal("dev: no Deployment seaweedfs")
		}
		c := sw.Spec.Template.Spec.Containers[0]
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} {
			if got := envSecret(c, k); got != secret {
				t.Errorf("dev: seaweedfs reads %s from Secret %q, the workers mount %q", k, got, secret)
			}
		}
		if s := r.secrets[secret]; s == nil || len(s.Data) != 2 {
			t.Errorf("dev: Secret %s should hold exactly the two keys", secret)
		}
	}
}

// mountedSecret returns the Secret mounted read-only at path in the pod's first container.
func mountedSecret(spec corev1.PodSpec, path string) (string, bool) {
	for _, m := range spec.Containers[0].VolumeMounts {
		if m.MountPath != path || !m.ReadOnly {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.Secret != nil {
				return v.Secret.SecretName, true
			}
		}
	}
	return "", false
}
