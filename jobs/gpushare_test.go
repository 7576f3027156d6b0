package jobs

import "testing"

const (
	MiB = int64(1) << 20
	GiB = int64(1) << 30
)

func TestShare(t *testing.T) {
	for _, tc := range []struct {
		mem, memory int64
		limit, want int
	}{
		{GiB, 0, 4, 1},              // memory unknown
		{GiB, 80 * GiB, 1, 1},       // no sharing
		{GiB, 80 * GiB, 4, 4},       // small jobs: the limit
		{30 * GiB, 80 * GiB, 4, 2},  // two fit beside each other
		{60 * GiB, 80 * GiB, 4, 1},  // one
		{100 * GiB, 80 * GiB, 4, 1}, // never fits: still one (Fits refuses it)
		{3*GiB - GPUJobHeadroom, 12*GiB + GPUContextReserve, 8, 4}, // exactly four with headroom
	} {
		if got := GPUShare(tc.mem, tc.memory, tc.limit); got != tc.want {
			t.Errorf("Share(%d MiB, %d MiB, %d) = %d, want %d", tc.mem/MiB, tc.memory/MiB, tc.limit, got, tc.want)
		}
	}
}
