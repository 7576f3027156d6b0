package command

import (
	"context"

	"github.com/gpujobs/gpujobs/internal/artifacts"
	"github.com/gpujobs/gpujobs/jobs"
)

// saveDir uploads the files under dir matching patterns (nil: all) under prefix.
func saveDir(ctx context.Context, s artifacts.Store, prefix, dir string, patterns []string) ([]jobs.Artifact, error) {
	if len(patterns) == 0 {
		patterns = []string{"**"}
	}
	objs, err := artifacts.PutDir(ctx, s, prefix, dir, patterns)
	return asArtifacts(objs), err
}

// loadDir downloads the objects under prefix whose names match pattern ("": all) into dir, each
// checked against its sha256.
func loadDir(ctx context.Context, s artifacts.Store, prefix, dir, pattern string) ([]jobs.Artifact, error) {
	objs, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	if pattern != "" {
		if objs, err = artifacts.Select(objs, []string{pattern}); err != nil {
			return nil, err
		}
	}
	got, err := artifacts.GetObjects(ctx, s, objs, dir)
	return asArtifacts(got), err
}

func asArtifacts(objs []artifacts.Object) []jobs.Artifact {
	out := make([]jobs.Artifact, 0, len(objs))
	for _, o := range objs {
		out = append(out, jobs.Artifact{Name: o.Name, Size: o.Size, SHA256: o.SHA256})
	}
	return out
}
