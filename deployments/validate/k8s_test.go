package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

const (
	k8sDir    = "deployments/k8s"
	namespace = "gpu-cluster"
	// The secret the RabbitMQ Cluster Operator creates for a RabbitmqCluster named rabbitmq.
	operatorSecret = "rabbitmq-default-user"
)

// rendered is one overlay after `kustomize build`, every object decoded strictly.
type rendered struct {
	overlay      string
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	jobs         map[string]*batchv1.Job
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	pvcs         map[string]*corev1.PersistentVolumeClaim
	pdbs         map[string]*policyv1.PodDisruptionBudget
	scaled       map[string]*scaledObject
	rabbit       map[string]*rabbitmqCluster
	namespaces   []string
}

// scaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1) that the manifests use;
// decoding strictly into it rejects a misspelt field.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount"`
		MaxReplicaCount *int32 `json:"maxReplicaCount"`
		PollingInterval *int32 `json:"pollingInterval"`
		CooldownPeriod  *int32 `json:"cooldownPeriod"`
		Triggers        []struct {
			Type              string            `json:"type"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind"`
			} `json:"authenticationRef"`
		} `json:"triggers"`
	} `json:"spec"`
}

// temporalTriggerMetadata are the temporal scaler's metadata keys (KEDA >= 2.17).
var temporalTriggerMetadata = []string{"endpoint", "endpointFromEnv", "namespace", "taskQueue",
	"targetQueueSize", "activationTargetQueueSize", "queueTypes", "minConnectTimeout",
	"unsafeSsl", "tlsServerName", "workerDeploymentName", "workerDeploymentBuildId"}

// rabbitmqCluster is the part of the RabbitMQ Cluster Operator's RabbitmqCluster
// (rabbitmq.com/v1beta1) that the manifests use.
type rabbitmqCluster struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Replicas    *int32 `json:"replicas"`
		Image       string `json:"image"`
		Persistence struct {
			StorageClassName *string            `json:"storageClassName"`
			Storage          *resource.Quantity `json:"storage"`
		} `json:"persistence"`
		Resources *corev1.ResourceRequirements `json:"resources"`
		Affinity  *corev1.Affinity             `json:"affinity"`
		Rabbitmq  struct {
			AdditionalPlugins []string `json:"additionalPlugins"`
			AdditionalConfig  string   `json:"additionalConfig"`
		} `json:"rabbitmq"`
		TLS *struct {
			SecretName             string `json:"secretName"`
			CASecretName           string `json:"caSecretName"`
			DisableNonTLSListeners bool   `json:"disableNonTLSListeners"`
		} `json:"tls"`
	} `json:"spec"`
}

// inMemoryK8s copies deployments/k8s into an in-memory file system, with each overlay's
// *.env.example also written as its *.env (the credentials files git ignores), filled with test
// passwords: the build never depends on a developer's local secrets.
func inMemoryK8s(t *testing.T) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	root := filepath.Join(repoRoot(t), k8sDir)
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if strings.HasSuffix(rel, ".env") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dst := filepath.Join("/k8s", rel)
		if err := mem.MkdirAll(filepath.Dir(dst)); err != nil {
			return err
		}
		if err := mem.WriteFile(dst, b); err != nil {
			return err
		}
		if example, ok := strings.CutSuffix(dst, ".env.example"); ok {
			filled := bytes.ReplaceAll(b, []byte("password=\n"), []byte("password=k8s-test-secret\n"))
			filled = bytes.ReplaceAll(filled, []byte("token=\n"), []byte("token=k8s-test-monitor-token\n"))
			return mem.WriteFile(example+".env", filled)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mem
}

