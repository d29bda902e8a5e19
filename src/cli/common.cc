// Shared CLI plumbing: exit codes, messages, JSON envelopes, sizes, --version.
#include <charconv>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "cli/cli.h"
#include "diffusion/diffusion.h"
#include "engine/engine.h"
#include "formats/formats.h"
#include "plan/plan.h"

namespace mixq::cli {

int ExitCodeFor(const Status& status) {
  switch (status.kind()) {
    case StatusKind::kOk:
      return kExitOk;
    case StatusKind::kInvalidArgument:
      return kExitUsage;
    case StatusKind::kCorruption:
    case StatusKind::kNotSupported:
    case StatusKind::kInfeasible:
      return kExitBadInput;
    case StatusKind::kIOError:
    case StatusKind::kInternal:
      return kExitIOError;
  }
  return kExitIOError;
}

int ReportError(const Status& status) {
  std::string msg = status.message();
  for (char& c : msg) {
    if (c == '\n') c = ' ';
  }
  std::fprintf(stderr, "mixq: error: %s\n", msg.c_str());
  return ExitCodeFor(status);
}

void Info(const GlobalOptions& global, const std::string& message) {
  if (!global.quiet) std::fprintf(stderr, "mixq: %s\n", message.c_str());
}

void EmitJson(const std::string& type, const nlohmann::json& data) {
  nlohmann::json line = {{"type", type}, {"data", data}};
  std::cout << line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
  std::cout.flush();
}

void EmitJsonBegin(const std::string& command) {
  EmitJson("begin", {{"command", command}, {"mixq_version", MIXQ_VERSION}, {"schema_version", 1}});
}

void AddThreadsOption(CLI::App* sub, int* threads) {
  sub->add_option("-t,--threads", *threads, "worker threads (0: all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1 << 16));
}

void AddDeviceOptions(CLI::App* sub, DeviceCliOptions* options) {
  sub->add_option("--device", options->device, "where forward passes run: cpu, cuda, or auto (cuda when usable)")
      ->capture_default_str();
  sub->add_option("--gpu-mem", options->gpu_mem, "cuda: most GPU memory to use, e.g. 24GiB (default: all free)");
}

Result<engine::LoadOptions> ResolveDeviceOptions(const GlobalOptions& global, const DeviceCliOptions& options) {
  engine::LoadOptions load;
  auto device = engine::ResolveDevice(options.device);
  MIXQ_TRY(device);
  load.device = *device;
  if (!options.gpu_mem.empty()) {
    auto bytes = plan::ParseSizeTarget(options.gpu_mem);
    if (!bytes) return Status::InvalidArgument("bad --gpu-mem '" + options.gpu_mem + "'; use e.g. 24GiB");
    load.gpu_mem_bytes = bytes->file_n_bytes;
    if (load.gpu_mem_bytes < engine::kMinGpuMemBytes) {
      return Status::InvalidArgument("--gpu-mem '" + options.gpu_mem + "' is too small: give at least 1GiB");
    }
  }
  std::string line = "device: " + std::string(engine::DeviceName(load.device));
  if (load.device == engine::Device::kCpu && options.device != "cpu") {
    line += " (" + engine::CudaStatusMessage() + ")";
  }
  Info(global, line);
  return load;
}

void AddMethodOption(CLI::App* sub, formats::QuantMethod* method) {
  // Maps the name to the enum's value for CLI11's conversion; nothing else passes.
  const CLI::Validator names(
      [](std::string& text) -> std::string {
        if (text != "best" && text != "ggml") return "must be 'best' or 'ggml', not '" + text + "'";
        const auto value = text == "ggml" ? formats::QuantMethod::kGgml : formats::QuantMethod::kBest;
        text = std::to_string(static_cast<int>(value));
        return "";
      },
      "best|ggml", "METHOD");
  sub->add_option("--method", *method, "block search: best (mixq's, default) or ggml (byte-identical)")
      ->default_str("best")
      ->transform(names);
}

void AddCtxOption(CLI::App* sub, int64_t* ctx, const std::string& help) {
  sub->add_option("--ctx", *ctx, help)->capture_default_str()->check(CLI::Range(int64_t{8}, int64_t{1} << 20));
}

void AddErrorRowsOption(CLI::App* sub, int64_t* rows) {
  sub->add_option("--error-rows", *rows,
                  "rows per tensor whose rounding error is computed for each uncalibrated type (0: all)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40));
}

const CLI::Validator& PositiveOrAll() {
  static const CLI::Validator kValidator(
      [](std::string& text) -> std::string {
        int64_t n = 0;
        auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
        if (ec == std::errc() && end == text.data() + text.size() && (n > 0 || n == -1)) return "";
        return "must be a positive count, or -1 for all; got '" + text + "'";
      },
      "N > 0, or -1: all", "POSITIVE_OR_ALL");
  return kValidator;
}

std::string FormatBytes(uint64_t n_bytes) {
  char buf[64];
  if (n_bytes >= (1ull << 30)) {
    std::snprintf(buf, sizeof buf, "%.2f GiB", n_bytes / 1073741824.0);
  } else if (n_bytes >= (1ull << 20)) {
    std::snprintf(buf, sizeof buf, "%.2f MiB", n_bytes / 1048576.0);
  } else if (n_bytes >= 1024) {
    std::snprintf(buf, sizeof buf, "%.1f KiB", n_bytes / 1024.0);
  } else {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n_bytes));
  }
  return buf;
}

std::string VersionText() {
  const std::string decode_only = formats::DecodeOnlyFormatNames();
  return std::string("mixq ") + MIXQ_VERSION + "\ntypes (encode and decode): " + formats::EncodableFormatNames() +
         "\ntypes (decode only): " + (decode_only.empty() ? "none" : decode_only) +
         "\narchitectures (eval, imatrix, measure, auto): " + std::string(engine::SupportedArchitectures()) +
         "\narchitectures (convert, diffusion): " + diffusion::ConvertedArchitectures();
}

}  // namespace mixq::cli
