package cluster

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/gpujobs/gpujobs/internal/compose"
)

// imageRun is how this machine runs a container of a third-party image: the program that the
// image would run (Debian's package, or bin/ built from the same Go module), with the image's own
// environment, user and paths.
type imageRun struct {
	argv    []string
	env     map[string]string // the image's ENV; the compose file's environment goes on top
	user    string
	workdir string // the image's WORKDIR: relative paths in the environment start there
	mounts  mounts // paths of the image that are elsewhere here
	health  []string
	oneShot bool
	// command: the runner has applied the compose file's command (else a command is an error,
	// unless the compose file also sets the entrypoint).
	command bool
	stop    syscall.Signal
	// prepare runs before each start (first start: initialise the data directory).
	prepare func(ctx context.Context, c *Cluster, inst *Instance) error
	// inProcess replaces the program with Go code run by the test (for a script whose tool is
	// not available on this machine).
	inProcess func(ctx context.Context, c *Cluster, inst *Instance) error
}

// imageRunners by image name (without tag). Anything else in docker-compose.yml that the cluster
// is asked to run is an error naming the image.
var imageRunners = map[string]func(c *Cluster, s compose.Service) (imageRun, error){
	"postgres":               postgresImage,
	"temporalio/admin-tools": adminToolsImage,
	"temporalio/server":      serverImage,
	"temporalio/ui":          uiImage,
	"rabbitmq":               rabbitmqImage,
}

// Debian's PostgreSQL 15 for the postgres image (the compose file has 16; the schema and the
// server's SQL are the same for both).
const pgBin = "/usr/lib/postgresql/15/bin"

// postgresImage: the postgres image's entrypoint initialises PGDATA on first start (initdb with
// POSTGRES_USER and POSTGRES_PASSWORD, a database named POSTGRES_DB or POSTGRES_USER, password
// auth from every host), then runs postgres listening on every address. Its stop signal is
// SIGINT (fast shutdown).
func postgresImage(c *Cluster, s compose.Service) (imageRun, error) {
	run := imageRun{
		env: map[string]string{
			"PGDATA": "/var/lib/postgresql/data",
			// The image's socket directory; here one of the work directory's. Tools in the
			// container (pg_isready in the health check) find the server through PGHOST.
			"PGHOST": "/var/run/postgresql",
		},
		user:   "postgres",
		mounts: mounts{{target: "/var/run/postgresql", host: filepath.Join(c.Work, "run", s.Name, "postgresql"), dir: true}},
		stop:   syscall.SIGINT,
	}
	// The image's postgresql.conf listens on every address; its socket is in /var/run/postgresql.
	run.argv = []string{pgBin + "/postgres", "-c", "listen_addresses=*", "-k", "/var/run/postgresql"}
	// The compose file's command: postgres and its options (the image's entrypoint runs it).
	if len(s.Command) > 0 {
		if s.Command[0] != "postgres" {
			return run, fmt.Errorf("command %q: the postgres image runs postgres [OPTIONS]", s.Command)
		}
		run.argv = append(run.argv, s.Command[1:]...)
	}
	run.command = true
	run.prepare = func(ctx context.Context, c *Cluster, inst *Instance) error {
		data := inst.Cmd.Env["PGDATA"] // postgres reads it, as in the image
		if _, err := os.Stat(filepath.Join(data, "PG_VERSION")); err == nil {
			return nil // initialised on an earlier start: the volume keeps it
		}
		env := inst.Cmd.Env
		user, pass := env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]
		if user == "" {
			user = "postgres"
		}
		if pass == "" {
			return fmt.Errorf("POSTGRES_PASSWORD is empty: the image refuses to initialise without it")
		}
		if err := os.MkdirAll(data, 0o700); err != nil {
			return err
		}
		pwfile := filepath.Join(c.Work, "run", inst.Name, "pwfile")
		if err := os.WriteFile(pwfile, []byte(pass+"\n"), 0o600); err != nil {
			return err
		}
		defer os.Remove(pwfile)
		for _, p := range []string{data, filepath.Dir(pwfile), pwfile} {
			if out, err := exec.Command("chown", "postgres:postgres", p).CombinedOutput(); err != nil {
				return fmt.Errorf("chown %s: %v: %s", p, err, out)
			}
		}
		asPG := func(stdin string, argv ...string) error {
			cmd := exec.CommandContext(ctx, "setpriv", append([]string{"--reuid", "postgres", "--regid", "postgres", "--init-groups", "--"}, argv...)...)
			cmd.Stdin = strings.NewReader(stdin)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("%s: %v\n%s", filepath.Base(argv[0]), err, out)
			}
			return nil
		}
		if err := asPG("", pgBin+"/initdb", "-D", data, "-U", user, "--pwfile="+pwfile, "-E", "UTF8", "--locale=C.UTF-8",
			"--auth-local=trust", "--auth-host=scram-sha-256"); err != nil {
			return err
		}
		f, err := os.OpenFile(filepath.Join(data, "pg_hba.conf"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		fmt.Fprintln(f, "host all all all scram-sha-256")
		if err := f.Close(); err != nil {
			return err
		}
		db := env["POSTGRES_DB"]
		if db == "" {
			db = user
		}
		if db == "postgres" {
			return nil
		}
		return asPG(fmt.Sprintf("CREATE DATABASE %q;\n", db), pgBin+"/postgres", "--single", "-D", data, "-j", "postgres")
	}
	return run, nil
}

