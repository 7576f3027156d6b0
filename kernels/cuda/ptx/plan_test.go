package ptx

import (
	"math"
	"testing"
)

const h200SMs = 132

func TestPlanGemm(t *testing.T) {
	for _, tc := range []struct {
		name         string
		m, n, k      int
		splittable   bool
		tile, splits int
		chunk        int
	}{
		{"4096²: large tiles fill the GPU", 4096, 4096, 4096, true, 128, 1, 4096},
		{"1000²: 256 small tiles, half the GPU", 1000, 1000, 1000, true, 64, 2, 504},
		{"1000² unsplittable", 1000, 1000, 1000, false, 64, 1, 1000},
		{"MLP X·W1", 64, 256, 784, true, 64, 11, 72},
		{"MLP H·W2", 64, 10, 256, true, 64, 4, 64},
		{"MLP dH: K too short", 64, 256, 10, true, 64, 1, 10},
		{"2000²: large tiles, enough of them", 2000, 2000, 2000, true, 128, 1, 2000},
		{"tiny", 1, 1, 1, true, 64, 1, 1},
		{"odd K", 7, 5, 333, true, 64, 5, 72},
	} {
		p := PlanGemm(tc.m, tc.n, tc.k, h200SMs, tc.splittable, "large", "small")
		if p.Tile != tc.tile || p.Splits != tc.splits || p.KChunk != tc.chunk {
			t.Errorf("%s: tile %d, %d splits of %d; want %d, %d of %d", tc.name, p.Tile, p.Splits, p.KChunk, tc.tile, tc.splits, tc.chunk)
		}
		if (p.Tile == 128) != (p.Kernel == "large") || (p.Tile == 128) != (p.Threads == 256) {
			t.Errorf("%s: tile %d with kernel %s and %d threads", tc.name, p.Tile, p.Kernel, p.Threads)
		}
		if p.Splits > 1 {
			// Every slice is non-empty and the last one ends at K; chunks are whole K steps.
			if p.KChunk%8 != 0 || (p.Splits-1)*p.KChunk >= tc.k || p.Splits*p.KChunk < tc.k {
				t.Errorf("%s: %d slices of %d do not cover K=%d exactly", tc.name, p.Splits, p.KChunk, tc.k)
			}
			if p.Workspace(tc.m, tc.n) > MaxSplitWorkspace {
				t.Errorf("%s: workspace %d bytes", tc.name, p.Workspace(tc.m, tc.n))
			}
		}
	}
	// splitk_reduce's grid has a row of blocks per row of C: no split beyond CUDA's 65535.
	if p := PlanGemm(70000, 8, 4096, 100000, true, "large", "small"); p.Splits != 1 {
		t.Errorf("70000 rows: %d splits", p.Splits)
	}
	// The workspace cap limits the split of a large, skinny product.
	p := PlanGemm(3000, 3000, 1<<16, 1000, true, "large", "small")
	if ws := p.Workspace(3000, 3000); ws > MaxSplitWorkspace || p.Splits > 1 && ws == 0 {
		t.Errorf("3000×3000×65536 on 1000 SMs: %d splits, workspace %d", p.Splits, ws)
	}
}

func TestPlanConv(t *testing.T) {
	// The default job: 32 × 3 × 224², 64 filters.
	px := int64(32 * 224 * 224)
	p := PlanConv(64, px, 3*px, 64*px)
	if p.Kernel != Conv64 || !p.Index32 || p.GridX != int((px+127)/128) || p.GridY != 1 || p.Threads != 128 {
		t.Errorf("default conv: %+v", p)
	}
	if p := PlanConv(70, 100, 300, 7000); p.Kernel != Conv128 || p.GridY != 1 || p.Threads != 256 {
		t.Errorf("70 filters: %+v", p)
	}
	// An output of 2³¹ elements or more needs the 64-bit kernels.
	if p := PlanConv(64, 1<<25, 3<<25, 64<<25); p.Kernel != Conv64I64 || p.Index32 {
		t.Errorf("2³¹ outputs: %+v", p)
	}
	if p := PlanConv(128, 1<<20, 1<<20, math.MaxInt32); p.Kernel != Conv128 {
		t.Errorf("exactly MaxInt32 elements: %+v", p)
	}
	if p := PlanConv(128, 1<<20, 1<<20, math.MaxInt32+1); p.Kernel != Conv128I64 {
		t.Errorf("MaxInt32+1 elements: %+v", p)
	}
}
