// Package cluster runs gpujobs as a cluster of hosts on one machine: each host is a Linux network
// namespace on one bridge, with an address from the benchmarking range 198.18.0.0/15, and runs
// the processes docker-compose.yml gives its service, with the same environment (read from the
// compose file, variables substituted as compose does), reaching the other hosts only by
// address. PostgreSQL, the Temporal server on it, RabbitMQ, the scheduler, CPU workers and the
// monitor are the real programs (Debian's packages and bin/).
//
// The tests in this package (GPUJOBS_CLUSTER=1, set by make test-cluster; root) build such a
// cluster, inject faults between its hosts (links cut, processes killed, servers restarted) and
// check with numbers that no job is lost or counted twice. It must never reach anything outside
// its hosts: the machine's own services (a shared RabbitMQ on 127.0.0.1:5672) are in another
// network namespace and out of reach.
package cluster
