package command

import (
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/gpujobs/gpujobs/jobs"
)

// Device is one GPU a worker hands to command jobs.
type Device struct {
	Index  int   // the ordinal that CUDA_VISIBLE_DEVICES names
	Memory int64 // bytes; 0 when unknown
}

// Devices is the book of which GPUs of a worker are taken by which command job: each GPU goes to
// one job at a time, so two GPU jobs on a two-GPU node never share a device.
type Devices struct {
	mu   sync.Mutex
	devs []Device
	busy map[int]string // device index → job ID
}

// NewDevices returns the book of devs, all free.
func NewDevices(devs []Device) *Devices {
	return &Devices{devs: devs, busy: map[int]string{}}
}

// ParseDevices reads a device list, "0,1" or with memory "0:80GiB,1:80GiB".
func ParseDevices(s string) ([]Device, error) {
	var out []Device
	seen := map[int]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		idx, mem, _ := strings.Cut(f, ":")
		i, err := strconv.Atoi(idx)
		if err != nil || i < 0 || seen[i] {
			return nil, fmt.Errorf("GPU list %q: %q is not a new device ordinal (0, 1, ...)", s, idx)
		}
		d := Device{Index: i}
		if mem != "" {
			if d.Memory, err = jobs.ParseBytes(mem); err != nil {
				return nil, fmt.Errorf("GPU list %q: %w", s, err)
			}
		}
		seen[i] = true
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("GPU list %q names no device", s)
	}
	return out, nil
}

// Len is the number of devices.
func (d *Devices) Len() int { return len(d.devs) }

// Take gives jobID n free devices with at least mem bytes each, lowest ordinals first. It fails
// with jobs.ErrTooBig when the worker can never give that, with jobs.ErrBusy when it cannot now.
func (d *Devices) Take(jobID string, n int, mem int64) ([]int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	fit := 0
	for _, dev := range d.devs {
		if dev.Memory == 0 || dev.Memory >= mem {
			fit++
		}
	}
	if n > fit {
		return nil, fmt.Errorf("%w: the job asks for %d GPU(s)%s, this worker has %d that qualify", jobs.ErrTooBig, n, memNote(mem), fit)
	}
	var got []int
	for _, dev := range d.devs {
		if len(got) == n {
			break
		}
		if _, taken := d.busy[dev.Index]; !taken && (dev.Memory == 0 || dev.Memory >= mem) {
			got = append(got, dev.Index)
		}
	}
	if len(got) < n {
		return nil, fmt.Errorf("%w: the job asks for %d GPU(s)%s, %d of this worker's are free now", jobs.ErrBusy, n, memNote(mem), len(got))
	}
	for _, i := range got {
		d.busy[i] = jobID
	}
	return got, nil
}

// Release frees jobID's devices.
func (d *Devices) Release(jobID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, j := range d.busy {
		if j == jobID {
			delete(d.busy, i)
		}
	}
}

func memNote(mem int64) string {
	if mem <= 0 {
		return ""
	}
	return " of " + jobs.FormatBytes(mem)
}

// VisibleDevices is the CUDA_VISIBLE_DEVICES value for devices.
func VisibleDevices(devices []int) string {
	s := make([]string, len(devices))
	for i, d := range devices {
		s[i] = strconv.Itoa(d)
	}
	return strings.Join(s, ",")
}
