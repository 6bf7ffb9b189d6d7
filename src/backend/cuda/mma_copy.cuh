// The data movement of eaq's mma.sync GEMMs (int8_gemm.cu, split_k_gemm.cu, int8_split_k_gemm.cu):
// asynchronous 16-byte copies from global to shared memory (cp.async, grouped and waited for by
// group) and ldmatrix loads of four 8 x 8 b16 matrices into mma fragments; and the int8 mma.
#pragma once

namespace eaq::cuda {

__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// Copies 16 bytes, or zero-fills them when `valid` is false (rows or K beyond the matrix; `src`
// must still be a valid address).
__device__ __forceinline__ void copy16(unsigned dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes));
}

// Closes the group of copies issued since the last commit.
__device__ __forceinline__ void commit() {
  asm volatile("cp.async.commit_group;\n" ::);
}

// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ __forceinline__ void wait_pending() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(unsigned address, unsigned (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address));
}

// c += a . b on the tensor cores, s8 x s8 -> s32, m16n8k32 (fragment layouts: int8_gemm.cu).
__device__ __forceinline__ void mma_s8(const unsigned (&a)[4], unsigned b0, unsigned b1,
                                       int (&c)[4]) {
  asm volatile(
      "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace eaq::cuda
