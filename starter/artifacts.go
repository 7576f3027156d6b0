package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gpujobs/gpujobs/internal/artifacts"
	"github.com/gpujobs/gpujobs/jobs"
)

// The artifact commands read the store directly (no Temporal): a job's outputs stay readable
// after its workflow's history is gone.

func artifactsCmd() *cobra.Command {
	var (
		store  artifacts.Config
		asJSON bool
	)
	cmd := &cobra.Command{
		Use:   "artifacts <job-id>",
		Short: "List a job's output artifacts: name, size, sha256",
		Example: `  starter artifacts job-3f2a9c1b7e04
  starter artifacts job-3f2a9c1b7e04 --json
  GPUJOBS_ARTIFACTS=s3://bucket/gpujobs starter artifacts job-3f2a9c1b7e04`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			_, objs, err := listOutputs(cmd, store, id)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if asJSON {
				if objs == nil {
					objs = []artifacts.Object{}
				}
				writeJSON(w, objs)
				return nil
			}
			if len(objs) == 0 {
				fmt.Fprintf(w, "%s has no artifacts in %s\n", id, store.URL)
				return nil
			}
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSIZE\tSHA256")
			var total int64
			for _, o := range objs {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", o.Name, jobs.FormatBytes(o.Size), o.SHA256)
				total += o.Size
			}
			tw.Flush()
			fmt.Fprintf(w, "%d files, %s, in %s\n", len(objs), jobs.FormatBytes(total), store.URL)
			return nil
		},
	}
	store.AddFlags(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {key, name, size, sha256}")
	return cmd
}

func downloadCmd() *cobra.Command {
	var (
		store artifacts.Config
		dir   string
	)
	cmd := &cobra.Command{
		Use:   "download <job-id> [name...]",
		Short: "Download a job's output artifacts (all, or those named), checking each file's sha256",
		Example: `  starter download job-3f2a9c1b7e04                 # every output, into the current directory
  starter download job-3f2a9c1b7e04 model.pt -o out  # one file, into out/
  starter download job-3f2a9c1b7e04 plots/           # everything under plots/`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, names := args[0], args[1:]
			s, objs, err := listOutputs(cmd, store, id)
			if err != nil {
				return err
			}
			if len(objs) == 0 {
				return fmt.Errorf("%s has no artifacts in %s", id, store.URL)
			}
			if len(names) > 0 {
				if objs, err = selectArtifacts(id, objs, names); err != nil {
					return err
				}
			}
			got, err := artifacts.GetObjects(cmd.Context(), s, objs, dir)
			w := cmd.OutOrStdout()
			for _, o := range got {
				fmt.Fprintf(w, "%s  %s  sha256 %s ok\n", filepath.Join(dir, filepath.FromSlash(o.Name)), jobs.FormatBytes(o.Size), o.SHA256)
			}
			return err
		},
	}
	store.AddFlags(cmd.Flags())
	cmd.Flags().StringVarP(&dir, "output", "o", ".", "directory to write the files into (created if missing); names keep their subdirectories")
	return cmd
}

// openStore opens the store for reading. A directory store that does not exist is an error
// rather than a new empty store: the starter is then looking in the wrong place.
func openStore(cmd *cobra.Command, c artifacts.Config) (artifacts.Store, error) {
	dir := c.URL
	if u, err := url.Parse(c.URL); err == nil && u.Scheme == "file" {
		dir = u.Path
	} else if strings.Contains(c.URL, "://") {
		dir = ""
	}
	if dir != "" {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("no artifact store at %s: point --artifacts (or GPUJOBS_ARTIFACTS) at the store the workers use", c.URL)
		}
	}
	return artifacts.Open(cmd.Context(), c)
}

// selectArtifacts keeps the objects the names ask for: a name is an artifact's name, or a
// directory of them ("plots" or "plots/"). A name that matches nothing is an error listing what
// the job has.
func selectArtifacts(id string, objs []artifacts.Object, names []string) ([]artifacts.Object, error) {
	var out []artifacts.Object
	taken := map[string]bool{}
	for _, n := range names {
		dir := strings.TrimSuffix(n, "/") + "/"
		found := false
		for _, o := range objs {
			if o.Name == n || strings.HasPrefix(o.Name, dir) {
				found = true
				if !taken[o.Key] {
					taken[o.Key] = true
					out = append(out, o)
				}
			}
		}
		if !found {
			have := make([]string, 0, len(objs))
			for _, o := range objs {
				have = append(have, o.Name)
			}
			if len(have) > 20 {
				have = append(have[:20], fmt.Sprintf("... (%d in all)", len(objs)))
			}
			return nil, fmt.Errorf("%s has no artifact %q; it has: %s", id, n, strings.Join(have, ", "))
		}
	}
	return out, nil
}

// listOutputs opens the store and lists job id's outputs.
func listOutputs(cmd *cobra.Command, store artifacts.Config, id string) (artifacts.Store, []artifacts.Object, error) {
	if err := jobs.ValidateJobID(id); err != nil {
		return nil, nil, err
	}
	s, err := openStore(cmd, store)
	if err != nil {
		return nil, nil, err
	}
	objs, err := s.List(cmd.Context(), artifacts.OutputPrefix(id))
	return s, objs, err
}
