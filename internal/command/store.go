package command

import (
	"context"

	"github.com/gpujobs/gpujobs/jobs"
)

// Store is what the runner needs of the artifact store: a job's output directory saved under a
// prefix, an earlier job's artifacts or a checkpoint loaded into a directory.
type Store interface {
	// SaveDir uploads the files under dir matching patterns ("**" for any depth; nil: all) to
	// prefix + their relative paths.
	SaveDir(ctx context.Context, prefix, dir string, patterns []string) ([]jobs.Artifact, error)
	// LoadDir downloads the objects under prefix whose names match pattern ("" for all) into
	// dir, checking each one's sha256.
	LoadDir(ctx context.Context, prefix, dir, pattern string) ([]jobs.Artifact, error)
	// Delete removes everything under prefix.
	Delete(ctx context.Context, prefix string) error
}

// Key layout in the artifact store.
func outputPrefix(jobID string) string     { return "jobs/" + jobID + "/outputs/" }
func checkpointPrefix(jobID string) string { return "jobs/" + jobID + "/checkpoint/" }
