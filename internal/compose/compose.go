// Package compose reads docker-compose.yml as `docker compose` does, for the part gpujobs uses:
// services with their image or build, environment (env_file, then environment; anchors and merge
// keys resolved; ${VAR} forms substituted), command, volumes, depends_on and health check, and a
// Dockerfile's final stage (ENV, USER, ENTRYPOINT, CMD, HEALTHCHECK). The cluster test runs
// what it reads, and make test-deploy checks that it reads what compose-go reads. It must not
// grow into a container runtime: anything it does not understand is an error.
package compose

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// File is the part of docker-compose.yml the cluster runs: each service's image, environment,
// command, volumes, start order and health check, with variables substituted as `docker compose`
// does. It is the one source of the services' settings: the cluster gives each process exactly
// this environment, and make test-deploy checks the same file with compose-go.
type File struct {
	Dir      string // the directory of the file; relative paths in it start here
	Services map[string]Service
}

// Service is one service of the compose file.
type Service struct {
	Name        string
	Image       string
	Hostname    string
	User        string
	Entrypoint  []string
	Command     []string
	Environment map[string]string // env_file first, then environment, as compose merges them
	Volumes     []Volume
	DependsOn   map[string]string // service -> condition (service_started, service_healthy, ...)
	HealthCheck []string          // the test: ["CMD", ...] or ["CMD-SHELL", "..."]; empty: none
	Dockerfile  string            // build.dockerfile, relative to Dir; empty: no build
	Profiles    []string
}

// Volume is a short-syntax volume: a host path (bind mount, absolute after loading) or a named
// volume, mounted at Target.
type Volume struct {
	Source   string
	Target   string
	Named    bool
	ReadOnly bool
}

// rawService is a service as YAML has it, before interpolation and normalisation.
type rawService struct {
	Image       string         `yaml:"image"`
	Hostname    string         `yaml:"hostname"`
	User        string         `yaml:"user"`
	Entrypoint  stringOrList   `yaml:"entrypoint"`
	Command     stringOrList   `yaml:"command"`
	EnvFile     stringOrList   `yaml:"env_file"`
	Environment yaml.Node      `yaml:"environment"`
	Volumes     []string       `yaml:"volumes"`
	DependsOn   yaml.Node      `yaml:"depends_on"`
	HealthCheck map[string]any `yaml:"healthcheck"`
	Build       yaml.Node      `yaml:"build"`
	Profiles    []string       `yaml:"profiles"`
}

// stringOrList is a compose field that may be written as one string or as a list.
type stringOrList []string

func (s *stringOrList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = strings.Fields(n.Value)
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

// Load reads a compose file, substituting ${VAR}, ${VAR:-default}, ${VAR-default},
// ${VAR:?error}, ${VAR?error} and $$ from vars (the variables of .env and the shell), as
// `docker compose` does. A required variable that is missing is an error naming it.
func Load(path string, vars map[string]string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := interpolateNode(&doc, vars, map[*yaml.Node]bool{}); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var raw struct {
		Services map[string]rawService `yaml:"services"`
	}
	if err := doc.Decode(&raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c := &File{Dir: filepath.Dir(path), Services: map[string]Service{}}
	for name, r := range raw.Services {
		s, err := c.service(name, r)
		if err != nil {
			return nil, fmt.Errorf("%s: service %s: %w", path, name, err)
		}
		c.Services[name] = s
	}
	return c, nil
}

func (c *File) service(name string, r rawService) (Service, error) {
	s := Service{
		Name: name, Image: r.Image, Hostname: r.Hostname, User: r.User,
		Entrypoint: r.Entrypoint, Command: r.Command, Profiles: r.Profiles,
		Environment: map[string]string{}, DependsOn: map[string]string{},
	}
	for _, f := range r.EnvFile {
		env, err := ReadEnvFile(c.abs(f))
		if err != nil {
			return s, err
		}
		for k, v := range env {
			s.Environment[k] = v
		}
	}
	env, err := decodeEnvironment(&r.Environment)
	if err != nil {
		return s, err
	}
	for k, v := range env {
		s.Environment[k] = v
	}
	for _, v := range r.Volumes {
		vol, err := c.volume(v)
		if err != nil {
			return s, err
		}
		s.Volumes = append(s.Volumes, vol)
	}
	if s.DependsOn, err = decodeDependsOn(&r.DependsOn); err != nil {
		return s, err
	}
	if t, ok := r.HealthCheck["test"]; ok {
		switch t := t.(type) {
		case string:
			s.HealthCheck = []string{"CMD-SHELL", t}
		case []any:
			for _, x := range t {
				s.HealthCheck = append(s.HealthCheck, fmt.Sprint(x))
			}
		}
	}
	build := resolveAlias(&r.Build)
	switch build.Kind {
	case yaml.ScalarNode:
		s.Dockerfile = filepath.Join(build.Value, "Dockerfile")
	case yaml.MappingNode:
		var b struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		}
		if err := build.Decode(&b); err != nil {
			return s, err
		}
		s.Dockerfile = b.Dockerfile
		if s.Dockerfile == "" {
			s.Dockerfile = filepath.Join(b.Context, "Dockerfile")
		}
	}
	return s, nil
}

func (c *File) abs(p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.Dir, p)
}

