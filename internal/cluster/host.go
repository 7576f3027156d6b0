package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// HostSpec names a host, its address and the other names it answers to (the compose service
// names of what it runs).
type HostSpec struct {
	Name    string
	Addr    string
	Aliases []string
}

// Network is the hosts of one cluster: network namespaces PREFIX-NAME linked to a bridge in
// PREFIX-net (scripts/cluster-net.sh creates and removes them).
type Network struct {
	Prefix string
	Script string // scripts/cluster-net.sh
	Hosts  map[string]*Host
}

// Host is one network namespace.
type Host struct {
	Spec HostSpec
	NS   string // the namespace's name: PREFIX-NAME
	net  *Network
}

// NewNetwork creates the namespaces, the bridge and the links. On error, what was created is
// removed again.
func NewNetwork(ctx context.Context, script, prefix string, hosts []HostSpec) (*Network, error) {
	n := &Network{Prefix: prefix, Script: script, Hosts: map[string]*Host{}}
	args := []string{"up", prefix}
	for _, h := range hosts {
		spec := h.Name + "=" + h.Addr
		for _, a := range h.Aliases {
			spec += "," + a
		}
		args = append(args, spec)
		n.Hosts[h.Name] = &Host{Spec: h, NS: prefix + "-" + h.Name, net: n}
	}
	if out, err := exec.CommandContext(ctx, script, args...).CombinedOutput(); err != nil {
		n.Down() //nolint:errcheck // the error that matters is the one above
		return nil, fmt.Errorf("create the hosts: %v\n%s", err, out)
	}
	return n, nil
}

// Down kills every process of the hosts and removes the namespaces and links.
func (n *Network) Down() error {
	out, err := exec.Command(n.Script, "down", n.Prefix).CombinedOutput()
	if err != nil {
		return fmt.Errorf("remove the hosts: %v\n%s", err, out)
	}
	return nil
}

// Leftovers lists what of the network still exists (namespaces, links, /etc/netns entries);
// empty when Down has removed everything.
func (n *Network) Leftovers() string {
	out, err := exec.Command(n.Script, "check", n.Prefix).CombinedOutput()
	if err != nil {
		return strings.TrimSpace(string(out))
	}
	return ""
}

// Host returns the named host; it panics on an unknown name (a mistake in the test).
func (n *Network) Host(name string) *Host {
	h, ok := n.Hosts[name]
	if !ok {
		panic("cluster: no host " + name)
	}
	return h
}

// Cut takes the host's link down: nothing reaches it or leaves it until Heal.
func (h *Host) Cut() error { return h.link("cut") }

// Heal brings the host's link back up.
func (h *Host) Heal() error { return h.link("heal") }

func (h *Host) link(op string) error {
	out, err := exec.Command(h.net.Script, op, h.net.Prefix, h.Spec.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", op, h.Spec.Name, err, out)
	}
	return nil
}

