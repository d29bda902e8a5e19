// Choosing the device a Model runs on; without MIXQ_CUDA, the CUDA backend's
// entry points say that this build has none.
#include "engine/backend.h"

namespace mixq::engine {

#ifndef MIXQ_CUDA
Status CudaStatus() { return Status::NotSupported("this mixq was built without CUDA (cmake -DMIXQ_CUDA=ON)"); }

Result<std::unique_ptr<Backend>> MakeCudaBackend(const ModelConfig&, int64_t) { return CudaStatus(); }
#endif

bool CudaUsable() { return CudaStatus().ok(); }

std::string CudaStatusMessage() {
  const Status s = CudaStatus();
  return s.ok() ? "cuda usable" : s.message();
}

std::string_view DeviceName(Device device) { return device == Device::kCuda ? "cuda" : "cpu"; }

Result<Device> ResolveDevice(std::string_view name) {
  if (name == "cpu") return Device::kCpu;
  if (name == "cuda") {
    MIXQ_TRY(CudaStatus().WithContext("--device cuda"));
    return Device::kCuda;
  }
  if (name.empty() || name == "auto") return CudaUsable() ? Device::kCuda : Device::kCpu;
  return Status::InvalidArgument("--device must be 'cpu', 'cuda' or 'auto', not '" + std::string(name) + "'");
}

}  // namespace mixq::engine
