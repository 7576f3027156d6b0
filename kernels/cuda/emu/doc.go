// Package emu tests the CUDA kernels of kernels/cuda without a GPU: testdata/cuda_emu.h runs a kernel on
// the CPU with one thread per CUDA thread (blocks in turn, __syncthreads as a barrier, warp
// shuffles through memory), and testdata/kernels_test.cc compares every kernel's output with a plain
// reference on awkward shapes. It checks the index arithmetic (tiles, edges, loaders, epilogues),
// not performance or the GPU's memory model. It has no Go code besides the test that builds it.
package emu
