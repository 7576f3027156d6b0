package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/server/common/searchattribute/sadefs"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// The arguments go.temporal.io/sdk v1.51.0 testsuite.StartDevServer passes (prepareCommand in
// testsuite/devserver.go), with every optional field set.
var sdkArgs = []string{
	"server", "start-dev",
	"--ip", "127.0.0.1", "--port", "7233",
	"--namespace", "sdk-ns",
	"--dynamic-config-value", "frontend.enableServerVersionCheck=false",
	"--log-level", "error",
	"--log-format", "pretty",
	"--headless",
	"--db-filename", "/tmp/x.db",
	"--ui-port", "9000",
	"--search-attribute", "Score=Double",
}

func TestParseArgs(t *testing.T) {
	t.Run("sdk command line", func(t *testing.T) {
		cfg, err := parseArgs(sdkArgs, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.IP != "127.0.0.1" || cfg.Port != 7233 || cfg.UIPort != 9000 || !cfg.Headless ||
			cfg.DBFilename != "/tmp/x.db" || cfg.LogLevel != "error" || cfg.LogFormat != "pretty" {
			t.Errorf("got %+v", cfg)
		}
		if fmt.Sprint(cfg.Namespaces) != "[default sdk-ns]" {
			t.Errorf("namespaces %v, want [default sdk-ns]", cfg.Namespaces)
		}
		if cfg.SearchAttributes["Score"] != enumspb.INDEXED_VALUE_TYPE_DOUBLE || cfg.SearchAttributes["JobType"] != enumspb.INDEXED_VALUE_TYPE_KEYWORD {
			t.Errorf("search attributes %v", cfg.SearchAttributes)
		}
		if v, ok := cfg.DynamicConfig["frontend.enableServerVersionCheck"]; !ok || v != false {
			t.Errorf("dynamic config override: %v", v)
		}
	})

	t.Run("defaults", func(t *testing.T) {
		plain, err := parseArgs(nil, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if plain.DBFilename != defaultDBFile || plain.IP != "127.0.0.1" || plain.Port != 7233 || plain.UIPort != 8233 || plain.LogLevel != "warn" {
			t.Errorf("plain defaults: %+v", plain)
		}
		// Like the CLI, and as the SDK's DevServerOptions.DBFilename documents: no file unless asked.
		startDev, err := parseArgs([]string{"server", "start-dev"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if startDev.DBFilename != "" {
			t.Errorf("server start-dev: db %q, want in memory", startDev.DBFilename)
		}
	})

	t.Run("flags around the subcommand words, short forms, CLI globals", func(t *testing.T) {
		cfg, err := parseArgs([]string{"--log-level", "info", "server", "--env", "x", "start-dev",
			"-p", "7000", "-n", "a", "--namespace=b", "-f", "", "--color", "never", "--disable-config-file", "--ip", "localhost"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Port != 7000 || cfg.UIPort != 8000 || cfg.DBFilename != "" || cfg.LogLevel != "info" || cfg.IP != "127.0.0.1" ||
			fmt.Sprint(cfg.Namespaces) != "[default a b]" {
			t.Errorf("got %+v", cfg)
		}
	})

	t.Run("dynamic config values are typed as the server wants", func(t *testing.T) {
		cfg, err := parseArgs([]string{"--dynamic-config-value", "history.transferProcessorMaxPollRPS=50",
			"--dynamic-config-value", "x.ratio=0.5", "--dynamic-config-value", `x.s="str"`,
			"--dynamic-config-value", `x.list=[{"value":3,"constraints":{}}]`}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if v := cfg.DynamicConfig["history.transferProcessorMaxPollRPS"]; v != 50 {
			t.Errorf("override: %#v, want int 50", v)
		}
		if v := cfg.DynamicConfig["x.ratio"]; v != 0.5 {
			t.Errorf("float: %#v", v)
		}
		if v := cfg.DynamicConfig["x.s"]; v != "str" {
			t.Errorf("string: %#v", v)
		}
		if v := cfg.DynamicConfig["x.list"].([]any)[0].(map[string]any)["value"]; v != 3 {
			t.Errorf("nested number: %#v, want int 3", v)
		}
		if v := cfg.DynamicConfig["history.timerProcessorMaxPollRPS"]; v != 10000 {
			t.Errorf("default kept: %#v", v)
		}
	})

	t.Run("search attribute types", func(t *testing.T) {
		for in, want := range map[string]enumspb.IndexedValueType{
			"A=keyword": enumspb.INDEXED_VALUE_TYPE_KEYWORD, "A=KeywordList": enumspb.INDEXED_VALUE_TYPE_KEYWORD_LIST,
			"A=INDEXED_VALUE_TYPE_DATETIME": enumspb.INDEXED_VALUE_TYPE_DATETIME, "A=Bool": enumspb.INDEXED_VALUE_TYPE_BOOL,
		} {
			_, got, err := parseSearchAttribute(in)
			if err != nil || got != want {
				t.Errorf("%s: got %v, %v; want %v", in, got, err, want)
			}
		}
	})

	t.Run("help", func(t *testing.T) {
		if _, err := parseArgs([]string{"--help"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("got %v, want flag.ErrHelp", err)
		}
	})

	for _, bad := range [][]string{
		{"--no-such-flag"},
		{"server", "start"},
		{"start-dev"},
		{"--port", "0"},
		{"--port", "x"},
		{"--log-level", "loud"},
		{"--log-format", "xml"},
		{"--ip", "example.com"},
		{"--search-attribute", "JobType"},
		{"--search-attribute", "X=Float"},
		{"--search-attribute", "WorkflowId=Keyword"},
		{"--search-attribute", "bad-name=Int"},
		{"--dynamic-config-value", "k=unquoted"},
		{"--dynamic-config-value", "=1"},
		{"--sqlite-pragma", "nope"},
	} {
		if _, err := parseArgs(bad, io.Discard); !errors.Is(err, errUsage) {
			t.Errorf("%q: got %v, want a usage error", bad, err)
		}
	}
}

// devServerForTest runs run() in the background on free ports and returns the frontend address,
// the config, and a stop function that cancels run and fails the test unless run returns nil.
// Cleanup calls stop too.
func devServerForTest(t *testing.T, extra ...string) (string, config, func()) {
	t.Helper()
	port, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	uiPort, err := freePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(port),
		"--ui-port", strconv.Itoa(uiPort)}, extra...)
	cfg, err := parseArgs(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, zap.NewNop(), io.Discard) }()
	stop := sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("run did not return within 30s of cancel")
		}
	})
	t.Cleanup(stop)
	return "127.0.0.1:" + strconv.Itoa(port), cfg, stop
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// eventually calls f until it returns nil or the deadline passes, then fails with f's last error.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServerInMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server")
	}
	addr, cfg, _ := devServerForTest(t, "--db-filename", "", "--namespace", "second", "--search-attribute", "Score=Double")
	conn := dial(t, addr)
	ws := workflowservice.NewWorkflowServiceClient(conn)
	op := operatorservice.NewOperatorServiceClient(conn)
	ctx := t.Context()

	eventually(t, 20*time.Second, "describe namespace default", func() error {
		_, err := ws.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
		return err
	})
	for _, ns := range []string{"default", "second"} {
		resp, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
		if err != nil {
			t.Fatalf("list search attributes of %s: %v", ns, err)
		}
		for name, want := range cfg.SearchAttributes {
			if got := resp.GetCustomAttributes()[name]; got != want {
				t.Errorf("namespace %s: search attribute %s is %v, want %v", ns, name, got, want)
			}
		}
	}

	// A search attribute is only usable if a workflow can carry it and a query can find it.
	_, err := ws.StartWorkflowExecution(ctx, &workflowservice.StartWorkflowExecutionRequest{
		Namespace:    "default",
		WorkflowId:   "sa-check",
		WorkflowType: &commonpb.WorkflowType{Name: "Job"},
		TaskQueue:    &taskqueuepb.TaskQueue{Name: "nobody-polls"},
		RequestId:    "sa-check",
		SearchAttributes: &commonpb.SearchAttributes{IndexedFields: map[string]*commonpb.Payload{
			"JobType":  sadefs.MustEncodeValue("matrix_multiply", enumspb.INDEXED_VALUE_TYPE_KEYWORD),
			"Priority": sadefs.MustEncodeValue(int64(2), enumspb.INDEXED_VALUE_TYPE_INT),
		}},
	})
	if err != nil {
		t.Fatalf("start workflow with search attributes: %v", err)
	}
	eventually(t, 10*time.Second, "visibility query", func() error {
		resp, err := ws.ListWorkflowExecutions(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace: "default", Query: `JobType = "matrix_multiply" AND Priority <= 3`,
		})
		if err != nil {
			return err
		}
		if n := len(resp.GetExecutions()); n != 1 {
			return fmt.Errorf("%d executions, want 1", n)
		}
		return nil
	})

	uiURL := fmt.Sprintf("http://127.0.0.1:%d/api/v1/namespaces", cfg.UIPort)
	eventually(t, 20*time.Second, "UI "+uiURL, func() error {
		resp, err := http.Get(uiURL)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		var body struct {
			Namespaces []struct {
				NamespaceInfo struct{ Name string }
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return fmt.Errorf("not JSON: %w", err)
		}
		for _, ns := range body.Namespaces {
			if ns.NamespaceInfo.Name == "default" {
				return nil
			}
		}
		return fmt.Errorf("namespace default not in %+v", body)
	})
}

// TestServerFileRestart starts twice on one file: the second start must find the schema, the
// namespace and a workflow in place, and must add a search attribute the first start lacked.
func TestServerFileRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server twice")
	}
	db := filepath.Join(t.TempDir(), "nested", "temporal.db")

	addr, _, stop := devServerForTest(t, "--headless", "--db-filename", db)
	ws := workflowservice.NewWorkflowServiceClient(dial(t, addr))
	eventually(t, 20*time.Second, "describe namespace default", func() error {
		_, err := ws.DescribeNamespace(t.Context(), &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
		return err
	})
	_, err := ws.StartWorkflowExecution(t.Context(), &workflowservice.StartWorkflowExecutionRequest{
		Namespace: "default", WorkflowId: "survives", RequestId: "survives",
		WorkflowType: &commonpb.WorkflowType{Name: "Job"}, TaskQueue: &taskqueuepb.TaskQueue{Name: "nobody-polls"},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop()

	addr, _, _ = devServerForTest(t, "--headless", "--db-filename", db, "--search-attribute", "Added=Bool")
	conn := dial(t, addr)
	ws = workflowservice.NewWorkflowServiceClient(conn)
	eventually(t, 20*time.Second, "describe workflow from the first run", func() error {
		_, err := ws.DescribeWorkflowExecution(t.Context(), &workflowservice.DescribeWorkflowExecutionRequest{
			Namespace: "default", Execution: &commonpb.WorkflowExecution{WorkflowId: "survives"},
		})
		return err
	})
	resp, err := operatorservice.NewOperatorServiceClient(conn).ListSearchAttributes(t.Context(),
		&operatorservice.ListSearchAttributesRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]enumspb.IndexedValueType{
		"JobType": enumspb.INDEXED_VALUE_TYPE_KEYWORD, "Added": enumspb.INDEXED_VALUE_TYPE_BOOL,
	} {
		if got := resp.GetCustomAttributes()[name]; got != want {
			t.Errorf("search attribute %s is %v, want %v", name, got, want)
		}
	}
}
