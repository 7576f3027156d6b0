// Package sysinfo reads what a CPU worker reports about its machine: the CPU model and how much
// memory it may use (the cgroup limit inside a container, else the machine's RAM).
package sysinfo

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// CPUModel is the "model name" of /proc/cpuinfo, or "unknown CPU".
func CPUModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	return "unknown CPU"
}

// MemoryLimit is the smaller of the cgroup v2 memory limit and MemTotal, in bytes; 0 if unknown.
func MemoryLimit() int64 {
	total := meminfo("MemTotal:")
	if v := cgroupInt("memory.max"); v > 0 && (total == 0 || v < total) {
		return v
	}
	return total
}

// MemoryAvailable is what can be allocated now without swapping: MemAvailable, or less inside a
// cgroup whose limit is nearer; 0 if unknown.
func MemoryAvailable() int64 {
	avail := meminfo("MemAvailable:")
	if limit := cgroupInt("memory.max"); limit > 0 {
		if left := limit - cgroupInt("memory.current"); left < avail || avail == 0 {
			return max(left, 0)
		}
	}
	return avail
}

// cgroupInt reads a cgroup v2 file of the process's cgroup root as an integer ("max" is 0).
func cgroupInt(name string) int64 {
	b, err := os.ReadFile("/sys/fs/cgroup/" + name)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// meminfo reads one field of /proc/meminfo, in bytes.
func meminfo(field string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == field {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}
