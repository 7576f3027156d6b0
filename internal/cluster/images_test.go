package cluster

import (
	"path/filepath"
	"testing"

	"github.com/gpujobs/gpujobs/internal/compose"
)

// Every image of docker-compose.yml is one the cluster knows how to run (a plain go test, so a
// new service shows up here before the cluster test meets it).
func TestEveryComposeImageRuns(t *testing.T) {
	repo, _ := filepath.Abs("../..")
	vars, err := compose.ReadEnvFile(filepath.Join(repo, ".env.example"))
	if err != nil {
		t.Fatal(err)
	}
	vars["RABBITMQ_PASS"], vars["POSTGRES_PASSWORD"], vars["MONITOR_TOKEN"] = "x", "y", "z"
	vars["S3_ACCESS_KEY"], vars["S3_SECRET_KEY"] = "k", "s"
	f, err := compose.Load(filepath.Join(repo, "docker-compose.yml"), vars)
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range f.Services {
		if s.Dockerfile != "" {
			continue // built from the repo: the Dockerfile says how it runs
		}
		if _, ok := imageRunners[imageName(s.Image)]; !ok {
			t.Errorf("service %s: the cluster cannot run image %s (add it to imageRunners)", name, s.Image)
		}
	}
}