// render builds an overlay with the kustomize API (what kubectl apply -k runs) and decodes every
// object strictly into its API type.
func render(t *testing.T, overlay string) *rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	resMap, err := k.Run(inMemoryK8s(t), "/k8s/overlays/"+overlay)
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", overlay, err)
	}
	r := &rendered{overlay: overlay,
		deployments: map[string]*appsv1.Deployment{}, statefulSets: map[string]*appsv1.StatefulSet{},
		jobs: map[string]*batchv1.Job{}, services: map[string]*corev1.Service{},
		configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{},
		pvcs: map[string]*corev1.PersistentVolumeClaim{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		scaled: map[string]*scaledObject{}, rabbit: map[string]*rabbitmqCluster{}}
	for _, res := range resMap.Resources() {
		doc, err := res.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		kind, name := res.GetKind(), res.GetName()
		if kind != "Namespace" && res.GetNamespace() != namespace {
			t.Errorf("%s: %s/%s is in namespace %q, want %s", overlay, kind, name, res.GetNamespace(), namespace)
		}
		var obj any
		switch kind {
		case "Namespace":
			r.namespaces = append(r.namespaces, name)
			obj = &corev1.Namespace{}
		case "Deployment":
			obj = into(r.deployments, name)
		case "StatefulSet":
			obj = into(r.statefulSets, name)
		case "Job":
			obj = into(r.jobs, name)
		case "Service":
			obj = into(r.services, name)
		case "ConfigMap":
			obj = into(r.configMaps, name)
		case "Secret":
			obj = into(r.secrets, name)
		case "PersistentVolumeClaim":
			obj = into(r.pvcs, name)
		case "PodDisruptionBudget":
			obj = into(r.pdbs, name)
		case "ScaledObject":
			obj = into(r.scaled, name)
		case "RabbitmqCluster":
			obj = into(r.rabbit, name)
		default:
			t.Errorf("%s: %s/%s: no strict decoder for this kind; add one to this test", overlay, kind, name)
			continue
		}
		dec := json.NewDecoder(bytes.NewReader(doc))
		dec.DisallowUnknownFields()
		if err := dec.Decode(obj); err != nil {
			t.Errorf("%s: %s/%s does not decode strictly: %v", overlay, kind, name, err)
		}
	}
	if !slices.Equal(r.namespaces, []string{namespace}) {
		t.Errorf("%s: namespaces %v, want [%s]", overlay, r.namespaces, namespace)
	}
	return r
}

// into allocates the typed object for name in m and returns it for decoding.
func into[T any](m map[string]*T, name string) *T {
	v := new(T)
	m[name] = v
	return v
}

// configMap finds a generated ConfigMap by its name before the hash suffix.
func (r *rendered) configMap(t *testing.T, prefix string) *corev1.ConfigMap {
	t.Helper()
	for name, cm := range r.configMaps {
		if name == prefix || strings.HasPrefix(name, prefix+"-") {
			return cm
		}
	}
	t.Fatalf("%s: no ConfigMap %s", r.overlay, prefix)
	return nil
}

// pods lists every pod template: Deployments, StatefulSets and Jobs.
func (r *rendered) pods() map[string]*corev1.PodTemplateSpec {
	pods := map[string]*corev1.PodTemplateSpec{}
	for n, d := range r.deployments {
		pods["Deployment/"+n] = &d.Spec.Template
	}
	for n, s := range r.statefulSets {
		pods["StatefulSet/"+n] = &s.Spec.Template
	}
	for n, j := range r.jobs {
		pods["Job/"+n] = &j.Spec.Template
	}
	return pods
}

func envValue(c corev1.Container, name string) (string, bool) {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value, true
		}
	}
	return "", false
}

var overlays = []string{"dev", "prod"}

