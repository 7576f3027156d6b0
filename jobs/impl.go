package jobs

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// Impl is a kind's implementation on one device, taking the kind's params as decoded by Kinds.
type Impl func(ctx context.Context, p Params, report Reporter) (Output, error)

// Typed adapts an implementation written for one params type, so it needs no type assertion of
// its own: the registry decoded the params from the same kind's Spec.New.
func Typed[P Params](f Func[P]) Impl {
	return func(ctx context.Context, p Params, report Reporter) (Output, error) {
		tp, ok := p.(P)
		if !ok {
			return Output{}, fmt.Errorf("%s: implementation takes %T, got %T", p.Kind(), *new(P), p)
		}
		return f(ctx, tp, report)
	}
}

// Impls maps kind names to one device's implementations of them (F is that device's
// implementation type: Impl on the CPU, a function that also gets a GPU job handle in
// kernels/cuda). Kinds are registered apart from their implementations, so a kind may have an
// implementation on one device and not the other.
type Impls[F any] struct {
	device string
	funcs  map[string]F
}

// NewImpls returns an empty registry of implementations for device ("cpu" or "gpu").
func NewImpls[F any](device string) *Impls[F] {
	return &Impls[F]{device: device, funcs: map[string]F{}}
}

// Add registers kind's implementation; a second one for the same kind is an error.
func (i *Impls[F]) Add(kind string, f F) error {
	if err := ValidateKindName(kind); err != nil {
		return fmt.Errorf("%s implementation: %w", i.device, err)
	}
	if _, dup := i.funcs[kind]; dup {
		return fmt.Errorf("job kind %s has two %s implementations", kind, i.device)
	}
	i.funcs[kind] = f
	return nil
}

// Lookup returns kind's implementation, or a *NoImplementationError.
func (i *Impls[F]) Lookup(kind string) (F, error) {
	f, ok := i.funcs[kind]
	if !ok {
		var zero F
		return zero, &NoImplementationError{Kind: kind, Device: i.device, Known: i.Kinds()}
	}
	return f, nil
}

// Kinds lists the kinds implemented, sorted.
func (i *Impls[F]) Kinds() []string {
	names := make([]string, 0, len(i.funcs))
	for k := range i.funcs {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// Device is the device these implementations run on.
func (i *Impls[F]) Device() string { return i.device }

// NoImplementationError says that a worker's device has no implementation of a kind.
type NoImplementationError struct {
	Kind, Device string
	Known        []string
}

func (e *NoImplementationError) Error() string {
	return fmt.Sprintf("job type %s has no %s implementation on this worker (it implements %s): register one, or run the job on another device (--device)",
		e.Kind, e.Device, strings.Join(e.Known, ", "))
}