// volume parses SOURCE:TARGET[:ro]; a source that is not a path is a named volume.
func (c *File) volume(spec string) (Volume, error) {
	parts := strings.Split(spec, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return Volume{}, fmt.Errorf("volume %q: want SOURCE:TARGET[:MODE] (the short syntax)", spec)
	}
	v := Volume{Source: parts[0], Target: parts[1], ReadOnly: len(parts) == 3 && strings.Contains(parts[2], "ro")}
	if strings.HasPrefix(v.Source, ".") || strings.HasPrefix(v.Source, "/") || strings.HasPrefix(v.Source, "~") {
		v.Source = c.abs(v.Source)
	} else {
		v.Named = true
	}
	return v, nil
}

// decodeEnvironment reads environment as a map (KEY: value) or a list (KEY=value); merge keys
// (<<: [*anchor, ...]) are resolved by the YAML decoder.
func decodeEnvironment(n *yaml.Node) (map[string]string, error) {
	n = resolveAlias(n)
	env := map[string]string{}
	switch n.Kind {
	case 0:
	case yaml.MappingNode:
		var m map[string]any
		if err := n.Decode(&m); err != nil {
			return nil, err
		}
		for k, v := range m {
			if v == nil {
				continue // KEY with no value: taken from the shell, which the cluster does not pass
			}
			env[k] = scalarString(v)
		}
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return nil, err
		}
		for _, kv := range l {
			if k, v, ok := strings.Cut(kv, "="); ok {
				env[k] = v
			}
		}
	default:
		return nil, fmt.Errorf("environment: want a map or a list")
	}
	return env, nil
}

// scalarString writes a YAML scalar as compose passes it to a container (true, 5672, 1.5).
func scalarString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		if v {
			return "true"
		}
		return "false"
	default:
		return fmt.Sprint(v)
	}
}

func decodeDependsOn(n *yaml.Node) (map[string]string, error) {
	n = resolveAlias(n)
	deps := map[string]string{}
	switch n.Kind {
	case 0:
	case yaml.SequenceNode:
		var l []string
		if err := n.Decode(&l); err != nil {
			return nil, err
		}
		for _, d := range l {
			deps[d] = "service_started"
		}
	case yaml.MappingNode:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := n.Decode(&m); err != nil {
			return nil, err
		}
		for d, c := range m {
			if c.Condition == "" {
				c.Condition = "service_started"
			}
			deps[d] = c.Condition
		}
	default:
		return nil, fmt.Errorf("depends_on: want a map or a list")
	}
	return deps, nil
}

// resolveAlias returns the node an alias (*anchor) stands for.
func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// interpolateNode substitutes variables in every scalar value (not in keys), once per node even
// when aliases reach a node several times.
func interpolateNode(n *yaml.Node, vars map[string]string, seen map[*yaml.Node]bool) error {
	if seen[n] {
		return nil
	}
	seen[n] = true
	switch n.Kind {
	case yaml.ScalarNode:
		v, err := Interpolate(n.Value, vars)
		if err != nil {
			return err
		}
		n.Value = v
	case yaml.MappingNode:
		for i := 1; i < len(n.Content); i += 2 {
			if err := interpolateNode(n.Content[i], vars, seen); err != nil {
				return err
			}
		}
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			if err := interpolateNode(c, vars, seen); err != nil {
				return err
			}
		}
	case yaml.AliasNode:
		return interpolateNode(n.Alias, vars, seen)
	}
	return nil
}

