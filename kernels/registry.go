package kernels

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// Spec describes one job type: its name and its defaults. The params carry the CPU
// implementation; a GPU implementation is registered by kernels/cuda under the same Kind.
type Spec struct {
	Kind string
	// Summary is one line for help texts.
	Summary string
	// New returns params filled with the defaults.
	New func() Params
}

// Registry maps job-type names to their specs.
type Registry struct {
	specs map[string]Spec
	kinds []string
}

// NewRegistry builds a registry; a duplicate or incomplete spec is an error, so a mistake in the
// job table stops a worker at start-up rather than at the first job.
func NewRegistry(specs ...Spec) (*Registry, error) {
	r := &Registry{specs: make(map[string]Spec, len(specs))}
	for _, s := range specs {
		if s.Kind == "" || s.New == nil {
			return nil, fmt.Errorf("job spec %q is incomplete", s.Kind)
		}
		if _, dup := r.specs[s.Kind]; dup {
			return nil, fmt.Errorf("job kind %q registered twice", s.Kind)
		}
		if got := s.New().Kind(); got != s.Kind {
			return nil, fmt.Errorf("job spec %q makes params of kind %q", s.Kind, got)
		}
		r.specs[s.Kind] = s
		r.kinds = append(r.kinds, s.Kind)
	}
	sort.Strings(r.kinds)
	return r, nil
}

// Default is the registry of the four built-in job types. Adding a job type is adding its file
// and one line here.
func Default() *Registry {
	r, err := NewRegistry(
		matrixMultiplySpec(),
		neuralNetworkSpec(),
		vectorAdditionSpec(),
		imageProcessingSpec(),
	)
	if err != nil {
		panic(err) // the built-in table is a constant; a test covers it
	}
	return r
}

// Kinds lists the registered job types, sorted.
func (r *Registry) Kinds() []string { return append([]string(nil), r.kinds...) }

// Spec returns the spec of kind.
func (r *Registry) Spec(kind string) (Spec, error) {
	s, ok := r.specs[kind]
	if !ok {
		return Spec{}, &UnknownKindError{Kind: kind, Known: r.Kinds()}
	}
	return s, nil
}

// UnknownKindError names the job type asked for and the ones that exist.
type UnknownKindError struct {
	Kind  string
	Known []string
}

func (e *UnknownKindError) Error() string {
	return fmt.Sprintf("unknown job type %q: known types are %s", e.Kind, strings.Join(e.Known, ", "))
}

// Decode turns a JSON params object into kind's params, defaults filled in, and validates it.
// Unknown fields are an error that lists the known ones; an empty or null object means defaults.
func (r *Registry) Decode(kind string, raw []byte) (Params, error) {
	s, err := r.Spec(kind)
	if err != nil {
		return nil, err
	}
	p := s.New()
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && !bytes.Equal(trimmed, []byte("null")) {
		dec := json.NewDecoder(bytes.NewReader(trimmed))
		dec.DisallowUnknownFields()
		if err := dec.Decode(p); err != nil {
			return nil, decodeError(kind, p, err)
		}
		if dec.More() {
			return nil, &ParamError{Kind: kind, Field: "params", Reason: "trailing data after the JSON object"}
		}
	}
	if d, ok := p.(interface{ resolveDefaults() }); ok {
		d.resolveDefaults()
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return p, nil
}

// decodeError rewrites encoding/json's errors so they name the field and what is allowed.
func decodeError(kind string, p Params, err error) error {
	var te *json.UnmarshalTypeError
	switch {
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &ParamError{Kind: kind, Field: field, Reason: "unknown field, known fields are " + strings.Join(Fields(p), ", ")}
	case asTypeError(err, &te) && te.Field == "":
		return &ParamError{Kind: kind, Field: "params", Reason: "expected a JSON object, got JSON " + te.Value}
	case asTypeError(err, &te):
		return &ParamError{Kind: kind, Field: te.Field, Reason: fmt.Sprintf("expected %s, got JSON %s", te.Type, te.Value)}
	default:
		return &ParamError{Kind: kind, Field: "params", Reason: "not a JSON object: " + err.Error()}
	}
}

func asTypeError(err error, te **json.UnmarshalTypeError) bool {
	t, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*te = t
	}
	return ok
}

// Fields lists the JSON field names of a params struct, in declaration order.
func Fields(p Params) []string {
	t := reflect.TypeOf(p)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}
