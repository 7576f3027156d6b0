package cluster

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gpujobs/gpujobs/internal/compose"
)

// Cluster is docker-compose.yml's services running on the hosts of a Network, each as the
// container of its image would run: the image's entrypoint, user, environment and health check
// (read from the repo's Dockerfiles for gpujobs's images; known for the others), the compose
// file's command, environment, volumes and start order.
type Cluster struct {
	Repo    string // the repository: docker-compose.yml, deployments/, scripts/
	Bin     string // the repository's bin/ (worker, monitor, starter, devserver, temporal-sql-tool)
	Work    string // scratch directory: data, logs, the binaries the hosts run
	Net     *Network
	Compose *compose.File
	// SchemaDir is what the admin-tools image has in /etc/temporal/schema: the SQL schema of the
	// Temporal server that runs (the go.temporal.io/server module's schema/ directory).
	SchemaDir string
	Logf      func(format string, args ...any)

	mu        sync.Mutex
	instances map[string]*Instance
}

// Instance is one container: a service on a host.
type Instance struct {
	Name    string // unique: the host for scaled services (cpu1), else the service
	Service compose.Service
	Host    *Host
	Cmd     Command
	Proc    *Proc
	// Health is the service's health check as a command for the host; nil: none.
	Health *Command
	// StopSignal ends the process gracefully (the image's STOPSIGNAL; SIGTERM by default).
	StopSignal syscall.Signal
	oneShot    bool
	prepare    func(ctx context.Context, c *Cluster, inst *Instance) error
	inProcess  func(ctx context.Context, c *Cluster, inst *Instance) error
	done       chan struct{} // in-process one-shots: closed when finished
	err        error
}

// Placement says where each service runs: instance name -> (service, host).
type Placement struct {
	Instance, Service, Host string
}

// LogPath is the log file of an instance.
func (c *Cluster) LogPath(instance string) string {
	return filepath.Join(c.Work, "logs", instance+".log")
}

// Instance returns a started instance by name.
func (c *Cluster) Instance(name string) *Instance {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.instances[name]
}