// Every long-running container has probes, requests and limits, a tagged image, and runs
// without privileges; workers and the monitor probe the endpoints the code serves.
func TestK8sWorkloads(t *testing.T) {
	for _, overlay := range overlays {
		r := render(t, overlay)
		long := map[string]*corev1.PodTemplateSpec{}
		for n, d := range r.deployments {
			long["Deployment/"+n] = &d.Spec.Template
		}
		for n, s := range r.statefulSets {
			long["StatefulSet/"+n] = &s.Spec.Template
		}
		for name, pod := range long {
			for _, c := range pod.Spec.Containers {
				where := fmt.Sprintf("%s: %s container %s", overlay, name, c.Name)
				if c.LivenessProbe == nil || c.ReadinessProbe == nil {
					t.Errorf("%s: needs liveness and readiness probes", where)
				}
				for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
					if _, ok := c.Resources.Requests[res]; !ok {
						t.Errorf("%s: no %s request", where, res)
					}
					if _, ok := c.Resources.Limits[res]; !ok {
						t.Errorf("%s: no %s limit", where, res)
					}
				}
				if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
					t.Errorf("%s: must set allowPrivilegeEscalation: false", where)
				}
				if ps := pod.Spec.SecurityContext; ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot {
					t.Errorf("%s: pod must set runAsNonRoot", where)
				}
			}
		}
		for name, pod := range r.pods() {
			for _, c := range pod.Spec.Containers {
				_, tag, ok := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":")
				if !ok || tag == "" || tag == "latest" {
					t.Errorf("%s: %s image %q has no pinned tag", overlay, name, c.Image)
				}
			}
		}
		for _, name := range []string{"scheduler", "cpu-worker", "gpu-worker"} {
			d, ok := r.deployments[name]
			if !ok {
				continue
			}
			checkWorker(t, r, d)
		}
		checkMonitor(t, r)
	}
}

// checkWorker: the role, the health endpoints, JSON logs through gpujobs-config, the credentials
// it needs, and a grace period longer than the drain.
func checkWorker(t *testing.T, r *rendered, d *appsv1.Deployment) {
	where := r.overlay + ": Deployment/" + d.Name
	spec := d.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: want one container", where)
	}
	c := spec.Containers[0]
	role, _ := envValue(c, "WORKER_TYPE")
	if want := strings.TrimSuffix(d.Name, "-worker"); role != want {
		t.Errorf("%s: WORKER_TYPE %q, want %q", where, role, want)
	}
	if addr, _ := envValue(c, "HEALTH_ADDR"); addr != ":8081" {
		t.Errorf("%s: HEALTH_ADDR %q, want :8081", where, addr)
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != 8081 || c.Ports[0].Name != "health" {
		t.Errorf("%s: want the one port health:8081, got %+v", where, c.Ports)
	}
	checkHTTPProbe(t, where+" readiness", c.ReadinessProbe, "/readyz", "health")
	checkHTTPProbe(t, where+" liveness", c.LivenessProbe, "/healthz", "health")
	if c.StartupProbe == nil {
		t.Errorf("%s: needs a startup probe (the health endpoint starts after Temporal is dialled)", where)
	}
	cm := r.configMap(t, "gpujobs-config")
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != cm.Name {
		t.Errorf("%s: must take its settings from %s", where, cm.Name)
	}
	if cm.Data["LOG_FORMAT"] != "json" {
		t.Errorf("%s: LOG_FORMAT %q, want json", r.overlay, cm.Data["LOG_FORMAT"])
	}
	if id := envFieldRef(c, "WORKER_ID"); id != "metadata.name" {
		t.Errorf("%s: WORKER_ID should be the pod name, got field %q", where, id)
	}
	stopValue, _ := envValue(c, "WORKER_STOP_TIMEOUT")
	stop := parseDuration(t, where+" WORKER_STOP_TIMEOUT", stopValue)
	var grace time.Duration
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	if grace < stopGrace(stop) {
		t.Errorf("%s: terminationGracePeriodSeconds %v, want at least %v (WORKER_STOP_TIMEOUT %v + hand-back)", where, grace, stopGrace(stop), stop)
	}
	// The scheduler publishes results, executing workers their command jobs' log lines.
	needsRabbit := role == "scheduler" || role == "cpu" || role == "gpu"
	if hasCreds := envSecret(c, "RABBITMQ_PASS") != ""; hasCreds != needsRabbit {
		t.Errorf("%s: RabbitMQ credentials: got %v, want %v (the scheduler and the executing workers publish)", where, hasCreds, needsRabbit)
	}
	if needsRabbit {
		for _, v := range []string{"RABBITMQ_USER", "RABBITMQ_PASS"} {
			if envSecret(c, v) != operatorSecret {
				t.Errorf("%s: %s must come from Secret %s", where, v, operatorSecret)
			}
		}
	}
	checkPDB(t, r, d)
}

