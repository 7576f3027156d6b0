package validate

import (
	"regexp"
	"strings"
	"testing"
)

// stage is one FROM … of a Dockerfile with the instructions under it.
type stage struct {
	from, name string
	lines      []string // instructions, continuation lines joined
}

// parseDockerfile splits a Dockerfile into stages, resolving ${ARG} in FROM lines from the
// global ARG defaults, as docker build does without --build-arg.
func parseDockerfile(t *testing.T, rel string) []stage {
	t.Helper()
	var (
		stages []stage
		args   = map[string]string{}
		joined string
	)
	for _, raw := range strings.Split(string(readFile(t, rel)), "\n") {
		line := strings.TrimSpace(raw)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			joined += cont + " "
			continue
		}
		line, joined = joined+line, ""
		fields := strings.Fields(line)
		switch strings.ToUpper(fields[0]) {
		case "ARG":
			if len(stages) == 0 {
				name, def, _ := strings.Cut(fields[1], "=")
				args[name] = def
			}
		case "FROM":
			image := regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(fields[1], func(ref string) string {
				return args[ref[2:len(ref)-1]]
			})
			s := stage{from: image}
			if len(fields) == 4 && strings.EqualFold(fields[2], "AS") {
				s.name = fields[3]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].lines = append(stages[len(stages)-1].lines, line)
		}
	}
	if len(stages) == 0 {
		t.Fatalf("%s: no FROM", rel)
	}
	return stages
}

func (s stage) has(prefix string) bool {
	for _, l := range s.lines {
		if strings.HasPrefix(strings.ToUpper(l), prefix) {
			return true
		}
	}
	return false
}

func (s stage) text() string { return strings.Join(s.lines, "\n") }

func goVersion(t *testing.T) string {
	m := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(readFile(t, "go.mod"))
	if m == nil {
		t.Fatal("go.mod has no go directive")
	}
	return string(m[1])
}

func TestDockerfiles(t *testing.T) {
	images := map[string]struct {
		healthcheck bool
		runtime     *regexp.Regexp // the final stage's base
		runtimeRun  []string       // packages the runtime stage must install
	}{
		"worker.Dockerfile":     {true, regexp.MustCompile(`^debian:\w+-slim$`), []string{"libopenblas0", "curl"}},
		"monitor.Dockerfile":    {true, regexp.MustCompile(`^debian:\w+-slim$`), []string{"curl"}},
		"worker-gpu.Dockerfile": {true, regexp.MustCompile(`^nvidia/cuda:12\.\d+\.\d+-(base|runtime)-ubuntu\d+\.\d+$`), []string{"curl"}},
		"starter.Dockerfile":    {false, regexp.MustCompile(`^gcr\.io/distroless/static-debian\d+:nonroot$`), nil},
	}
	buildTools := regexp.MustCompile(`\b(gcc|g\+\+|make|build-essential|golang|[\w.-]+-dev)\b`)
	for file, want := range images {
		rel := "deployments/docker/" + file
		stages := parseDockerfile(t, rel)
		names := map[string]bool{}
		for _, s := range stages {
			if !names[s.from] {
				repo := s.from[strings.LastIndex(s.from, "/")+1:]
				_, tag, ok := strings.Cut(repo, ":")
				if !ok || tag == "" || tag == "latest" || strings.Contains(s.from, "${") {
					t.Errorf("%s: FROM %s: pin a tag", file, s.from)
				}
			}
			if s.name != "" {
				names[s.name] = true
			}
			if strings.HasPrefix(s.from, "golang:") && !strings.HasPrefix(s.from, "golang:"+goVersion(t)+"-") {
				t.Errorf("%s: FROM %s, want the go.mod version %s", file, s.from, goVersion(t))
			}
		}
		if len(stages) < 2 {
			t.Errorf("%s: want a multi-stage build", file)
		}
		final := stages[len(stages)-1]
		if !want.runtime.MatchString(final.from) {
			t.Errorf("%s: runtime image %s does not match %s", file, final.from, want.runtime)
		}
		if m := buildTools.FindString(final.text()); m != "" {
			t.Errorf("%s: the runtime stage installs a build tool (%s)", file, m)
		}
		user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(final.text(), -1)
		if len(user) == 0 {
			t.Errorf("%s: the runtime stage sets no USER", file)
		} else if u := strings.Split(user[len(user)-1][1], ":")[0]; u == "0" || u == "root" {
			t.Errorf("%s: the runtime stage runs as root", file)
		}
		if final.has("HEALTHCHECK") != want.healthcheck {
			t.Errorf("%s: HEALTHCHECK present = %v, want %v", file, final.has("HEALTHCHECK"), want.healthcheck)
		}
		for _, pkg := range want.runtimeRun {
			if !strings.Contains(final.text(), pkg) {
				t.Errorf("%s: the runtime stage does not install %s", file, pkg)
			}
		}
		if !final.has("ENTRYPOINT") {
			t.Errorf("%s: no ENTRYPOINT", file)
		}
	}

	// The builds that differ: OpenBLAS through cgo, CUDA 12 headers and the driver stub.
	worker := parseDockerfile(t, "deployments/docker/worker.Dockerfile")
	if b := worker[0].text(); !strings.Contains(b, "-tags openblas") || !strings.Contains(b, "libopenblas-dev") || !strings.Contains(b, "CGO_ENABLED=1") {
		t.Error("worker.Dockerfile: the build stage must build with cgo and -tags openblas against libopenblas-dev")
	}
	gpu := parseDockerfile(t, "deployments/docker/worker-gpu.Dockerfile")
	var build *stage
	for i := range gpu {
		if gpu[i].name == "build" {
			build = &gpu[i]
		}
	}
	if build == nil || !regexp.MustCompile(`^nvidia/cuda:12\.\d+\.\d+-devel-`).MatchString(build.from) {
		t.Fatal("worker-gpu.Dockerfile: build on an nvidia/cuda 12 devel image (gorgonia.org/cu needs headers <= 12)")
	}
	if b := build.text(); !strings.Contains(b, "lib64/stubs") || !strings.Contains(b, "./workers/gpu") || !strings.Contains(b, "TAGS=cuda") {
		t.Error("worker-gpu.Dockerfile: build ./workers/gpu with -tags cuda, linking the libcuda stub")
	}
	if cuda := func(s string) string { return regexp.MustCompile(`:(\d+\.\d+\.\d+)-`).FindStringSubmatch(s)[1] }; cuda(build.from) != cuda(gpu[len(gpu)-1].from) {
		t.Errorf("worker-gpu.Dockerfile: build %s and run %s on different CUDA versions", build.from, gpu[len(gpu)-1].from)
	}

	ignore := strings.Fields(string(readFile(t, ".dockerignore")))
	for _, must := range []string{".git", ".env", "bin/", "results/"} {
		found := false
		for _, l := range ignore {
			found = found || l == must
		}
		if !found {
			t.Errorf(".dockerignore does not exclude %s", must)
		}
	}
}