// Up starts the placed services in compose's order: a service starts once each dependency has
// met its condition (service_started, service_healthy: its health check passes,
// service_completed_successfully: it exited 0). Independent services start at the same time.
// Health checks run every 500 ms rather than at the file's intervals, to start sooner.
func (c *Cluster) Up(ctx context.Context, placements []Placement) error {
	if c.instances == nil {
		c.instances = map[string]*Instance{}
	}
	// Each service's milestones; a scaled service reaches one when all its instances have.
	type milestones struct {
		instances int
		reached   map[string]int
		ch        map[string]chan struct{}
	}
	states := map[string]*milestones{}
	for _, p := range placements {
		st := states[p.Service]
		if st == nil {
			st = &milestones{reached: map[string]int{}, ch: map[string]chan struct{}{}}
			for _, cond := range []string{"service_started", "service_healthy", "service_completed_successfully"} {
				st.ch[cond] = make(chan struct{})
			}
			states[p.Service] = st
		}
		st.instances++
	}
	for _, p := range placements {
		s, ok := c.Compose.Services[p.Service]
		if !ok {
			return fmt.Errorf("docker-compose.yml has no service %s", p.Service)
		}
		for dep, cond := range s.DependsOn {
			if _, ok := states[dep]; !ok {
				return fmt.Errorf("%s depends on %s, which the cluster does not run", p.Service, dep)
			}
			if _, ok := states[dep].ch[cond]; !ok {
				return fmt.Errorf("%s: unknown depends_on condition %q", p.Service, cond)
			}
		}
	}
	var mu sync.Mutex
	reach := func(service, cond string) {
		mu.Lock()
		defer mu.Unlock()
		st := states[service]
		st.reached[cond]++
		if st.reached[cond] == st.instances {
			close(st.ch[cond])
		}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for _, p := range placements {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wait := func(dep, cond string) error {
				select {
				case <-states[dep].ch[cond]:
					return nil
				case <-ctx.Done():
					return context.Cause(ctx)
				}
			}
			if err := c.upOne(ctx, p, wait, func(cond string) { reach(p.Service, cond) }); err != nil {
				cancel(fmt.Errorf("%s on %s: %w", p.Service, p.Host, err))
			}
		}()
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return nil
}

// upOne waits for p's dependencies, starts it and reports its progress.
func (c *Cluster) upOne(ctx context.Context, p Placement, wait func(dep, cond string) error, report func(string)) error {
	s := c.Compose.Services[p.Service]
	for _, dep := range slices.Sorted(maps.Keys(s.DependsOn)) {
		if err := wait(dep, s.DependsOn[dep]); err != nil {
			return fmt.Errorf("waiting for %s (%s): %w", dep, s.DependsOn[dep], err)
		}
	}
	inst, err := c.realize(p, s)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.instances[p.Instance] = inst
	c.mu.Unlock()
	start := time.Now()
	if err := c.Start(ctx, inst); err != nil {
		return err
	}
	report("service_started")
	if inst.oneShot {
		if err := inst.wait(ctx); err != nil {
			return fmt.Errorf("one-shot failed: %w (log %s)", err, inst.Cmd.Log)
		}
		c.Logf("%s completed on %s in %.1fs", p.Instance, p.Host, time.Since(start).Seconds())
		report("service_completed_successfully")
		return nil
	}
	if inst.Health != nil {
		if err := c.WaitHealthy(ctx, inst, 3*time.Minute); err != nil {
			return err
		}
		c.Logf("%s healthy on %s after %.1fs", p.Instance, p.Host, time.Since(start).Seconds())
	}
	report("service_healthy")
	return nil
}

// wait waits for a one-shot to end and returns its error.
func (inst *Instance) wait(ctx context.Context) error {
	if inst.inProcess != nil {
		select {
		case <-inst.done:
			return inst.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	select {
	case <-inst.Proc.Done():
		return inst.Proc.Err()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Start runs an instance's command (again, after a stop), preparing its data first.
func (c *Cluster) Start(ctx context.Context, inst *Instance) error {
	if inst.prepare != nil {
		if err := inst.prepare(ctx, c, inst); err != nil {
			return fmt.Errorf("prepare %s: %w", inst.Name, err)
		}
	}
	if inst.inProcess != nil {
		inst.done = make(chan struct{})
		go func() {
			defer close(inst.done)
			inst.err = inst.inProcess(ctx, c, inst)
		}()
		return nil
	}
	p, err := inst.Host.Start(inst.Cmd)
	if err != nil {
		return err
	}
	inst.Proc = p
	return nil
}

// WaitHealthy runs the instance's health check until it passes, the process exits, or timeout.
func (c *Cluster) WaitHealthy(ctx context.Context, inst *Instance, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		out, err := inst.Host.Run(cctx, *inst.Health)
		cancel()
		if err == nil {
			return nil
		}
		last = strings.TrimSpace(out)
		select {
		case <-inst.Proc.Done():
			return fmt.Errorf("exited before it was healthy: %v (log %s)", inst.Proc.Err(), inst.Cmd.Log)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not healthy after %s: %s: %s (log %s)", timeout, strings.Join(inst.Health.Argv, " "), last, inst.Cmd.Log)
		}
	}
}

// Stop ends an instance as `docker stop` would: its stop signal, then SIGKILL after grace.
func (c *Cluster) Stop(inst *Instance, grace time.Duration) {
	inst.Proc.Signal(inst.StopSignal)
	select {
	case <-inst.Proc.Done():
	case <-time.After(grace):
		c.Kill(inst)
	}
}

// Restart stops an instance and starts it again.
func (c *Cluster) Restart(ctx context.Context, inst *Instance, grace time.Duration) error {
	c.Stop(inst, grace)
	return c.Start(ctx, inst)
}

// Kill sends SIGKILL to the instance's process and waits for it to exit.
func (c *Cluster) Kill(inst *Instance) {
	inst.Proc.Signal(syscall.SIGKILL)
	<-inst.Proc.Done()
}

// realize turns a placed service into the command its container would run.
func (c *Cluster) realize(p Placement, s compose.Service) (*Instance, error) {
	h := c.Net.Host(p.Host)
	inst := &Instance{Name: p.Instance, Service: s, Host: h, StopSignal: syscall.SIGTERM}
	m := c.mounts(s)
	env := map[string]string{}
	var argv []string
	var user, hostname, workdir string
	switch {
	case s.Dockerfile != "":
		img, err := compose.ReadDockerfile(filepath.Join(c.Compose.Dir, s.Dockerfile))
		if err != nil {
			return nil, err
		}
		maps.Copy(env, img.Env)
		argv = append(slices.Clone(img.Entrypoint), img.Cmd...)
		if len(s.Command) > 0 {
			argv = append(slices.Clone(img.Entrypoint), s.Command...)
		}
		user, workdir = img.User, img.WorkDir
		if img.HealthCheck != nil {
			inst.Health = &Command{Name: s.Name + " health", Argv: img.HealthCheck[1:]}
		}
		// The image's binary: /usr/local/bin/NAME is bin/NAME, copied into the work directory so
		// that the image's unprivileged user can run it wherever the checkout is.
		for _, a := range argv[:1] {
			if strings.HasPrefix(a, "/usr/local/bin/") {
				m = append(m, mount{target: a, host: filepath.Join(c.Work, "bin", filepath.Base(a))})
			}
		}
	default:
		r, ok := imageRunners[imageName(s.Image)]
		if !ok {
			return nil, fmt.Errorf("no way to run image %s on this machine", s.Image)
		}
		run, err := r(c, s)
		if err != nil {
			return nil, err
		}
		maps.Copy(env, run.env)
		argv, user, workdir, m = run.argv, run.user, run.workdir, append(m, run.mounts...)
		if run.health != nil {
			inst.Health = &Command{Name: s.Name + " health", Argv: run.health}
		}
		if len(s.Command) > 0 && len(s.Entrypoint) == 0 && !run.command {
			return nil, fmt.Errorf("image %s: the cluster does not run it with a command (%q)", s.Image, s.Command)
		}
		inst.oneShot, inst.prepare, inst.inProcess = run.oneShot, run.prepare, run.inProcess
		if run.stop != 0 {
			inst.StopSignal = run.stop
		}
	}
	maps.Copy(env, s.Environment)
	if s.User != "" {
		user = s.User
	}
	if s.Hostname != "" {
		hostname = s.Hostname
	}
	if len(s.Entrypoint) > 0 {
		argv = append(slices.Clone(s.Entrypoint), s.Command...)
	}
	for i := range argv {
		argv[i] = m.rewrite(argv[i])
	}
	for k, v := range env {
		env[k] = m.rewriteIn(v, workdir)
	}
	if inst.Health != nil {
		inst.Health.Env, inst.Health.Hostname, inst.Health.User = env, hostname, user
		if inst.Health.Argv[0] == "CMD-SHELL" {
			inst.Health.Argv = []string{"/bin/sh", "-c", inst.Health.Argv[1]}
		}
	} else if len(s.HealthCheck) > 0 {
		hc := &Command{Name: s.Name + " health", Env: env, Hostname: hostname, User: user}
		if s.HealthCheck[0] == "CMD-SHELL" {
			hc.Argv = []string{"/bin/sh", "-c", s.HealthCheck[1]}
		} else {
			hc.Argv = s.HealthCheck[1:]
		}
		inst.Health = hc
	}
	inst.Cmd = Command{Name: p.Instance, Argv: argv, Env: env, User: user, Hostname: hostname, Log: c.LogPath(p.Instance), Dir: c.Work}
	if err := m.prepare(user); err != nil {
		return nil, err
	}
	return inst, nil
}

// imageName strips the tag: postgres:16 -> postgres.
func imageName(image string) string {
	name, _, _ := strings.Cut(image, ":")
	return name
}

// mount maps a path in the container to one on this machine.
type mount struct {
	target, host string
	dir          bool // a directory to create (owned by the container's user)
}

type mounts []mount

// mounts: read-only bind mounts are the repository's files; writable ones and named volumes are
// directories of the work directory (the cluster never writes into the checkout).
func (c *Cluster) mounts(s compose.Service) mounts {
	var m mounts
	for _, v := range s.Volumes {
		switch {
		case v.Named:
			m = append(m, mount{target: v.Target, host: filepath.Join(c.Work, "volumes", v.Source), dir: true})
		case v.ReadOnly:
			m = append(m, mount{target: v.Target, host: v.Source})
		default:
			m = append(m, mount{target: v.Target, host: filepath.Join(c.Work, "binds", s.Name, filepath.Base(v.Source)), dir: true})
		}
	}
	return m
}

// rewrite maps a container path (or a value holding one, like /results/results.jsonl) to this
// machine; anything else is returned unchanged.
func (m mounts) rewrite(v string) string {
	for _, mt := range m {
		if v == mt.target {
			return mt.host
		}
		if strings.HasPrefix(v, strings.TrimSuffix(mt.target, "/")+"/") {
			return mt.host + strings.TrimPrefix(v, strings.TrimSuffix(mt.target, "/"))
		}
	}
	return v
}

// rewriteIn is rewrite for a value that may be a path relative to the container's working
// directory (DYNAMIC_CONFIG_FILE_PATH=config/dynamicconfig/gpujobs.yaml): when it lies in a mount
// it becomes that absolute path here.
func (m mounts) rewriteIn(v, workdir string) string {
	if workdir != "" && v != "" && !filepath.IsAbs(v) && strings.Contains(v, "/") && !strings.Contains(v, ":") {
		abs := filepath.Join(workdir, v)
		if r := m.rewrite(abs); r != abs {
			return r
		}
	}
	return m.rewrite(v)
}

// prepare creates the directories of the mounts, owned by user (as Docker gives a new named
// volume the ownership of the image's directory).
func (m mounts) prepare(user string) error {
	for _, mt := range m {
		if !mt.dir {
			continue
		}
		if _, err := os.Stat(mt.host); err == nil {
			continue
		}
		if err := os.MkdirAll(mt.host, 0o755); err != nil {
			return err
		}
		if user != "" {
			uid, gid, err := lookupUser(user)
			if err != nil {
				return err
			}
			if out, err := exec.Command("chown", uid+":"+gid, mt.host).CombinedOutput(); err != nil {
				return fmt.Errorf("chown %s: %v: %s", mt.host, err, out)
			}
		}
	}
	return nil
}

// copyFile copies src to dst with mode.
func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
