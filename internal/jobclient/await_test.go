package jobclient

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/mocks"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gpujobs/gpujobs/jobs"
)

// A long poll that the server resets (a busy frontend: "stream terminated by RST_STREAM with
// error code: CANCEL") does not end the wait: Await polls again and returns the result.
func TestAwaitPollsAgainAfterAStreamReset(t *testing.T) {
	reset := serviceerror.FromStatus(status.New(codes.Canceled, "stream terminated by RST_STREAM with error code: CANCEL"))
	c := &mocks.Client{}
	first, second := &mocks.WorkflowRun{}, &mocks.WorkflowRun{}
	first.On("Get", mock.Anything, mock.Anything).Return(reset)
	second.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*(args.Get(1).(*jobs.Result)) = jobs.Result{JobID: "job-1", Status: jobs.StatusCompleted}
	}).Return(nil)
	c.On("GetWorkflow", mock.Anything, "job-1", "").Return(first).Once()
	c.On("GetWorkflow", mock.Anything, "job-1", "").Return(second).Once()

	res, err := Await(context.Background(), c, "job-1")
	if err != nil || res.Status != jobs.StatusCompleted {
		t.Fatalf("Await: %+v, %v; want the completed result after one retry", res, err)
	}
	c.AssertNumberOfCalls(t, "GetWorkflow", 2)
}

// An error that a retry will not change is returned at once, and a wait whose context ends
// stops polling.
func TestAwaitReturnsLastingErrors(t *testing.T) {
	c := &mocks.Client{}
	run := &mocks.WorkflowRun{}
	run.On("Get", mock.Anything, mock.Anything).Return(serviceerror.NewPermissionDenied("no", ""))
	c.On("GetWorkflow", mock.Anything, "job-2", "").Return(run)
	if _, err := Await(context.Background(), c, "job-2"); err == nil || !strings.Contains(err.Error(), "wait for job-2") {
		t.Errorf("permission denied: %v", err)
	}
	c.AssertNumberOfCalls(t, "GetWorkflow", 1)

	c = &mocks.Client{}
	run = &mocks.WorkflowRun{}
	run.On("Get", mock.Anything, mock.Anything).Return(serviceerror.NewUnavailable("frontend restarting"))
	c.On("GetWorkflow", mock.Anything, "job-3", "").Return(run)
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := Await(ctx, c, "job-3"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unavailable until the deadline: %v, want the deadline", err)
	}
}