func checkHTTPProbe(t *testing.T, where string, p *corev1.Probe, path, port string) {
	t.Helper()
	if p == nil || p.HTTPGet == nil {
		t.Errorf("%s: want an HTTP probe on %s", where, path)
		return
	}
	if p.HTTPGet.Path != path || p.HTTPGet.Port.String() != port {
		t.Errorf("%s: probes %s on %s, want %s on %s", where, p.HTTPGet.Path, p.HTTPGet.Port.String(), path, port)
	}
}

func envFieldRef(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			return e.ValueFrom.FieldRef.FieldPath
		}
	}
	return ""
}

func envSecret(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			return e.ValueFrom.SecretKeyRef.Name
		}
	}
	return ""
}

// checkPDB: a PodDisruptionBudget selects the Deployment's pods and lets a drain proceed one
// pod at a time (minAvailable equal to the replicas would block node drains forever).
func checkPDB(t *testing.T, r *rendered, d *appsv1.Deployment) {
	pdb, ok := r.pdbs[d.Name]
	if !ok {
		t.Errorf("%s: Deployment/%s has no PodDisruptionBudget", r.overlay, d.Name)
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: PodDisruptionBudget/%s does not select the pods of Deployment/%s", r.overlay, pdb.Name, d.Name)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("%s: PodDisruptionBudget/%s: want maxUnavailable 1", r.overlay, pdb.Name)
	}
}

func checkMonitor(t *testing.T, r *rendered) {
	d, ok := r.deployments["monitor"]
	if !ok {
		t.Fatalf("%s: no monitor Deployment", r.overlay)
	}
	where := r.overlay + ": Deployment/monitor"
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("%s: the single consumer of the result queue: want 1 replica, strategy Recreate", where)
	}
	c := d.Spec.Template.Spec.Containers[0]
	checkHTTPProbe(t, where+" readiness", c.ReadinessProbe, "/healthz", "http")
	checkHTTPProbe(t, where+" liveness", c.LivenessProbe, "/healthz", "http")
	if addr, _ := envValue(c, "MONITOR_ADDR"); addr != "0.0.0.0:8000" {
		t.Errorf("%s: MONITOR_ADDR %q, want 0.0.0.0:8000", where, addr)
	}
	file, _ := envValue(c, "RESULTS_FILE")
	var mounted bool
	for _, m := range c.VolumeMounts {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "monitor-results" &&
				strings.HasPrefix(file, m.MountPath+"/") {
				mounted = true
			}
		}
	}
	if !mounted {
		t.Errorf("%s: RESULTS_FILE %q is not on the monitor-results claim", where, file)
	}
	pvc, ok := r.pvcs["monitor-results"]
	if !ok {
		t.Fatalf("%s: no PersistentVolumeClaim monitor-results", r.overlay)
	}
	if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("%s: monitor-results requests %s, want 1Gi", r.overlay, got.String())
	}
	svc, ok := r.services["monitor"]
	if !ok || svc.Spec.Type != corev1.ServiceTypeLoadBalancer || len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != 8000 {
		t.Errorf("%s: want Service monitor of type LoadBalancer on port 8000", r.overlay)
	}
	checkMonitorToken(t, r, d, c)
}

// checkMonitorToken: a monitor served beyond the pod requires a token, read from the Secret
// monitor-token (key token) mounted as MONITOR_TOKEN_FILE; the dev overlay generates that Secret,
// prod has it created by hand (docs/DEPLOY.md), never from the repository.
func checkMonitorToken(t *testing.T, r *rendered, d *appsv1.Deployment, c corev1.Container) {
	where := r.overlay + ": Deployment/monitor"
	file, _ := envValue(c, "MONITOR_TOKEN_FILE")
	var fromSecret bool
	for _, m := range c.VolumeMounts {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name == m.Name && v.Secret != nil && v.Secret.SecretName == "monitor-token" && file == m.MountPath+"/token" {
				fromSecret = v.Secret.Optional == nil || !*v.Secret.Optional
			}
		}
	}
	if !fromSecret {
		t.Errorf("%s: MONITOR_TOKEN_FILE %q is not the key token of the (required) Secret monitor-token", where, file)
	}
	if _, inline := envValue(c, "MONITOR_TOKEN"); inline {
		t.Errorf("%s: sets MONITOR_TOKEN inline", where)
	}
	s, generated := r.secrets["monitor-token"]
	switch {
	case r.overlay == "dev" && (!generated || string(s.Data["token"]) != "k8s-test-monitor-token"):
		t.Errorf("dev: the Secret monitor-token is not generated from monitor.env")
	case r.overlay == "prod" && generated:
		t.Errorf("prod: the Secret monitor-token comes from the repository; it must be created in the cluster")
	}
}

