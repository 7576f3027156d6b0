package rabbit

import (
	"context"
	"time"
)

// Reconnect runs session, one connection's life, again and again until ctx ends (then it returns
// nil) or a session fails with an error that fatal says retrying cannot fix (then it returns
// that). Between sessions it waits a backoff that doubles from minWait to maxWait and starts at
// minWait again after a session that got as far as consuming; retrying is told each error and
// the wait that follows it (to log it).
func Reconnect(ctx context.Context, minWait, maxWait time.Duration, session func(context.Context) (consumed bool, err error),
	fatal func(error) bool, retrying func(err error, wait time.Duration)) error {
	backoff := minWait
	for {
		consumed, err := session(ctx)
		if fatal(err) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		if consumed {
			backoff = minWait
		}
		retrying(err, backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxWait)
	}
}
