package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.temporal.io/sdk/client"
	"golang.org/x/term"

	"github.com/gpujobs/gpujobs/internal/jobclient"
	"github.com/gpujobs/gpujobs/jobs"
)

// watch shows one progress bar for the jobs until all have ended and returns their results in
// the order of ids. With one job the bar counts its iterations or epochs; with several it counts
// finished jobs, each running job adding its fraction. The bar is drawn only on a terminal.
// The line of a single job waiting for a worker says its place in the queue and its predicted
// start (namespace: where to ask; "" leaves that out).
func watch(ctx context.Context, c client.Client, namespace string, ids []string, w io.Writer, show bool) ([]jobs.Result, error) {
	const scale = 1000
	if f, ok := w.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		show = false
	}
	bar := progressbar.NewOptions(len(ids)*scale,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetVisibility(show),
		progressbar.OptionSetWidth(30),
		progressbar.OptionShowElapsedTimeOnFinish(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionClearOnFinish(),
	)
	results := make([]*jobs.Result, len(ids))
	period := 300*time.Millisecond + time.Duration(len(ids))*10*time.Millisecond
	var predicted time.Time
	queueNote := ""
	for {
		statuses, err := describeAll(ctx, c, ids, results)
		if err != nil {
			return nil, err
		}
		done, failed, running := 0, 0, 0
		var progress float64
		var detail string
		for i, st := range statuses {
			if st == nil { // ended earlier
				done++
				progress += 1
				if results[i].Status != jobs.StatusCompleted {
					failed++
				}
				continue
			}
			if st.Result != nil {
				results[i] = st.Result
				done++
				progress += 1
				if st.Result.Status != jobs.StatusCompleted {
					failed++
				}
				continue
			}
			if a := st.Activity; a != nil && a.State == "started" {
				running++
				if p := a.Progress; p != nil {
					progress += float64(p.Iteration) / float64(p.Total)
					detail = fmt.Sprintf("%s step %d/%d", a.Worker, p.Iteration, p.Total)
					if p.Loss != nil {
						detail += fmt.Sprintf(" loss %.4f", *p.Loss)
					}
				}
			}
		}
		desc := fmt.Sprintf("%d/%d done, %d running", done, len(ids), running)
		if failed > 0 {
			desc += fmt.Sprintf(", %d not completed", failed)
		}
		if len(ids) == 1 {
			if st := statuses[0]; st != nil && namespace != "" {
				if _, queued := st.Queued(); !queued {
					queueNote = ""
				} else if time.Since(predicted) > 3*time.Second {
					predicted = time.Now()
					if p := jobclient.WithPrediction(ctx, c, namespace, *st).Prediction; p != nil {
						queueNote = fmt.Sprintf("waiting: position %d of %d, %s", p.Position, p.Waiting, startsAt(p))
					}
				}
			}
			desc = ids[0] + " " + detail + queueNote
		}
		bar.Describe(desc)
		bar.Set(int(progress * scale)) //nolint:errcheck // drawing only
		if done == len(ids) {
			bar.Finish() //nolint:errcheck
			out := make([]jobs.Result, len(ids))
			for i, r := range results {
				out[i] = *r
			}
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(period):
		}
	}
}

// describeAll gets the status of the jobs that have not ended yet, 16 at a time; the slots of
// ended jobs (results[i] != nil) stay nil.
func describeAll(ctx context.Context, c client.Client, ids []string, results []*jobs.Result) ([]*jobclient.Status, error) {
	out := make([]*jobclient.Status, len(ids))
	errs := make([]error, len(ids))
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i, id := range ids {
		if results[i] != nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			st, err := jobclient.GetStatus(ctx, c, id)
			out[i], errs[i] = &st, err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
