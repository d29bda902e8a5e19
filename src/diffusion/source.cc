// Sources: safetensors checkpoints, and unquantized GGUFs read as if they
// were checkpoints, so that measuring, planning and converting a diffusion
// model need not care which file it came in.
#include <algorithm>

#include "base/model_file_kind.h"
#include "diffusion/diffusion.h"
#include "quantize/quantize.h"

namespace mixq::diffusion {
namespace {

// A checkpoint as a Source; `Held` is `const safetensors::Checkpoint&` for a
// view of the caller's checkpoint or `safetensors::Checkpoint` to own it.
template <typename Held>
class CheckpointAsSource final : public Source {
 public:
  explicit CheckpointAsSource(Held checkpoint) : checkpoint_(static_cast<Held&&>(checkpoint)) {}
  const std::string& path() const override { return checkpoint_.path(); }
  std::vector<std::string> files() const override {
    std::vector<std::string> paths = {checkpoint_.path()};
    for (const auto& shard : checkpoint_.files()) paths.push_back(shard.path());
    return paths;
  }
  const std::vector<safetensors::TensorEntry>& tensors() const override { return checkpoint_.tensors(); }
  std::span<const uint8_t> Data(const safetensors::TensorEntry& tensor) const override {
    return checkpoint_.Data(tensor);
  }
  void ReleaseData(const safetensors::TensorEntry& tensor, uint64_t begin, uint64_t end) const override {
    checkpoint_.ReleaseData(tensor, begin, end);
  }

 private:
  Held checkpoint_;
};

// A GGUF's tensors as entries: the torch shape is ne reversed, the dtype the
// float type of the same name, and file_offset the index of the GGUF tensor.
class GgufSource final : public Source {
 public:
  static Result<std::unique_ptr<Source>> Open(const std::string& path) {
    auto file = gguf::GgufFile::Open(path);
    MIXQ_TRY(file);
    std::unique_ptr<GgufSource> source(new GgufSource(std::move(file).value()));
    const auto& infos = source->file_.tensors();
    for (size_t i = 0; i < infos.size(); ++i) {
      const gguf::TensorInfo& info = infos[i];
      const safetensors::DType* dtype = safetensors::FindDType(info.format->name);
      if (info.format->quantized || dtype == nullptr || !dtype->is_float) {
        return Status::NotSupported("tensor '" + info.name + "' of '" + path + "' is " +
                                    std::string(info.format->name) +
                                    "; diffusion plans start from unquantized weights: the .safetensors checkpoint, "
                                    "or an F32/F16/BF16 GGUF such as `mixq convert` writes");
      }
      safetensors::TensorEntry e;
      e.name = info.name;
      e.dtype = dtype;
      for (uint32_t d = info.n_dims; d-- > 0;) e.shape.push_back(info.ne[d]);
      e.n_elems = info.n_elems();
      e.n_bytes = info.n_bytes;
      e.file_offset = i;
      source->entries_.push_back(std::move(e));
    }
    std::sort(source->entries_.begin(), source->entries_.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    return std::unique_ptr<Source>(std::move(source));
  }

  const std::string& path() const override { return file_.path(); }
  std::vector<std::string> files() const override { return {file_.path()}; }
  const std::vector<safetensors::TensorEntry>& tensors() const override { return entries_; }
  std::span<const uint8_t> Data(const safetensors::TensorEntry& tensor) const override {
    return file_.TensorData(file_.tensors()[tensor.file_offset]);
  }
  void ReleaseData(const safetensors::TensorEntry& tensor, uint64_t begin, uint64_t end) const override {
    end = std::min(end, tensor.n_bytes);
    if (begin < end) DropResidentPages(Data(tensor).subspan(begin, end - begin));
  }

 private:
  explicit GgufSource(gguf::GgufFile file) : file_(std::move(file)) {}
  gguf::GgufFile file_;
  std::vector<safetensors::TensorEntry> entries_;
};

}  // namespace

std::unique_ptr<Source> CheckpointSource(const safetensors::Checkpoint& checkpoint) {
  return std::make_unique<CheckpointAsSource<const safetensors::Checkpoint&>>(checkpoint);
}

Result<std::unique_ptr<Source>> OpenSource(const std::string& path) {
  auto kind = DetectModelFileKind(path);
  MIXQ_TRY(kind);
  if (*kind == ModelFileKind::kGguf) return GgufSource::Open(path);
  auto checkpoint = safetensors::Checkpoint::Open(path);
  MIXQ_TRY(checkpoint);
  return std::unique_ptr<Source>(
      std::make_unique<CheckpointAsSource<safetensors::Checkpoint>>(std::move(checkpoint).value()));
}

Result<FileKind> ClassifyFile(const std::string& path) {
  auto kind = DetectModelFileKind(path);
  MIXQ_TRY(kind);
  if (*kind != ModelFileKind::kGguf) return FileKind::kCheckpoint;
  auto file = gguf::GgufFile::Open(path);
  MIXQ_TRY(file);
  return IsDiffusionArchitecture(file->GetString("general.architecture").value_or("")) ? FileKind::kDiffusionGguf
                                                                                       : FileKind::kOtherGguf;
}

}  // namespace mixq::diffusion
