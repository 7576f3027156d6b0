package workflows_test

import "github.com/stretchr/testify/mock"

var (
	anyCtx = mock.Anything
	anyArg = mock.Anything
)