// Pids lists the processes running in the host.
func (h *Host) Pids() []int {
	out, _ := exec.Command("ip", "netns", "pids", h.NS).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// KillAll sends SIGKILL to every process of the host, as a power cut would end them, and waits
// until none is left.
func (h *Host) KillAll(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pids := h.Pids()
		if len(pids) == 0 {
			return nil
		}
		for _, p := range pids {
			syscall.Kill(p, syscall.SIGKILL) //nolint:errcheck // gone already is fine
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("host %s: processes %v survive SIGKILL", h.Spec.Name, pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Command is a command to run in a host, as a container of a service would run it.
type Command struct {
	Name     string   // for logs: the service, or what the command does
	Argv     []string // program and arguments
	Env      map[string]string
	Dir      string // working directory
	User     string // "uid:gid", a user name, or empty for root
	Hostname string // the host name the process sees (a UTS namespace of its own)
	Log      string // file that gets stdout and stderr (appended)
	output   io.Writer
}

// Start runs cmd in the host: `ip netns exec` puts it in the network namespace (and mounts the
// host's /etc/hosts), unshare gives it its own host name and /dev/shm, setpriv its user. Every step execs
// the next, so the returned process's pid is the program's own.
func (h *Host) Start(cmd Command) (*Proc, error) {
	// As a container has: its own host name, and its own /dev/shm (PostgreSQL's shared memory,
	// the workers' memory ledger), which goes away with the process.
	argv := []string{"ip", "netns", "exec", h.NS, "unshare", "--uts", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", `mount -t tmpfs -o mode=1777,size=512m shm /dev/shm && hostname "$0" && exec "$@"`}
	hostname := cmd.Hostname
	if hostname == "" {
		hostname = h.Spec.Name
	}
	argv = append(argv, hostname)
	if cmd.User != "" {
		uid, gid, err := lookupUser(cmd.User)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd.Name, err)
		}
		argv = append(argv, "setpriv", "--reuid", uid, "--regid", gid, "--clear-groups", "--")
	}
	argv = append(argv, cmd.Argv...)
	c := exec.Command(argv[0], argv[1:]...)
	c.Dir = cmd.Dir
	c.Env = environ(cmd.Env)
	var logf *os.File
	if cmd.Log != "" {
		var err error
		if logf, err = os.OpenFile(cmd.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(logf, "=== %s: %s started on %s: %s\n", time.Now().Format(time.RFC3339Nano), cmd.Name, h.Spec.Name, strings.Join(cmd.Argv, " "))
		c.Stdout, c.Stderr = logf, logf
	}
	if cmd.output != nil {
		w := cmd.output
		if logf != nil {
			w = io.MultiWriter(logf, cmd.output)
		}
		c.Stdout, c.Stderr = w, w
	}
	// Its own process group, so that a terminal's ^C reaches the test, which then tears down.
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("start %s on %s: %w", cmd.Name, h.Spec.Name, err)
	}
	p := &Proc{Name: cmd.Name, Host: h, Pid: c.Process.Pid, Log: cmd.Log, cmd: c, done: make(chan struct{})}
	go func() {
		p.err = c.Wait()
		if logf != nil {
			fmt.Fprintf(logf, "=== %s: %s exited: %v\n", time.Now().Format(time.RFC3339Nano), cmd.Name, p.err)
			logf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Run runs cmd in the host to completion and returns its combined output (also appended to
// cmd.Log when set).
func (h *Host) Run(ctx context.Context, cmd Command) (string, error) {
	var out syncWriter
	cmd.output = &out
	p, err := h.Start(cmd)
	if err != nil {
		return "", err
	}
	select {
	case <-p.done:
	case <-ctx.Done():
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
	return out.String(), p.err
}

func environ(env map[string]string) []string {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := []string{"PATH=" + os.Getenv("PATH")}
	for _, k := range keys {
		if k == "PATH" {
			out[0] = "PATH=" + env[k]
			continue
		}
		out = append(out, k+"="+env[k])
	}
	return out
}

// lookupUser turns "uid:gid", "uid" or a user name into numeric ids.
func lookupUser(u string) (uid, gid string, err error) {
	name, group, _ := strings.Cut(u, ":")
	if _, err := strconv.Atoi(name); err == nil {
		if group == "" {
			group = name
		}
		return name, group, nil
	}
	out, err := exec.Command("id", "-u", name).Output()
	if err != nil {
		return "", "", fmt.Errorf("user %s: %w", name, err)
	}
	uid = strings.TrimSpace(string(out))
	out, err = exec.Command("id", "-g", name).Output()
	if err != nil {
		return "", "", fmt.Errorf("user %s: %w", name, err)
	}
	return uid, strings.TrimSpace(string(out)), nil
}

// Proc is a process started in a host.
type Proc struct {
	Name string
	Host *Host
	Pid  int
	Log  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Signal sends s to the process, if it still runs.
func (p *Proc) Signal(s syscall.Signal) {
	select {
	case <-p.done:
	default:
		syscall.Kill(p.Pid, s) //nolint:errcheck
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Proc) Err() error { return p.err }

// Stop sends SIGTERM, then SIGKILL after grace, and waits for the process to exit.
func (p *Proc) Stop(grace time.Duration) {
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// Dialer returns a dialer whose connections start in the host: the test's own clients
// (Temporal, HTTP, AMQP) connect from there, as a program on that host would. addr must be an
// IP address and port; names would be resolved in the test's namespace, not the host's.
func (h *Host) Dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	path := "/run/netns/" + h.NS
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			// The socket is created in the namespace of the thread that creates it, so this
			// goroutine holds its thread while it is in the host's namespace. If switching back
			// fails the thread stays locked and Go discards it when the goroutine ends.
			runtime.LockOSThread()
			restore, err := enterNetNS(path)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{nil, err}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if restore() == nil {
				runtime.UnlockOSThread()
			}
			ch <- result{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// enterNetNS moves the calling thread into the network namespace at path and returns the
// function that moves it back.
func enterNetNS(path string) (restore func() error, err error) {
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, err
	}
	target, err := os.Open(path)
	if err != nil {
		orig.Close()
		return nil, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		orig.Close()
		return nil, fmt.Errorf("enter %s: %w", filepath.Base(path), err)
	}
	return func() error {
		defer orig.Close()
		return unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET)
	}, nil
}

// syncWriter is a goroutine-safe buffer.
type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(b)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}
