// NVML return codes: symbolic name, what to do, and whether a channel can recover (values from nvml.h).
#include "fastmeter/sources/nvml_api.h"

namespace fastmeter::nvml {
namespace {

struct Entry {
  Return code;
  ReturnInfo info;
};

constexpr const char* kCheckDriver =
    "check the driver with `nvidia-smi` and the kernel log (`dmesg | grep -i xid`); reset or reboot the GPU";

const Entry kTable[] = {
    {0, {"SUCCESS", "", false}},
    {1, {"UNINITIALIZED", "NVML was shut down underneath fastmeter; restart the meter", true}},
    {2, {"INVALID_ARGUMENT", "the device handle is no longer valid; restart the meter", true}},
    {3, {"NOT_SUPPORTED", "this GPU or driver does not offer the value; a newer driver may", false}},
    {4, {"NO_PERMISSION", "run as a user allowed to query the GPU (check /dev/nvidia* permissions)", true}},
    {5, {"ALREADY_INITIALIZED", "harmless: NVML was initialized already", false}},
    {6, {"NOT_FOUND", "the GPU disappeared; check `nvidia-smi`", true}},
    {7, {"INSUFFICIENT_SIZE", "internal buffer too small; report this as a fastmeter bug", false}},
    {8, {"INSUFFICIENT_POWER", "the GPU's external power cables are not connected properly", true}},
    {9, {"DRIVER_NOT_LOADED", "load the NVIDIA kernel driver (check `nvidia-smi`)", true}},
    {10, {"TIMEOUT", "the driver timed out; the next poll retries", false}},
    {11, {"IRQ_ISSUE", "the kernel detected an interrupt problem with the GPU; check `dmesg`", true}},
    {12, {"LIBRARY_NOT_FOUND", "install the NVIDIA driver or set FASTMETER_NVML_LIBRARY", true}},
    {13, {"FUNCTION_NOT_FOUND", "the driver is too old for this call; upgrade it", true}},
    {14, {"CORRUPTED_INFOROM", "the GPU's infoROM is corrupted; contact the hardware vendor", true}},
    {15, {"GPU_IS_LOST", kCheckDriver, true}},
    {16, {"RESET_REQUIRED", "the GPU needs a reset (`nvidia-smi -r`) or a reboot", true}},
    {17, {"OPERATING_SYSTEM", "the operating system refused the call; check `dmesg`", true}},
    {18, {"LIB_RM_VERSION_MISMATCH", "the NVML library and the kernel driver differ in version; reboot or "
                                     "reinstall the driver", true}},
    {19, {"IN_USE", "the GPU is busy with an exclusive operation; the next poll retries", false}},
    {20, {"MEMORY", "the driver ran out of memory", true}},
    {21, {"NO_DATA", "no value yet; the next poll retries", false}},
    {27, {"NOT_READY", "the value is not ready yet; the next poll retries", false}},
    {28, {"GPU_NOT_FOUND", "the GPU disappeared; check `nvidia-smi`", true}},
    {29, {"INVALID_STATE", "the GPU is in a state that does not allow the call; check `nvidia-smi`", true}},
};

const ReturnInfo kUnknown = {"UNKNOWN", "an unexpected driver error; the next poll retries", false};

}  // namespace

const ReturnInfo& return_info(Return r) {
  for (const auto& e : kTable)
    if (e.code == r) return e.info;
  return kUnknown;
}

}  // namespace fastmeter::nvml
