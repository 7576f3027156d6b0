// Package scripts_test dry-runs scripts/gpu-check.sh without a GPU: a fake gpucheck, cuda.test,
// nvidia-smi, nvcc, cuobjdump, compute-sanitizer and PyTorch stand in for the real ones, and the
// tests check the report the script writes and its exit status: what passes, what fails, what
// was not checked, and what running out of time does.
package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The fakes read FAKE_* variables: FAKE_HELP_RC (gpucheck --help's exit status), FAKE_CHECK_RC,
// FAKE_CHECK_SLEEP, FAKE_BENCH_ERROR=1 (a failed case), FAKE_CUBLAS=0 (cuBLAS cases skipped),
// FAKE_TEST_FAIL=1 (cuda.test fails), FAKE_SANITIZER_ERRORS=1 (memcheck finds an error),
// FAKE_TORCH=0 (no torch). The binaries name GLIBC_2.34 like the real ones.
var fakes = map[string]string{
	"bin/gpucheck": `#!/usr/bin/env bash
# fake gpucheck (GLIBC_2.34)
case " $* " in
*" --help "*)
	if [ "${FAKE_HELP_RC:-0}" != 0 ]; then
		echo "gpucheck: no CUDA device found: start a CPU worker instead (cuInit: CUDA_ERROR_NO_DEVICE (100))"
		exit "$FAKE_HELP_RC"
	fi
	echo "gpucheck checks the GPU kernels"; exit 0 ;;
esac
echo "GPU 0: NVIDIA H200, compute capability 9.0, 139.8 GiB, 132 SMs" >&2
if [ "${FAKE_CUBLAS:-1}" = 1 ]; then
	echo "SGEMM: cublas (${GPUJOBS_CUBLAS:-libcublas.so.13}, cuBLAS 13.0.2)" >&2
else
	echo "SGEMM: ptx (cuBLAS not found: no libcublas.so.13)" >&2
fi
case " $* " in
*" --bench "*)
	kernels=fatbin
	[ -n "${GPUJOBS_KERNEL_DIR:-}" ] && kernels="$GPUJOBS_KERNEL_DIR (fatbin)"
	emit() { # case job impl precision rate unit work scale [extra]
		printf '{"case":"%s","job":"%s","params":{},"impl":"%s","precision":"%s","rate":%s,"unit":"%s","work":%s,"scale":%s,"seconds":0.01,"device":"NVIDIA H200","kernels":"%s"%s}\n' "${@:1:8}" "$kernels" "${9:-}"
	}
	only=""
	[[ " $* " == *" --impl ptx "* ]] && only=ptx
	emit "vector 10M" vector_addition ptx fp32 900 GB/s 1.2e10 1e9
	emit "matmul 1000" matrix_multiply ptx fp32 20000 GFLOP/s 2e9 1e9
	emit "matmul 1000" matrix_multiply ptx fp32 15000 GFLOP/s 2e9 1e9 ',"variant":"split-K off"'
	if [ -z "$only" ]; then
		if [ "${FAKE_CUBLAS:-1}" = 1 ]; then
			emit "matmul 1000" matrix_multiply cublas fp32 38000 GFLOP/s 2e9 1e9
			emit "matmul 1000" matrix_multiply cublas tf32 90000 GFLOP/s 2e9 1e9
		else
			emit "matmul 1000" matrix_multiply cublas fp32 0 GFLOP/s 2e9 1e9 ',"skipped":"cuBLAS not loaded: cuBLAS not found"'
			emit "matmul 1000" matrix_multiply cublas tf32 0 GFLOP/s 2e9 1e9 ',"skipped":"cuBLAS not loaded: cuBLAS not found"'
		fi
	fi
	if [ "${FAKE_BENCH_ERROR:-0}" = 1 ]; then
		emit "conv 32x3x224² k3 f64" image_processing ptx fp32 0 GFLOP/s 5e9 1e9 ',"error":"launch conv2d_igemm_64: CUDA_ERROR_LAUNCH_FAILED"'
	else
		emit "conv 32x3x224² k3 f64" image_processing ptx fp32 10000 GFLOP/s 5e9 1e9
	fi
	emit "mlp 784-256-10 b64" neural_network ptx fp32 1000000 samples/s 32000 1
	[ -z "$only" ] && emit "mlp 784-256-10 b64" neural_network cublas fp32 1200000 samples/s 32000 1 ',"cublas":"13.0.2"'
	if [ "${FAKE_BENCH_ERROR:-0}" = 1 ]; then
		echo "gpucheck: 1 of 8 benchmark cases failed" >&2
		exit 1
	fi
	exit 0 ;;
esac
sleep "${FAKE_CHECK_SLEEP:-0}"
echo "job  size  impl  GPU rate  result"
echo "matrix_multiply  1000  ptx fp32  20000.0  ok"
echo "recovery  restart  illegal-address  ok  child process: CUDA_ERROR_ILLEGAL_ADDRESS; device dead=true"
if [ "${FAKE_CHECK_RC:-0}" != 0 ]; then
	echo "gpucheck: 1 of 20 checks failed: the GPU results do not match the CPU's (see the table)" >&2
	exit "$FAKE_CHECK_RC"
fi
echo "all 20 checks passed"
`,
	"bin/cuda.test": `#!/usr/bin/env bash
# fake cuda.test (GLIBC_2.34)
echo "=== RUN   TestConformancePTX"
echo "--- PASS: TestConformancePTX (0.50s)"
case " $* " in *TestConformancePTX*) echo PASS; exit 0 ;; esac
echo "--- PASS: TestIllegalAddressKillsTheDevice (2.00s)"
echo "--- SKIP: TestTelemetry (0.00s)"
if [ "${FAKE_TEST_FAIL:-0}" = 1 ]; then
	echo "--- FAIL: TestConformanceCuBLAS (0.01s)"
	echo "    cuda_test.go:60: GPUJOBS_CUBLAS=$GPUJOBS_CUBLAS but cuBLAS is not used"
	echo FAIL
	exit 1
fi
echo "--- PASS: TestConformanceCuBLAS (0.40s)"
echo "cuda.test saw GPUJOBS_CUBLAS=$GPUJOBS_CUBLAS"
echo PASS
`,
	"tools/nvidia-smi": `#!/usr/bin/env bash
echo "0, NVIDIA H200, 580.95.05, 143771 MiB, 0 MiB, 143000 MiB"
`,
	"tools/nvcc": `#!/usr/bin/env bash
if [ "${1:-}" = --version ]; then echo "Cuda compilation tools, release 13.0, V13.0.88"; exit 0; fi
out=""
while [ $# -gt 0 ]; do [ "$1" = -o ] && out=$2; shift; done
echo "fake fatbin" > "$out"
name=$(basename "$out" .fatbin)
echo "ptxas info    : Function properties for k_$name" >&2
echo "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads" >&2
`,
	"tools/cuobjdump": `#!/usr/bin/env bash
name=$(basename "$2" .fatbin)
stack=0
case "$2" in */ptx/image_processing*) stack=32 ;; esac # the embedded one; the rebuilt one has none
echo "Resource usage:"
echo " Function k_$name:"
echo "  REG:128 STACK:$stack SHARED:17920 LOCAL:0 CONSTANT[0]:592 TEXTURE:0 SURFACE:0 SAMPLER:0"
`,
	"tools/compute-sanitizer": `#!/usr/bin/env bash
tool="" code=1
while [ $# -gt 0 ]; do
	case "$1" in
	--tool) tool=$2; shift 2 ;;
	--error-exitcode) code=$2; shift 2 ;;
	--print-limit) shift 2 ;;
	*) break ;;
	esac
done
echo "========= COMPUTE-SANITIZER"
"$@"
rc=$?
if [ "$tool" = memcheck ] && [ "${FAKE_SANITIZER_ERRORS:-0}" = 1 ]; then
	echo "========= Invalid __global__ read of size 4 bytes"
	echo "=========     at conv2d_igemm_64+0x1a0"
	echo "========= ERROR SUMMARY: 1 error"
	exit "$code"
fi
if [ "$tool" = racecheck ]; then echo "========= RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)"
else echo "========= ERROR SUMMARY: 0 errors"; fi
exit $rc
`,
	// The fake PyTorch: torch_bench.py's info and run answer as on the H200; everything else (the
	// report, the script's small JSON reads) is the real python3.
	"tools/fakepython": `#!/usr/bin/env bash
if [ "$(basename "${1:-}")" = torch_bench.py ]; then
	case "$2" in
	info)
		if [ "${FAKE_TORCH:-1}" = 0 ]; then echo "ModuleNotFoundError: No module named 'torch'" >&2; exit 1; fi
		echo '{"torch": "2.11.0", "torch_cuda": "13.0", "cuda_available": true, "cudnn": 91300, "device": "NVIDIA H200", "cublas_path": "/fake/torch/lib/libcublas.so.13", "cublas_version": "13.0.2"}'
		exit 0 ;;
	run)
		exec "$REAL_PYTHON" - "$3" <<'EOF'
import json, sys
rates = {"vector_addition": 1000, "matrix_multiply": 40000, "image_processing": 30000, "neural_network": 500000}
seen = set()
for line in open(sys.argv[1]):
    c = json.loads(line)
    if (c["case"], c["precision"]) in seen:
        continue
    seen.add((c["case"], c["precision"]))
    print(json.dumps({"case": c["case"], "job": c["job"], "precision": c["precision"], "unit": c["unit"], "device": "NVIDIA H200",
                      "torch": "2.11.0", "torch_cuda": "13.0", "ref": "torch ref", "seconds": 0.01, "rate": rates[c["job"]]}))
EOF
		;;
	esac
fi
exec "$REAL_PYTHON" "$@"
`,
}

type dryRun struct {
	dir, report string
	code        int
	output      string
}

// run writes the fakes and runs gpu-check.sh with env on top of a clean environment.
func run(t *testing.T, env ...string) dryRun {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3: the report is written by scripts/gpu_check_report.py")
	}
	dir := t.TempDir()
	for name, body := range fakes {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	tools := filepath.Join(dir, "tools")
	out := filepath.Join(dir, "out")
	cmd := exec.Command("bash", "gpu-check.sh")
	for _, kv := range os.Environ() { // nothing of the caller's GPU setup leaks in
		if !strings.HasPrefix(kv, "GPUJOBS_") && !strings.HasPrefix(kv, "FAKE_") && !strings.HasPrefix(kv, "GPU_CHECK_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "BIN_DIR="+filepath.Join(dir, "bin"), "OUT="+out, "REPEAT=1", "REAL_PYTHON="+python,
		"PYTHON="+filepath.Join(tools, "fakepython"), "NVCC="+filepath.Join(tools, "nvcc"), "CUOBJDUMP="+filepath.Join(tools, "cuobjdump"),
		"COMPUTE_SANITIZER="+filepath.Join(tools, "compute-sanitizer"), "NVIDIA_SMI="+filepath.Join(tools, "nvidia-smi"))
	cmd.Env = append(cmd.Env, env...)
	b, err := cmd.CombinedOutput()
	r := dryRun{dir: dir, output: string(b)}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	report, err := os.ReadFile(filepath.Join(out, "gpu-check.md"))
	if err != nil {
		t.Fatalf("no report: %v\n%s", err, b)
	}
	r.report = string(report)
	return r
}

// step returns the result and detail of a step in the report's steps table.
func (r dryRun) step(t *testing.T, name string) (result, detail string) {
	t.Helper()
	m := regexp.MustCompile(`(?m)^\| ` + regexp.QuoteMeta(name) + ` \| ([^|]+) \| [^|]+ \| (.*) \|$`).FindStringSubmatch(r.report)
	if m == nil {
		t.Fatalf("no step %q in the report:\n%s", name, r.report)
	}
	return strings.Trim(strings.TrimSpace(m[1]), "*"), m[2]
}

func (r dryRun) want(t *testing.T, code int, steps map[string]string, texts ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\n%s", r.code, code, r.output)
	}
	for name, want := range steps {
		if got, detail := r.step(t, name); got != want {
			t.Errorf("step %s: %s (%s), want %s", name, got, detail, want)
		}
	}
	for _, s := range texts {
		if !strings.Contains(r.report, s) {
			t.Errorf("the report lacks %q", s)
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", r.report)
	}
}

var allSteps = []string{"preflight", "gpucheck", "cuda.test", "nvcc rebuild", "cuobjdump", "bench", "PyTorch", "bench-rebuilt", "memcheck", "synccheck", "racecheck"}

func all(result string) map[string]string {
	m := map[string]string{}
	for _, s := range allSteps {
		m[s] = result
	}
	return m
}

// Everything there and passing: exit 0, every step ok, the ratios computed from both sides (our
// 900 GB/s over PyTorch's 1000 is 0.90x, which meets the 0.9x target), our cuBLAS pointed at
// PyTorch's, the rebuilt kernels benchmarked from their directory, the resources table with the
// embedded convolution's stack frame flagged.
func TestGPUCheckAllPass(t *testing.T) {
	r := run(t)
	r.want(t, 0, all("ok"),
		"**Result: PASS**",
		"| vector_addition | vector 10M | ptx | 900 GB/s | torch ref | 1000 GB/s | 0.90x | ≥ 0.9x met |",
		"| image_processing | conv 32x3x224² k3 f64 | ptx | 1e+04 GFLOP/s | torch ref | 3e+04 GFLOP/s | 0.33x | ≥ 0.5x **missed** |",
		"ptx fp32 (split-K off)",
		"SGEMM: cublas (/fake/torch/lib/libcublas.so.13, cuBLAS 13.0.2)", // ours, on PyTorch's library
		"cuda.test saw GPUJOBS_CUBLAS=/fake/torch/lib/libcublas.so.13",
		"- SGEMM and cuBLAS, ours (gpucheck): cublas (/fake/torch/lib/libcublas.so.13, cuBLAS 13.0.2)",
		"- cuBLAS, PyTorch's: /fake/torch/lib/libcublas.so.13, version 13.0.2", // both versions
		"| matmul 1000 | ptx (split-K off) | 1.5e+04 GFLOP/s | 1.5e+04 GFLOP/s | 1.00x |",
		"| image_processing | k_image_processing | 128 | **32** | 0 | 17920 | 128 | 0 | 0 |",
		"### memcheck: ERROR SUMMARY: 0 errors",
		"### racecheck: RACECHECK SUMMARY: 0 hazards displayed (0 errors, 0 warnings)",
		"glibc: ", "(the binaries need GLIBC_2.34)", "580.95.05")
	if !strings.Contains(r.report, "Kernels loaded from: ") || !strings.Contains(r.report, "/kernels (fatbin)") {
		t.Errorf("the rebuilt bench does not say it loaded the rebuilt kernels")
	}
	if strings.Contains(r.report, "not checked") {
		t.Errorf("something is not checked in a full run")
	}
}

// A failed benchmark case, a failing test and a sanitizer error each fail their step, and the
// script exits 1; the rest still runs and is reported.
func TestGPUCheckFailures(t *testing.T) {
	r := run(t, "FAKE_BENCH_ERROR=1", "FAKE_TEST_FAIL=1", "FAKE_SANITIZER_ERRORS=1")
	steps := all("ok")
	steps["bench"], steps["bench-rebuilt"], steps["cuda.test"], steps["memcheck"] = "FAIL", "FAIL", "FAIL", "FAIL"
	r.want(t, 1, steps, "**Result: FAIL** — failed: cuda.test, bench, bench-rebuilt, memcheck",
		"error: launch conv2d_igemm_64: CUDA_ERROR_LAUNCH_FAILED",
		"≥ 0.5x **not checked**: launch conv2d_igemm_64: CUDA_ERROR_LAUNCH_FAILED",
		"1 failed (TestConformanceCuBLAS)",
		"Invalid __global__ read of size 4 bytes")
	r = run(t, "FAKE_CHECK_RC=1")
	if got, _ := r.step(t, "gpucheck"); got != "FAIL" || r.code != 1 {
		t.Errorf("gpucheck exit 1: step %s, exit %d", got, r.code)
	}
}

// What is missing is "not checked", with the reason, never silently absent: no torch (every
// target not checked), cuBLAS not loaded (its cases and targets), no nvcc (no rebuild, no
// rebuilt bench), no compute-sanitizer. Nothing failed, so the exit status is 3.
func TestGPUCheckMissingPieces(t *testing.T) {
	r := run(t, "FAKE_TORCH=0", "FAKE_CUBLAS=0", "NVCC=/nonexistent/nvcc", "COMPUTE_SANITIZER=/nonexistent/compute-sanitizer")
	steps := all("not checked")
	for _, s := range []string{"preflight", "gpucheck", "cuda.test", "cuobjdump", "bench"} {
		steps[s] = "ok"
	}
	r.want(t, 3, steps, "**Result: INCOMPLETE**",
		"No module named 'torch'",
		"| matrix_multiply | matmul 1000 | cublas fp32 | not checked: cuBLAS not loaded: cuBLAS not found |",
		"≥ 0.95x **not checked**: cuBLAS not loaded: cuBLAS not found",
		"no /nonexistent/nvcc on PATH", "no /nonexistent/compute-sanitizer on PATH")
	for _, target := range []string{"vector_addition", "image_processing", "neural_network"} {
		if !regexp.MustCompile(`\| ` + target + ` \|.*\*\*not checked\*\*: PyTorch not checked`).MatchString(r.report) {
			t.Errorf("target of %s not marked not checked for want of PyTorch", target)
		}
	}
	if strings.Contains(r.report, "x met |") {
		t.Errorf("a target reported met without PyTorch")
	}
}

// Without a usable GPU (gpucheck --help fails), the preflight fails, no GPU step runs, and the
// report still comes.
func TestGPUCheckNoGPU(t *testing.T) {
	r := run(t, "FAKE_HELP_RC=1")
	if got, detail := r.step(t, "preflight"); got != "FAIL" || !strings.Contains(detail, "no CUDA device found") {
		t.Errorf("preflight %s (%s)", got, detail)
	}
	for _, s := range []string{"gpucheck", "cuda.test", "bench", "memcheck"} {
		if got, detail := r.step(t, s); got != "not checked" || detail != "preflight failed" {
			t.Errorf("%s: %s (%s), want not checked: preflight failed", s, got, detail)
		}
	}
	if r.code != 1 || !strings.Contains(r.report, "no benchmark ran: every target not checked") {
		t.Errorf("exit %d, want 1, and the report must say no target was checked:\n%s", r.code, r.report)
	}
}

// A step that overruns the budget is killed; what no longer fits is not checked: out of time.
func TestGPUCheckOutOfTime(t *testing.T) {
	r := run(t, "GPU_CHECK_BUDGET=17", "FAKE_CHECK_SLEEP=60")
	got, detail := r.step(t, "gpucheck")
	if !(got == "FAIL" && strings.Contains(detail, "timed out")) && !(got == "not checked" && strings.Contains(detail, "out of time")) {
		t.Errorf("gpucheck %s (%s), want timed out", got, detail)
	}
	for _, s := range []string{"bench", "memcheck", "racecheck"} {
		if got, detail := r.step(t, s); got != "not checked" || !strings.Contains(detail, "out of time") {
			t.Errorf("%s: %s (%s), want not checked: out of time", s, got, detail)
		}
	}
	if r.code == 0 {
		t.Errorf("exit 0 after running out of time")
	}
}
