package monitor

import (
	"math"
	"sort"
)

// Speedup compares CPU and GPU runs of the same job type and params: speedup = mean CPU
// processing_time / mean GPU processing_time. Job types without a comparable pair are listed
// with speedup 0 and no comparisons.
func (a *Aggregator) Speedup() Speedups {
	a.mu.RLock()
	defer a.mu.RUnlock()
	byType := map[string]*JobSpeedup{}
	var types []string
	for k, c := range a.compare {
		js := byType[k.jobType]
		if js == nil {
			js = &JobSpeedup{JobType: k.jobType, Compared: []Comparison{}}
			byType[k.jobType] = js
			types = append(types, k.jobType)
		}
		if len(c.cpu) == 0 || len(c.gpu) == 0 {
			js.Uncompared++
			continue
		}
		cm, gm := mean(sorted(c.cpu)), mean(sorted(c.gpu))
		cmp := Comparison{Params: c.params, CPURuns: len(c.cpu), GPURuns: len(c.gpu), CPUMean: cm, GPUMean: gm}
		if sp := cm / gm; gm > 0 && !math.IsInf(sp, 0) { // finite by Validate's bounds; checked all the same
			cmp.Speedup = sp
		}
		js.Compared = append(js.Compared, cmp)
	}
	sort.Strings(types)
	out := Speedups{GeneratedAt: a.now().UTC(), JobTypes: []JobSpeedup{}}
	for _, t := range types {
		js := byType[t]
		sort.Slice(js.Compared, func(i, j int) bool { return string(js.Compared[i].Params) < string(js.Compared[j].Params) })
		var logSum, cpuSum, gpuSum float64
		n := 0
		for _, c := range js.Compared {
			if c.Speedup > 0 {
				logSum += math.Log(c.Speedup)
				cpuSum += c.CPUMean
				gpuSum += c.GPUMean
				n++
			}
		}
		if n > 0 {
			js.Speedup = math.Exp(logSum / float64(n))
			js.CPUMean, js.GPUMean = cpuSum/float64(n), gpuSum/float64(n)
		}
		out.JobTypes = append(out.JobTypes, *js)
	}
	return out
}