// GPU workers in prod only: on GPU nodes, tolerating their taint, one GPU requested and limited.
func TestK8sGPUScheduling(t *testing.T) {
	prod := render(t, "prod")
	d, ok := prod.deployments["gpu-worker"]
	if !ok {
		t.Fatal("prod: no gpu-worker Deployment")
	}
	spec := d.Spec.Template.Spec
	if spec.NodeSelector["accelerator"] != "nvidia-gpu" {
		t.Errorf("gpu-worker nodeSelector %v, want accelerator: nvidia-gpu", spec.NodeSelector)
	}
	tolerates := slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Key == "nvidia.com/gpu" && tl.Effect == corev1.TaintEffectNoSchedule &&
			(tl.Operator == corev1.TolerationOpExists || tl.Operator == "")
	})
	if !tolerates {
		t.Errorf("gpu-worker tolerations %+v, want nvidia.com/gpu:NoSchedule", spec.Tolerations)
	}
	gpu := corev1.ResourceName("nvidia.com/gpu")
	res := spec.Containers[0].Resources
	one := resource.MustParse("1")
	if q, ok := res.Requests[gpu]; !ok || q.Cmp(one) != 0 {
		t.Errorf("gpu-worker requests nvidia.com/gpu %v, want 1", res.Requests[gpu])
	}
	if q, ok := res.Limits[gpu]; !ok || q.Cmp(one) != 0 {
		t.Errorf("gpu-worker limits nvidia.com/gpu %v, want 1", res.Limits[gpu])
	}

	for _, overlay := range overlays {
		r := prod
		if overlay != "prod" {
			r = render(t, overlay)
		}
		for name, pod := range r.pods() {
			for _, c := range pod.Spec.Containers {
				_, asks := c.Resources.Limits[gpu]
				if asks != (overlay == "prod" && name == "Deployment/gpu-worker") {
					t.Errorf("%s: %s container %s: only the prod gpu-worker may use a GPU", overlay, name, c.Name)
				}
			}
		}
	}
}

// CPU workers: requests 1 CPU / 2Gi, limits 2 CPU / 4Gi, OpenBLAS threads from the limit.
func TestK8sCPUWorkers(t *testing.T) {
	for _, overlay := range overlays {
		r := render(t, overlay)
		d, ok := r.deployments["cpu-worker"]
		if !ok {
			t.Fatalf("%s: no cpu-worker", overlay)
		}
		c := d.Spec.Template.Spec.Containers[0]
		want := map[string]corev1.ResourceList{
			"requests": {corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("2Gi")},
			"limits":   {corev1.ResourceCPU: resource.MustParse("2"), corev1.ResourceMemory: resource.MustParse("4Gi")},
		}
		got := map[string]corev1.ResourceList{"requests": c.Resources.Requests, "limits": c.Resources.Limits}
		for kind, list := range want {
			for name, q := range list {
				if g := got[kind][name]; g.Cmp(q) != 0 {
					t.Errorf("%s: cpu-worker %s %s = %s, want %s", overlay, kind, name, g.String(), q.String())
				}
			}
		}
		var threads *corev1.ResourceFieldSelector
		for _, e := range c.Env {
			if e.Name == "OPENBLAS_NUM_THREADS" && e.ValueFrom != nil {
				threads = e.ValueFrom.ResourceFieldRef
			}
		}
		if threads == nil || threads.Resource != "limits.cpu" {
			t.Errorf("%s: cpu-worker OPENBLAS_NUM_THREADS must follow limits.cpu", overlay)
		}
		wantReplicas := map[string]int32{"dev": 1, "prod": 2}[overlay]
		if d.Spec.Replicas == nil || *d.Spec.Replicas != wantReplicas {
			t.Errorf("%s: cpu-worker replicas %v, want %d", overlay, d.Spec.Replicas, wantReplicas)
		}
		if s := r.deployments["scheduler"]; s == nil || s.Spec.Replicas == nil || *s.Spec.Replicas != 1 {
			t.Errorf("%s: want one scheduler replica", overlay)
		}
	}
}

