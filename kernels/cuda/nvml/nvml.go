//go:build cgo

// Package nvml samples a GPU's utilisation and memory through NVIDIA's management library
// (libnvidia-ml.so.1, installed with the driver), loaded at run time with dlopen like cuBLAS in
// package cublas: a node without it still runs jobs, and their results simply have no telemetry.
//
// Load and Device are the cgo half; Recorder (sampler.go) is plain Go over the Source interface,
// so that its statistics are tested with fakes. The package must not import gorgonia.org/cu:
// devices are found by their PCI address, which the caller reads from CUDA.
package nvml

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

typedef struct { unsigned int gpu, memory; } nvml_utilization;
typedef struct { unsigned long long total, free, used; } nvml_memory;

typedef struct {
	void *init, *shutdown, *by_pci, *utilization, *memory, *error_string, *driver_version;
} nvml_fns;

// open_nvml dlopens path and resolves the entry points; it returns NULL or what went wrong.
static const char *open_nvml(const char *path, nvml_fns *f) {
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) return dlerror();
	f->init = dlsym(h, "nvmlInit_v2");
	f->shutdown = dlsym(h, "nvmlShutdown");
	f->by_pci = dlsym(h, "nvmlDeviceGetHandleByPciBusId_v2");
	f->utilization = dlsym(h, "nvmlDeviceGetUtilizationRates");
	f->memory = dlsym(h, "nvmlDeviceGetMemoryInfo");
	f->error_string = dlsym(h, "nvmlErrorString");
	f->driver_version = dlsym(h, "nvmlSystemGetDriverVersion");
	if (!f->init || !f->shutdown || !f->by_pci || !f->utilization || !f->memory || !f->error_string || !f->driver_version) {
		dlclose(h);
		return "missing nvmlInit_v2, nvmlShutdown, nvmlDeviceGetHandleByPciBusId_v2, nvmlDeviceGetUtilizationRates, nvmlDeviceGetMemoryInfo, nvmlErrorString or nvmlSystemGetDriverVersion";
	}
	return NULL;
}

static int call_init(void *fn) { return ((int (*)(void))fn)(); }
static int call_shutdown(void *fn) { return ((int (*)(void))fn)(); }
static int call_by_pci(void *fn, const char *bus, void **dev) { return ((int (*)(const char *, void **))fn)(bus, dev); }
static int call_utilization(void *fn, void *dev, nvml_utilization *u) { return ((int (*)(void *, nvml_utilization *))fn)(dev, u); }
static int call_memory(void *fn, void *dev, nvml_memory *m) { return ((int (*)(void *, nvml_memory *))fn)(dev, m); }
static const char *call_error_string(void *fn, int r) { return ((const char *(*)(int))fn)(r); }
static int call_driver_version(void *fn, char *buf, unsigned int n) { return ((int (*)(char *, unsigned int))fn)(buf, n); }
*/
import "C"

import (
	"fmt"
	"unsafe"
)

// Soname is the library the driver installs.
const Soname = "libnvidia-ml.so.1"

// Library is a loaded and initialised NVML.
type Library struct {
	Path string
	fns  C.nvml_fns
}

// Load loads NVML (path, or Soname on the loader's path when empty) and initialises it. The
// error says what is missing: the library, an entry point, or a driver NVML can talk to.
func Load(path string) (*Library, error) {
	if path == "" {
		path = Soname
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	l := &Library{Path: path}
	if msg := C.open_nvml(cpath, &l.fns); msg != nil {
		return nil, fmt.Errorf("NVML not loaded: %s", C.GoString(msg))
	}
	if r := C.call_init(l.fns.init); r != 0 {
		return nil, fmt.Errorf("NVML not usable: nvmlInit: %s", l.errorString(int(r)))
	}
	return l, nil
}

// Close shuts NVML down.
func (l *Library) Close() error {
	if r := C.call_shutdown(l.fns.shutdown); r != 0 {
		return fmt.Errorf("nvmlShutdown: %s", l.errorString(int(r)))
	}
	return nil
}

func (l *Library) errorString(r int) string {
	return fmt.Sprintf("%s (%d)", C.GoString(C.call_error_string(l.fns.error_string, C.int(r))), r)
}

// DriverVersion is the driver's version, e.g. "580.95.05".
func (l *Library) DriverVersion() (string, error) {
	var buf [96]C.char
	if r := C.call_driver_version(l.fns.driver_version, &buf[0], C.uint(len(buf))); r != 0 {
		return "", fmt.Errorf("nvmlSystemGetDriverVersion: %s", l.errorString(int(r)))
	}
	return C.GoString(&buf[0]), nil
}

// Device is one GPU as NVML knows it.
type Device struct {
	lib   *Library
	h     unsafe.Pointer
	busID string
}

// DeviceByPCI finds the GPU at a PCI address ("0000:3b:00.0"): CUDA and NVML number devices
// differently (CUDA_VISIBLE_DEVICES, fastest-first order), but the address is the same.
func (l *Library) DeviceByPCI(busID string) (*Device, error) {
	cbus := C.CString(busID)
	defer C.free(unsafe.Pointer(cbus))
	d := &Device{lib: l, busID: busID}
	if r := C.call_by_pci(l.fns.by_pci, cbus, &d.h); r != 0 {
		return nil, fmt.Errorf("nvmlDeviceGetHandleByPciBusId %s: %s", busID, l.errorString(int(r)))
	}
	return d, nil
}

// Sample reads the device's utilisation (the percentage of the driver's last sample period,
// 1/6 s to 1 s, in which a kernel ran) and its memory in use.
func (d *Device) Sample() (Sample, error) {
	var u C.nvml_utilization
	if r := C.call_utilization(d.lib.fns.utilization, d.h, &u); r != 0 {
		return Sample{}, fmt.Errorf("nvmlDeviceGetUtilizationRates %s: %s", d.busID, d.lib.errorString(int(r)))
	}
	var m C.nvml_memory
	if r := C.call_memory(d.lib.fns.memory, d.h, &m); r != 0 {
		return Sample{}, fmt.Errorf("nvmlDeviceGetMemoryInfo %s: %s", d.busID, d.lib.errorString(int(r)))
	}
	return Sample{Utilization: float64(u.gpu), MemoryUsed: int64(m.used)}, nil
}
