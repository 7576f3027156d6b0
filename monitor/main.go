// Command monitor counts, stores and shows the results that gpujobs publishes to RabbitMQ:
// `monitor serve` consumes the result queue and serves the API and dashboard, `monitor tail`
// follows it, `monitor report` writes Markdown, CSV and PNG charts from its store.
package main

import "github.com/gpujobs/gpujobs/internal/cli"

func main() { cli.Main("monitor", newRoot()) }