// KEDA scales the CPU and GPU workers on their own activity task queue, through the Temporal
// frontend the workers use, never below one poller.
func TestK8sAutoscaling(t *testing.T) {
	prod := render(t, "prod")
	cm := prod.configMap(t, "gpujobs-config")
	want := map[string]struct {
		queue    string
		minimum  int32
		deployed bool
	}{
		"cpu-worker": {"cpu_queue", 2, true},
		"gpu-worker": {"gpu_queue", 1, true},
	}
	if len(prod.scaled) != len(want) {
		t.Errorf("prod: ScaledObjects %v, want one for each of cpu-worker and gpu-worker", slices.Sorted(maps.Keys(prod.scaled)))
	}
	for target, w := range want {
		var so *scaledObject
		for _, s := range prod.scaled {
			if s.Spec.ScaleTargetRef.Name == target {
				so = s
			}
		}
		if so == nil {
			t.Errorf("prod: no ScaledObject targets %s", target)
			continue
		}
		ref := so.Spec.ScaleTargetRef
		if _, ok := prod.deployments[target]; !ok || (ref.Kind != "" && ref.Kind != "Deployment") {
			t.Errorf("ScaledObject/%s targets %s %s, which is not a Deployment here", so.Name, ref.Kind, ref.Name)
		}
		if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < w.minimum {
			t.Errorf("ScaledObject/%s minReplicaCount %v, want at least %d", so.Name, so.Spec.MinReplicaCount, w.minimum)
		}
		if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
			t.Errorf("ScaledObject/%s maxReplicaCount %v below the minimum", so.Name, so.Spec.MaxReplicaCount)
		}
		if len(so.Spec.Triggers) != 1 || so.Spec.Triggers[0].Type != "temporal" {
			t.Errorf("ScaledObject/%s: want one trigger of type temporal", so.Name)
			continue
		}
		md := so.Spec.Triggers[0].Metadata
		for k := range md {
			if !slices.Contains(temporalTriggerMetadata, k) {
				t.Errorf("ScaledObject/%s: %q is not a metadata key of KEDA's temporal scaler", so.Name, k)
			}
		}
		checks := map[string]string{
			"endpoint":   cm.Data["TEMPORAL_ADDRESS"],
			"namespace":  cm.Data["TEMPORAL_NAMESPACE"],
			"taskQueue":  w.queue,
			"queueTypes": "activity",
		}
		for k, v := range checks {
			if md[k] != v {
				t.Errorf("ScaledObject/%s: %s = %q, want %q", so.Name, k, md[k], v)
			}
		}
		if q, err := resource.ParseQuantity(md["targetQueueSize"]); err != nil || q.Sign() <= 0 {
			t.Errorf("ScaledObject/%s: targetQueueSize %q must be a positive number", so.Name, md["targetQueueSize"])
		}
	}
	if host := strings.Split(cm.Data["TEMPORAL_ADDRESS"], ":")[0]; !strings.HasSuffix(host, "."+namespace+".svc") {
		t.Errorf("TEMPORAL_ADDRESS %q: KEDA resolves it from its own namespace, so qualify it", cm.Data["TEMPORAL_ADDRESS"])
	}
	if dev := render(t, "dev"); len(dev.scaled) != 0 {
		t.Errorf("dev runs without KEDA, yet has ScaledObjects")
	}
}

