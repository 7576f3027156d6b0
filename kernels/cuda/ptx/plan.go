package ptx

import "math"

// The launch geometry of the kernels, worked out in plain Go so that it is tested without a GPU.
// The tile sizes and blocks per SM below are those of the .cu sources (matrix_multiply.cu's LARGE
// and SMALL, image_processing.cu's DEFINE_CONV lines): keep them in step.

// GemmPlan is how the PTX SGEMM runs one product.
type GemmPlan struct {
	Tile    int    // BM = BN: 128 or 64
	Threads int    // per block
	Kernel  string // the kernel for an unsplit product (the caller's variant of this tile size)
	// Splits is how many slices of K the product is cut into (1: not split); each slice but the
	// last is KChunk long, a multiple of the GEMM's 8-deep K step.
	Splits, KChunk int
	// SplitKernel computes the slices' partial products; splitk_reduce sums them.
	SplitKernel string
}

// Split-K bounds: a slice is at least minKChunk deep (the double-buffered K loop needs a few
// steps to pay for itself), at most maxSplits slices, and the partial products at most
// MaxSplitWorkspace bytes (beside the job's estimate, within the runner's headroom).
const (
	minKChunk         = 64
	maxSplits         = 16
	MaxSplitWorkspace = 32 << 20
	// maxGridY is CUDA's limit on gridDim.y: splitk_reduce runs one block row per row of C.
	maxGridY = 65535
)

// PlanGemm picks the tiles of an M×N×K product on a GPU with sms multiprocessors: 128×128 tiles
// when they give every SM a block, else 64×64. When even the small tiles fill less than half of
// the blocks the GPU can hold at once (4 per SM for 64×64, 2 for 128×128) and splittable is set
// (the NN kernels with a plain or bias+ReLU epilogue), K is split so that the slices' blocks fill
// it: the 1000² product on a 132-SM H200 (256 tiles) in 2, the MLP's X·W1 (64×256×784, 4 tiles)
// in 11, H·W2 (64×10×256, 1 tile) in 4.
func PlanGemm(m, n, k, sms int, splittable bool, large, small string) GemmPlan {
	p := GemmPlan{Tile: 128, Threads: 256, Kernel: large, Splits: 1, KChunk: k, SplitKernel: SgemmNNSplitK128}
	resident := 2
	if ceil(m, 128)*ceil(n, 128) < sms {
		p = GemmPlan{Tile: 64, Threads: 128, Kernel: small, Splits: 1, KChunk: k, SplitKernel: SgemmNNSplitK64}
		resident = 4
	}
	blocks := ceil(m, p.Tile) * ceil(n, p.Tile)
	slots := sms * resident
	if !splittable || 2*blocks > slots || k < 2*minKChunk || m > maxGridY {
		return p
	}
	splits := min(slots/blocks, k/minKChunk, maxSplits)
	if ws := int64(m) * int64(n) * 4; ws > 0 {
		splits = min(splits, int(MaxSplitWorkspace/ws))
	}
	if splits < 2 {
		return p
	}
	chunk := ceil(ceil(k, splits), 8) * 8
	p.Splits, p.KChunk = ceil(k, chunk), chunk
	if p.Splits < 2 {
		p.Splits, p.KChunk = 1, k
	}
	return p
}

// Workspace is the bytes the split's partial products take.
func (p GemmPlan) Workspace(m, n int) int64 {
	if p.Splits < 2 {
		return 0
	}
	return int64(p.Splits) * int64(m) * int64(n) * 4
}

// ConvPlan is how the implicit-GEMM convolution runs.
type ConvPlan struct {
	Kernel       string
	TileF, TileP int // filters and pixels per block
	Threads      int
	Index32      bool // the kernel divides pixel indices in 32 bits
	GridX, GridY int  // pixel tiles, filter tiles
}

// PlanConv picks the convolution kernel for f filters over pixels = N·H·W output pixels, with
// inElems and outElems elements in the input and output: 64 filters per block when that covers
// them (the usual 3→64 first layer), else 128; the 32-bit variant when every pixel index and
// element offset fits an int.
func PlanConv(f int, pixels, inElems, outElems int64) ConvPlan {
	p := ConvPlan{Kernel: Conv64, TileF: 64, TileP: 128, Threads: 128}
	if f > 64 {
		p = ConvPlan{Kernel: Conv128, TileF: 128, TileP: 128, Threads: 256}
	}
	p.Index32 = max(pixels, inElems, outElems) <= math.MaxInt32
	if !p.Index32 {
		p.Kernel += "_i64"
	}
	p.GridX, p.GridY = int((pixels+int64(p.TileP)-1)/int64(p.TileP)), ceil(f, p.TileF)
	return p
}

func ceil(a, b int) int { return (a + b - 1) / b }
