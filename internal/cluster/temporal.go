package cluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/gpujobs/gpujobs/internal/temporalx"
)

// Resolve turns host:port into address:port as the host sees it (its /etc/hosts, which
// `ip netns exec` mounts from /etc/netns/NS/hosts). An address is returned as it is.
func (h *Host) Resolve(hostport string) (string, error) {
	name, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	if net.ParseIP(name) != nil {
		return hostport, nil
	}
	f, err := os.Open(filepath.Join("/etc/netns", h.NS, "hosts"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		for _, n := range fields[min(1, len(fields)):] {
			if n == name {
				return net.JoinHostPort(fields[0], port), nil
			}
		}
	}
	return "", fmt.Errorf("host %s does not know the name %s", h.Spec.Name, name)
}

// TemporalClient connects to Temporal from the host (address as the host's programs have it,
// e.g. temporal:7233).
func (h *Host) TemporalClient(ctx context.Context, address, namespace string) (client.Client, error) {
	addr, err := h.Resolve(address)
	if err != nil {
		return nil, err
	}
	dial := h.Dialer()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return client.DialContext(ctx, client.Options{
		HostPort:  addr,
		Namespace: namespace,
		Logger:    temporalx.Logger(zap.NewNop()),
		ConnectionOptions: client.ConnectionOptions{DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) { return dial(ctx, "tcp", a) }),
		}},
	})
}

var attributesLine = regexp.MustCompile(`(?m)^attributes="([^"]*)"`)

// setupTemporal does what deployments/k8s/base/temporal-setup.sh (the temporal-setup one-shot)
// does with the temporal CLI, through the same API: wait for the frontend, create the namespace
// with the retention the script uses unless it exists, and add each search attribute the
// script lists (read from the script, so the two cannot differ) unless the namespace has it.
func setupTemporal(ctx context.Context, c *Cluster, inst *Instance) error {
	var script string
	for _, v := range inst.Service.Volumes {
		if filepath.Base(v.Source) == "temporal-setup.sh" {
			script = v.Source
		}
	}
	b, err := os.ReadFile(script)
	if err != nil {
		return err
	}
	m := attributesLine.FindSubmatch(b)
	if m == nil {
		return fmt.Errorf("%s: no attributes=\"...\" line", script)
	}
	env := inst.Cmd.Env
	ns := env["TEMPORAL_NAMESPACE"]
	if ns == "" {
		ns = "default"
	}
	retention, err := time.ParseDuration(or(env["TEMPORAL_RETENTION"], "168h"))
	if err != nil {
		return fmt.Errorf("TEMPORAL_RETENTION: %w", err)
	}
	logf := func(format string, args ...any) { c.appendLog(inst, format, args...) }
	// retry, as the script's: until it succeeds, for up to two minutes.
	retry := func(what string, f func(context.Context) error) error {
		deadline := time.Now().Add(2 * time.Minute)
		for {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := f(cctx)
			cancel()
			if err == nil {
				return nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("setup: gave up on %s: %w", what, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	logf("setup: waiting for Temporal at %s", env["TEMPORAL_ADDRESS"])
	var cl client.Client
	if err := retry("temporal operator cluster health", func(ctx context.Context) error {
		var err error
		if cl == nil {
			if cl, err = inst.Host.TemporalClient(ctx, env["TEMPORAL_ADDRESS"], ns); err != nil {
				return err
			}
		}
		_, err = cl.CheckHealth(ctx, &client.CheckHealthRequest{})
		return err
	}); err != nil {
		return err
	}
	defer cl.Close()
	wf := cl.WorkflowService()
	if err := retry("namespace "+ns, func(ctx context.Context) error {
		_, err := wf.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
		var notFound *serviceerror.NamespaceNotFound
		if !errors.As(err, &notFound) {
			return err
		}
		logf("setup: creating namespace %s (retention %s)", ns, retention)
		_, err = wf.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace: ns, WorkflowExecutionRetentionPeriod: durationpb.New(retention),
		})
		var exists *serviceerror.NamespaceAlreadyExists
		if errors.As(err, &exists) {
			return nil
		}
		return err
	}); err != nil {
		return err
	}
	logf("setup: namespace %s", ns)
	for _, a := range strings.Fields(string(m[1])) {
		name, typ, _ := strings.Cut(a, ":")
		v, ok := enumspb.IndexedValueType_shorthandValue[typ]
		if !ok {
			return fmt.Errorf("%s: unknown search attribute type %s", script, typ)
		}
		logf("setup: search attribute %s (%s)", name, typ)
		if err := retry("search attribute "+name, func(ctx context.Context) error {
			have, err := cl.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
			if err != nil {
				return err
			}
			if _, ok := have.GetCustomAttributes()[name]; ok {
				return nil
			}
			_, err = cl.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
				Namespace: ns, SearchAttributes: map[string]enumspb.IndexedValueType{name: enumspb.IndexedValueType(v)},
			})
			var exists *serviceerror.AlreadyExists
			if errors.As(err, &exists) {
				return nil
			}
			return err
		}); err != nil {
			return err
		}
	}
	logf("setup: done")
	return nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// appendLog writes a line to an instance's log, as its program would.
func (c *Cluster) appendLog(inst *Instance, format string, args ...any) {
	f, err := os.OpenFile(inst.Cmd.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, format+"\n", args...)
}
