package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gpujobs/gpujobs/jobs/builtin"
)

// commandFlags are the flags of a command job: starter submit command [flags] -- PROGRAM ARGS...
type commandFlags struct {
	gpus, cpus        int
	gpuMemory, memory string
	env               []string
	inputs, outputs   []string
}

func addCommandFlags(cmd *cobra.Command) *commandFlags {
	f := &commandFlags{}
	fs := cmd.Flags()
	fs.IntVar(&f.gpus, "gpus", 0, "command: GPUs the program needs (0: a CPU job)")
	fs.StringVar(&f.gpuMemory, "gpu-memory", "", "command: memory it needs on each GPU, e.g. 16GiB")
	fs.IntVar(&f.cpus, "cpus", 0, "command: cores it may use (sets OMP_NUM_THREADS and the like)")
	fs.StringVar(&f.memory, "memory", "", "command: its memory limit, e.g. 4GiB (default 1GiB), enforced by the worker")
	fs.StringArrayVar(&f.env, "env", nil, "command: an environment variable KEY=VALUE for the program (repeatable)")
	fs.StringArrayVar(&f.inputs, "input", nil, "command: stage an earlier job's artifacts into $GPUJOBS_INPUT_DIR/JOB: JOB or JOB:PATTERN (repeatable)")
	fs.StringArrayVar(&f.outputs, "output", nil, "command: files of $GPUJOBS_OUTPUT_DIR to keep as artifacts, a glob such as '*.pt' or 'plots/**' (repeatable)")
	return f
}

// set fills the command's params from the flags and the arguments after "--"; argv may be empty
// when --params holds the command.
func (f *commandFlags) set(cmd *cobra.Command, argv []string, set map[string]any) error {
	if len(argv) > 0 {
		set["argv"] = argv
	}
	res := map[string]any{}
	if cmd.Flags().Changed("gpus") {
		res["gpus"] = f.gpus
	}
	if cmd.Flags().Changed("cpus") {
		res["cpus"] = f.cpus
	}
	if f.gpuMemory != "" {
		res["gpu_memory"] = f.gpuMemory
	}
	if f.memory != "" {
		res["memory"] = f.memory
	}
	if len(res) > 0 {
		if _, ok := set["resources"]; ok {
			return fmt.Errorf("--param resources and --gpus/--cpus/--memory/--gpu-memory contradict each other: give one")
		}
		if res["memory"] == nil {
			res["memory"] = "1GiB"
		}
		set["resources"] = res
	}
	if len(f.env) > 0 {
		env := map[string]string{}
		for _, kv := range f.env {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return fmt.Errorf("invalid --env %q: want KEY=VALUE", kv)
			}
			env[k] = v
		}
		set["env"] = env
	}
	if len(f.inputs) > 0 {
		var ins []builtin.Input
		for _, in := range f.inputs {
			job, name, _ := strings.Cut(in, ":")
			ins = append(ins, builtin.Input{Job: job, Name: name})
		}
		set["inputs"] = ins
	}
	if len(f.outputs) > 0 {
		set["outputs"] = f.outputs
	}
	return nil
}

// usedWithoutCommand names a command flag given for another kind, or "".
func (f *commandFlags) usedWithoutCommand(cmd *cobra.Command) string {
	for _, name := range []string{"gpus", "gpu-memory", "cpus", "memory", "env", "input", "output"} {
		if cmd.Flags().Changed(name) {
			return "--" + name
		}
	}
	return ""
}
