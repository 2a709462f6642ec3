// A square-wave GPU load for `fastmeter calibrate`: one launch per on-phase, all SMs busy until a deadline.
#include "fastmeter/calibrate/spin.h"

#include <cuda_runtime.h>

namespace fastmeter::calibrate {
namespace {

__device__ std::uint64_t globaltimer_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// FMA chains keep the ALUs (and so the power draw) high; the timer is checked every 256 FMAs, well under a
// microsecond, so the load stops within ~1 us of the deadline. `sink` keeps the compiler from removing the work.
__global__ void spin_kernel(std::uint64_t duration_ns, float* sink) {
  const std::uint64_t end = globaltimer_ns() + duration_ns;
  float a = static_cast<float>(threadIdx.x) * 1e-3f, b = 1.0001f, c = 0.9999f;
  while (globaltimer_ns() < end) {
#pragma unroll 64
    for (int i = 0; i < 256; ++i) a = fmaf(a, b, c);
  }
  if (a == 12345.678f) *sink = a;
}

}  // namespace

std::string spin_ns(int device, std::int64_t duration_ns) {
  if (duration_ns <= 0) return {};
  cudaError_t err = cudaSetDevice(device);
  int sms = 0;
  if (err == cudaSuccess) err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  float* sink = nullptr;
  if (err == cudaSuccess) err = cudaMalloc(&sink, sizeof(float));
  if (err == cudaSuccess) {
    spin_kernel<<<sms * 4, 256>>>(static_cast<std::uint64_t>(duration_ns), sink);
    err = cudaGetLastError();
  }
  if (err == cudaSuccess) err = cudaDeviceSynchronize();
  if (sink != nullptr) cudaFree(sink);
  return err == cudaSuccess ? std::string() : std::string(cudaGetErrorString(err));
}

}  // namespace fastmeter::calibrate