// RabbitMQ: three operator-managed nodes and quorum queues in prod, one pod in dev; the
// workloads read the same Service and Secret names in both.
func TestK8sRabbitMQ(t *testing.T) {
	prod := render(t, "prod")
	rc, ok := prod.rabbit["rabbitmq"]
	if !ok || len(prod.rabbit) != 1 {
		t.Fatalf("prod: want one RabbitmqCluster named rabbitmq, got %d", len(prod.rabbit))
	}
	if rc.APIVersion != "rabbitmq.com/v1beta1" || rc.Spec.Replicas == nil || *rc.Spec.Replicas != 3 {
		t.Errorf("prod: RabbitmqCluster %s replicas %v, want rabbitmq.com/v1beta1 with 3", rc.APIVersion, rc.Spec.Replicas)
	}
	if q := prod.configMap(t, "gpujobs-config").Data["RABBITMQ_QUEUE_TYPE"]; q != "quorum" {
		t.Errorf("prod: RABBITMQ_QUEUE_TYPE %q, want quorum", q)
	}
	if _, ok := prod.statefulSets["rabbitmq"]; ok {
		t.Error("prod: the demo RabbitMQ StatefulSet is there too")
	}

	dev := render(t, "dev")
	if len(dev.rabbit) != 0 {
		t.Error("dev needs no operator, yet has a RabbitmqCluster")
	}
	sts, ok := dev.statefulSets["rabbitmq"]
	if !ok || sts.Spec.Replicas == nil || *sts.Spec.Replicas != 1 {
		t.Fatal("dev: want the single-node rabbitmq StatefulSet")
	}
	if q := dev.configMap(t, "gpujobs-config").Data["RABBITMQ_QUEUE_TYPE"]; q != "classic" {
		t.Errorf("dev: RABBITMQ_QUEUE_TYPE %q, want classic on one node", q)
	}
	svc, ok := dev.services["rabbitmq"]
	if !ok || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sts.Spec.Template.Labels)) {
		t.Error("dev: Service rabbitmq does not select the RabbitMQ pod")
	}
	for _, overlay := range []*rendered{dev, prod} {
		if host := overlay.configMap(t, "gpujobs-config").Data["RABBITMQ_HOST"]; host != "rabbitmq" {
			t.Errorf("%s: RABBITMQ_HOST %q, want rabbitmq (the operator's Service name)", overlay.overlay, host)
		}
	}
}

// Every Secret and ConfigMap a pod reads exists, except the one the RabbitMQ operator creates;
// generated Secrets carry no committed value; Services select pods and name their ports.
func TestK8sReferences(t *testing.T) {
	for _, overlay := range overlays {
		r := render(t, overlay)
		for name, pod := range r.pods() {
			for _, c := range pod.Spec.Containers {
				for _, e := range c.Env {
					if e.ValueFrom == nil {
						// NAME_FILE holds the path of a mounted secret, not the secret.
						if secretName.MatchString(e.Name) && !strings.HasSuffix(e.Name, "_FILE") && e.Value != "" {
							t.Errorf("%s: %s sets %s inline", overlay, name, e.Name)
						}
						continue
					}
					if ref := e.ValueFrom.SecretKeyRef; ref != nil {
						s, ok := r.secrets[ref.Name]
						if !ok && !(overlay == "prod" && ref.Name == operatorSecret) {
							t.Errorf("%s: %s reads missing Secret %s", overlay, name, ref.Name)
						}
						if ok {
							if _, has := s.Data[ref.Key]; !has {
								t.Errorf("%s: %s reads key %s that Secret %s lacks", overlay, name, ref.Key, ref.Name)
							}
						}
					}
					if ref := e.ValueFrom.ConfigMapKeyRef; ref != nil {
						if cm, ok := r.configMaps[ref.Name]; !ok || cm.Data[ref.Key] == "" {
							t.Errorf("%s: %s reads missing ConfigMap key %s/%s", overlay, name, ref.Name, ref.Key)
						}
					}
				}
				for _, from := range c.EnvFrom {
					if from.ConfigMapRef != nil {
						if _, ok := r.configMaps[from.ConfigMapRef.Name]; !ok {
							t.Errorf("%s: %s reads missing ConfigMap %s", overlay, name, from.ConfigMapRef.Name)
						}
					}
				}
			}
			for _, v := range pod.Spec.Volumes {
				if v.ConfigMap != nil {
					if _, ok := r.configMaps[v.ConfigMap.Name]; !ok {
						t.Errorf("%s: %s mounts missing ConfigMap %s", overlay, name, v.ConfigMap.Name)
					}
				}
				if v.PersistentVolumeClaim != nil {
					if _, ok := r.pvcs[v.PersistentVolumeClaim.ClaimName]; !ok {
						t.Errorf("%s: %s mounts missing claim %s", overlay, name, v.PersistentVolumeClaim.ClaimName)
					}
				}
			}
		}
		for name, svc := range r.services {
			var matched bool
			for _, pod := range r.pods() {
				if labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
					matched = true
					for _, p := range svc.Spec.Ports {
						if p.TargetPort.String() != "" && p.TargetPort.IntValue() == 0 && !namedPort(pod, p.TargetPort.String()) {
							t.Errorf("%s: Service %s targets port %q that its pods do not name", overlay, name, p.TargetPort.String())
						}
					}
				}
			}
			if !matched {
				t.Errorf("%s: Service %s selects no pod", overlay, name)
			}
		}
	}
}