var varRE = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)`)

// Interpolate substitutes compose's variable forms in s. An unset or empty variable under :? (or
// an unset one under ?) is an error with the message the file gives.
func Interpolate(s string, vars map[string]string) (string, error) {
	var firstErr error
	out := varRE.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		sub := varRE.FindStringSubmatch(m)
		name, op, arg := sub[1], sub[2], sub[3]
		if name == "" {
			name = sub[4]
		}
		v, set := vars[name]
		switch op {
		case "":
			return v
		case ":-":
			if v == "" {
				return arg
			}
		case "-":
			if !set {
				return arg
			}
		case ":?", "?":
			if (op == ":?" && v == "") || !set {
				if firstErr == nil {
					firstErr = fmt.Errorf("required variable %s is missing a value: %s", name, arg)
				}
			}
		}
		return v
	})
	return out, firstErr
}

// ReadEnvFile reads a .env-style file: KEY=VALUE lines, # comments, blank lines; a value may be
// quoted with ' or ". It is the subset of compose's format that gpujobs's files use.
func ReadEnvFile(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			return nil, fmt.Errorf("%s:%d: want KEY=VALUE", path, n)
		}
		v = strings.TrimSpace(v)
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env[strings.TrimSpace(k)] = v
	}
	return env, sc.Err()
}

// Image is what a Dockerfile's final stage sets for its containers: ENV, USER, WORKDIR,
// ENTRYPOINT and CMD (JSON form) and the HEALTHCHECK's command.
type Image struct {
	Env         map[string]string
	User        string
	WorkDir     string
	Entrypoint  []string
	Cmd         []string
	HealthCheck []string
}

var (
	dockerfileInstr = regexp.MustCompile(`^(?i)(FROM|ENV|USER|WORKDIR|ENTRYPOINT|CMD|HEALTHCHECK)\s+(.*)$`)
	envPair         = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)`)
	jsonList        = regexp.MustCompile(`^\[(.*)\]$`)
)

// ReadDockerfile reads the final stage of a Dockerfile (continuation lines joined).
func ReadDockerfile(path string) (Image, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Image{}, err
	}
	var lines []string
	cur := ""
	for _, l := range strings.Split(string(b), "\n") {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasSuffix(t, "\\") {
			cur += strings.TrimSuffix(t, "\\") + " "
			continue
		}
		lines = append(lines, cur+t)
		cur = ""
	}
	img := Image{Env: map[string]string{}}
	for _, l := range lines {
		m := dockerfileInstr.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		arg := strings.TrimSpace(m[2])
		switch strings.ToUpper(m[1]) {
		case "FROM":
			img = Image{Env: map[string]string{}} // a new stage starts afresh
		case "ENV":
			for _, p := range envPair.FindAllStringSubmatch(arg, -1) {
				img.Env[p[1]] = strings.Trim(p[2], `"`)
			}
		case "USER":
			img.User = arg
		case "WORKDIR":
			img.WorkDir = arg
		case "ENTRYPOINT":
			img.Entrypoint = parseExecForm(arg)
		case "CMD":
			img.Cmd = parseExecForm(arg)
		case "HEALTHCHECK":
			if i := strings.Index(arg, "CMD "); i >= 0 {
				img.HealthCheck = append([]string{"CMD"}, parseExecForm(strings.TrimSpace(arg[i+4:]))...)
			}
		}
	}
	return img, nil
}

// parseExecForm reads ["a", "b"]; the shell form becomes ["/bin/sh", "-c", form].
func parseExecForm(s string) []string {
	m := jsonList.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return []string{"/bin/sh", "-c", s}
	}
	var out []string
	for _, part := range strings.Split(m[1], ",") {
		out = append(out, strings.Trim(strings.TrimSpace(part), `"`))
	}
	return slices.DeleteFunc(out, func(s string) bool { return s == "" })
}
