// Package validate checks the deployment files without a Docker engine or a cluster: it loads
// docker-compose.yml with the compose-spec loader, renders every Kubernetes overlay with the
// kustomize API and decodes each object strictly into the Kubernetes API types, and reads the
// Dockerfiles and the Temporal Helm values for the properties the deployments rely on.
//
// It is its own module so that compose-go, kustomize and k8s.io stay out of the gpujobs
// binaries; it holds tests only and must not be imported.
package validate
