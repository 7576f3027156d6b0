// Package jobs is the vocabulary every part of gpujobs shares: a job's request and result, its
// status, device policy and worker type, the error types jobs fail with, the job-kind contract
// (Params, Work, Output, Spec) and the registries that look kinds and their implementations up by
// name, and the helpers that format rates, sizes and times.
//
// It must stay a leaf: it imports the standard library only, never Temporal, gonum, RabbitMQ or
// cgo, so that a client (the starter) or a reader of results (the monitor) links only what it
// needs. River keeps rivertype apart for the same reason.
package jobs
