package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/serviceerror"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// readyTimeout bounds how long start waits for the frontend to answer after the server's Start
// has returned; it normally answers at once.
const readyTimeout = 20 * time.Second

// ensureSearchAttributes makes every namespace have attrs, through the operator API as any client
// would. prepareDatabase already wrote them into new namespaces; this adds them to namespaces
// that a file DB kept from an earlier run with other flags or an older default set. An attribute
// that exists with another type is an error: the column it maps to cannot change type.
func ensureSearchAttributes(ctx context.Context, frontend string, namespaces []string, attrs map[string]enumspb.IndexedValueType) error {
	conn, err := grpc.NewClient(frontend, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect to frontend %s: %w", frontend, err)
	}
	defer conn.Close()
	op := operatorservice.NewOperatorServiceClient(conn)

	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for _, ns := range namespaces {
		var have map[string]enumspb.IndexedValueType
		err := retryUnavailable(ctx, func() error {
			resp, err := op.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
			have = resp.GetCustomAttributes()
			return err
		})
		if err != nil {
			return fmt.Errorf("list search attributes of namespace %s: %w", ns, err)
		}
		missing := map[string]enumspb.IndexedValueType{}
		for _, name := range slices.Sorted(maps.Keys(attrs)) {
			want := attrs[name]
			got, ok := have[name]
			switch {
			case !ok:
				missing[name] = want
			case got != want:
				return fmt.Errorf("namespace %s: search attribute %s exists as %s, not %s; pick another name or start with a new --db-filename",
					ns, name, got, want)
			}
		}
		if len(missing) == 0 {
			continue
		}
		err = retryUnavailable(ctx, func() error {
			_, err := op.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{Namespace: ns, SearchAttributes: missing})
			return err
		})
		if err != nil {
			return fmt.Errorf("add search attributes %v to namespace %s: %w", slices.Sorted(maps.Keys(missing)), ns, err)
		}
	}
	return nil
}

// retryUnavailable calls f until it succeeds, fails with an error other than Unavailable (the
// frontend still starting) or NamespaceNotFound (its namespace cache not yet filled), or ctx ends.
func retryUnavailable(ctx context.Context, f func() error) error {
	for {
		err := f()
		if err != nil {
			err = serviceerror.FromStatus(status.Convert(err)) // gRPC status to a typed error
		}
		var unavailable *serviceerror.Unavailable
		var notFound *serviceerror.NamespaceNotFound
		if err == nil || !(errors.As(err, &unavailable) || errors.As(err, &notFound)) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