func namedPort(pod *corev1.PodTemplateSpec, name string) bool {
	for _, c := range pod.Spec.Containers {
		for _, p := range c.Ports {
			if p.Name == name {
				return true
			}
		}
	}
	return false
}

// The Temporal setup Job runs the same script as the compose one-shot.
func TestK8sTemporalSetup(t *testing.T) {
	canonical := readFile(t, k8sDir+"/base/temporal-setup.sh")
	for _, attr := range []string{"JobType:Keyword", "Device:Keyword", "Priority:Int", "Tenant:Keyword", "WorkerType:Keyword"} {
		if !bytes.Contains(canonical, []byte(attr)) {
			t.Errorf("setup.sh does not create the search attribute %s", attr)
		}
	}
	for _, overlay := range overlays {
		r := render(t, overlay)
		job, ok := r.jobs["temporal-setup"]
		if !ok {
			t.Fatalf("%s: no temporal-setup Job", overlay)
		}
		if cm := r.configMap(t, "temporal-setup"); cm.Data["setup.sh"] != string(canonical) {
			t.Errorf("%s: the temporal-setup ConfigMap does not hold setup.sh", overlay)
		}
		if img := job.Spec.Template.Spec.Containers[0].Image; !strings.HasPrefix(img, "temporalio/admin-tools:") {
			t.Errorf("%s: temporal-setup runs %s, want temporalio/admin-tools", overlay, img)
		}
	}
}

// The monitor's /api/queue asks the scheduler's health address: MONITOR_SCHEDULER_URL names a
// Service whose port reaches the scheduler pod's health port, the one HEALTH_ADDR listens on.
func TestK8sMonitorReachesTheScheduler(t *testing.T) {
	for _, overlay := range overlays {
		r := render(t, overlay)
		mon, sched := r.deployments["monitor"], r.deployments["scheduler"]
		if mon == nil || sched == nil {
			t.Fatalf("%s: monitor or scheduler Deployment missing", overlay)
		}
		raw, _ := envValue(mon.Spec.Template.Spec.Containers[0], "MONITOR_SCHEDULER_URL")
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || u.Port() == "" {
			t.Fatalf("%s: monitor MONITOR_SCHEDULER_URL %q, want http://SERVICE:PORT", overlay, raw)
		}
		svc := r.services[u.Hostname()]
		if svc == nil || !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(sched.Spec.Template.Labels)) {
			t.Fatalf("%s: MONITOR_SCHEDULER_URL names Service %q, which does not select the scheduler", overlay, u.Hostname())
		}
		c := sched.Spec.Template.Spec.Containers[0]
		health, _ := envValue(c, "HEALTH_ADDR")
		var reached bool
		for _, p := range svc.Spec.Ports {
			if fmt.Sprint(p.Port) != u.Port() {
				continue
			}
			for _, cp := range c.Ports {
				if (cp.Name == p.TargetPort.String() || cp.ContainerPort == p.TargetPort.IntVal) && ":"+fmt.Sprint(cp.ContainerPort) == health {
					reached = true
				}
			}
		}
		if !reached {
			t.Errorf("%s: Service %s port %s does not reach the scheduler's HEALTH_ADDR %s", overlay, svc.Name, u.Port(), health)
		}
	}
}
