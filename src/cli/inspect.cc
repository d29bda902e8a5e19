// mixq inspect MODEL.gguf: metadata summary, per-tensor table, totals.
#include <cstdio>
#include <map>

#include "cli/cli.h"
#include "gguf/gguf.h"

namespace mixq::cli {
namespace {

struct InspectOptions {
  std::string model;
  bool all_metadata = false;
};

std::string ShapeString(const gguf::TensorInfo& t) {
  std::string s;
  for (uint32_t d = 0; d < t.n_dims; ++d) s += (d ? " x " : "") + std::to_string(t.ne[d]);
  return s;
}

int RunInspect(const GlobalOptions& global, const InspectOptions& opt) {
  auto file = gguf::GgufFile::Open(opt.model);
  if (!file) return ReportError(file.error());

  uint64_t data_bytes = 0;
  int64_t n_weights = 0;
  std::map<std::string, int> type_counts;
  for (const auto& t : file->tensors()) {
    data_bytes += t.n_bytes;
    n_weights += t.n_elems();
    ++type_counts[std::string(t.format->name)];
  }
  double bpw = n_weights > 0 ? 8.0 * static_cast<double>(data_bytes) / static_cast<double>(n_weights) : 0.0;

  if (global.json) {
    EmitJsonBegin("inspect");
    for (const auto& kv : file->metadata()) {
      EmitJson("metadata", {{"key", kv.key},
                            {"type", gguf::ValueTypeName(kv.value.type)},
                            {"value", kv.value.ToString(opt.all_metadata ? SIZE_MAX : 16)}});
    }
    for (const auto& t : file->tensors()) {
      nlohmann::json shape = nlohmann::json::array();
      for (uint32_t d = 0; d < t.n_dims; ++d) shape.push_back(t.ne[d]);
      EmitJson("tensor", {{"name", t.name},
                          {"shape", shape},
                          {"type", t.format->name},
                          {"size_bytes", t.n_bytes},
                          {"n_weights", t.n_elems()},
                          {"bpw", t.format->bpw()}});
    }
    EmitJson("summary", {{"file", opt.model},
                         {"gguf_version", file->version()},
                         {"alignment", file->alignment()},
                         {"n_metadata", file->metadata().size()},
                         {"n_tensors", file->tensors().size()},
                         {"n_weights", n_weights},
                         {"tensor_bytes", data_bytes},
                         {"file_bytes", file->file_size()},
                         {"bpw", bpw},
                         {"type_counts", type_counts}});
    return kExitOk;
  }

  std::printf("%s: GGUF v%u, alignment %u, %zu metadata keys, %zu tensors\n\n", opt.model.c_str(), file->version(),
              file->alignment(), file->metadata().size(), file->tensors().size());
  for (const auto& kv : file->metadata()) {
    std::printf("  %-44s %-6s %s\n", kv.key.c_str(), std::string(gguf::ValueTypeName(kv.value.type)).c_str(),
                kv.value.ToString(opt.all_metadata ? SIZE_MAX : 6).c_str());
  }
  std::printf("\n  %-40s %-20s %-7s %12s %7s\n", "tensor", "shape", "type", "bytes", "bpw");
  for (const auto& t : file->tensors()) {
    std::printf("  %-40s %-20s %-7s %12llu %7.3f\n", t.name.c_str(), ShapeString(t).c_str(),
                std::string(t.format->name).c_str(), static_cast<unsigned long long>(t.n_bytes), t.format->bpw());
  }
  std::printf("\n  types:");
  for (const auto& [name, count] : type_counts) std::printf(" %s x%d", name.c_str(), count);
  std::printf("\n  weights %lld, tensor data %s (%llu bytes), file %s, %.4f bpw\n", static_cast<long long>(n_weights),
              FormatBytes(data_bytes).c_str(), static_cast<unsigned long long>(data_bytes),
              FormatBytes(file->file_size()).c_str(), bpw);
  return kExitOk;
}

}  // namespace

void AddInspect(CLI::App& app, const GlobalOptions& global, Action* action) {
  auto opt = std::make_shared<InspectOptions>();
  CLI::App* sub = app.add_subcommand("inspect", "show a GGUF file's metadata, tensors and size");
  sub->add_option("model", opt->model, "GGUF file")->required();
  sub->add_flag("--all-metadata", opt->all_metadata, "print arrays in full");
  sub->callback([&global, opt, action] { *action = [&global, opt] { return RunInspect(global, *opt); }; });
}

}  // namespace mixq::cli
