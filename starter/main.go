// Command starter submits gpujobs jobs and reads their results.
package main

import "github.com/gpujobs/gpujobs/internal/cli"

func main() { cli.Main("starter", newRoot()) }