// adminToolsImage: temporal-sql-tool (built from the server's module), the server's SQL schema in
// /etc/temporal/schema, and the compose file's entrypoint script. The temporal CLI is not in it:
// it cannot be built from the Go module proxy (its go.mod replaces a module that is not
// published), so the script that needs it (temporal-setup.sh: the namespace and the search
// attributes) is carried out by Go code of the test through the same API (setupTemporal).
func adminToolsImage(c *Cluster, s compose.Service) (imageRun, error) {
	run := imageRun{
		env: map[string]string{
			"PATH":                filepath.Join(c.Work, "bin") + ":" + os.Getenv("PATH"),
			"TEMPORAL_SCHEMA_DIR": c.SchemaDir,
		},
		oneShot: true,
	}
	for _, v := range s.Volumes {
		if filepath.Base(v.Source) == "temporal-setup.sh" {
			run.inProcess = setupTemporal
		}
	}
	return run, nil
}

// serverImage: `temporal-server start` is `devserver server start` (the same server module and
// embedded config template); entrypoint.sh's BIND_ON_IP handling is in the devserver.
func serverImage(c *Cluster, s compose.Service) (imageRun, error) {
	return imageRun{argv: []string{filepath.Join(c.Work, "bin", "devserver"), "server", "start"}, workdir: "/etc/temporal"}, nil
}

// uiImage: the temporalio/ui image's ui-server, configured from the environment.
func uiImage(c *Cluster, s compose.Service) (imageRun, error) {
	return imageRun{argv: []string{filepath.Join(c.Work, "bin", "devserver"), "ui", "start"}}, nil
}

// rabbitmqImage: Debian's RabbitMQ as the rabbitmq image runs it: node rabbit@HOSTNAME, data in
// /var/lib/rabbitmq (the volume; the Erlang cookie lives there too, as the image's HOME), log to
// stdout, and the default user and password from RABBITMQ_DEFAULT_USER and _PASS, which the image's
// entrypoint writes into rabbitmq.conf. The management plugin of the -management image is not
// started (nothing in gpujobs uses its API).
func rabbitmqImage(c *Cluster, s compose.Service) (imageRun, error) {
	host := s.Hostname
	if host == "" {
		host = s.Name
	}
	etc := filepath.Join(c.Work, "etc", s.Name, "rabbitmq")
	run := imageRun{
		argv: []string{"/usr/lib/rabbitmq/bin/rabbitmq-server"},
		env: map[string]string{
			"HOME":                          "/var/lib/rabbitmq",
			"PATH":                          "/usr/lib/rabbitmq/bin:" + os.Getenv("PATH"),
			"RABBITMQ_NODENAME":             "rabbit@" + host,
			"RABBITMQ_MNESIA_BASE":          "/var/lib/rabbitmq/mnesia",
			"RABBITMQ_LOG_BASE":             "/var/log/rabbitmq",
			"RABBITMQ_LOGS":                 "-",
			"RABBITMQ_CONFIG_FILE":          "/etc/rabbitmq/rabbitmq.conf",
			"RABBITMQ_ENABLED_PLUGINS_FILE": "/etc/rabbitmq/enabled_plugins",
			"RABBITMQ_PID_FILE":             "/var/lib/rabbitmq/mnesia/rabbit.pid",
		},
		user: "rabbitmq",
		mounts: mounts{
			{target: "/etc/rabbitmq", host: etc, dir: true},
			{target: "/var/log/rabbitmq", host: filepath.Join(c.Work, "run", s.Name, "log"), dir: true},
		},
	}
	run.prepare = func(ctx context.Context, c *Cluster, inst *Instance) error {
		env := inst.Cmd.Env
		conf := "listeners.tcp.default = 5672\n"
		if u := env["RABBITMQ_DEFAULT_USER"]; u != "" {
			conf += "default_user = " + u + "\n"
		}
		if p := env["RABBITMQ_DEFAULT_PASS"]; p != "" {
			conf += "default_pass = " + p + "\n"
		}
		dir := filepath.Dir(env["RABBITMQ_CONFIG_FILE"])
		if err := os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
			return err
		}
		return os.WriteFile(env["RABBITMQ_ENABLED_PLUGINS_FILE"], []byte("[].\n"), 0o644)
	}
	return run, nil
}
