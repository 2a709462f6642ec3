// Calibration load: busy every SM of one GPU for a given time (built only when CMake finds a CUDA toolkit).
#pragma once

#include <cstdint>
#include <string>

namespace fastmeter::calibrate {

// Runs FMA chains on every SM of `device` until `duration_ns` of GPU time has passed (%globaltimer), then waits
// for the kernel to finish. Returns an empty string on success, else the CUDA error text.
std::string spin_ns(int device, std::int64_t duration_ns);

}  // namespace fastmeter::calibrate
