#include <gtest/gtest.h>

#include <cstring>

#include "safetensors/safetensors.h"
#include "test_support.h"

namespace mixq::safetensors {
namespace {

using testing::TempDir;

// A file image: the 8-byte length, `header` as is, then `data_bytes` bytes.
std::vector<uint8_t> RawFile(const std::string& header, size_t data_bytes) {
  std::vector<uint8_t> bytes(8 + header.size() + data_bytes);
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  for (size_t i = 0; i < data_bytes; ++i) bytes[8 + header.size() + i] = static_cast<uint8_t>(i * 7 + 1);
  return bytes;
}

Status ParseStatus(const std::string& header, size_t data_bytes) {
  auto bytes = RawFile(header, data_bytes);
  return SafetensorsFile::Parse(bytes, "test.safetensors").status();
}

void ExpectError(const Status& s, StatusKind kind, const std::string& fragment) {
  ASSERT_FALSE(s.ok()) << "expected an error containing: " << fragment;
  EXPECT_EQ(s.kind(), kind) << s.message();
  EXPECT_NE(s.message().find(fragment), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("test.safetensors"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find('\n'), std::string::npos) << s.message();
}

std::vector<uint8_t> Iota(size_t n, uint8_t start) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + i);
  return v;
}

TEST(SafetensorsFile, ReadsWhatTheWriterWrote) {
  TempDir dir;
  const std::string path = dir.File("m.safetensors");
  std::vector<TensorDecl> decls = {{"z.weight", FindDType("BF16"), {3, 2}},
                                   {"a.bias", FindDType("F32"), {3}},
                                   {"m.scale", FindDType("F8_E4M3"), {5}},
                                   {"empty", FindDType("F16"), {0, 4}},
                                   {"scalar", FindDType("I64"), {}}};
  std::vector<std::vector<uint8_t>> data = {Iota(12, 1), Iota(12, 50), Iota(5, 90), {}, Iota(8, 200)};
  {
    auto w = SafetensorsWriter::Begin(path, decls, {{"format", "pt"}});
    ASSERT_TRUE(w.has_value()) << w.error().message();
    for (const auto& d : data) ASSERT_TRUE(w->WriteTensor(d).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.has_value()) << file.error().message();
  EXPECT_EQ(file->header_n_bytes() % 8, 0u);
  EXPECT_EQ(file->metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  std::vector<std::string> names;
  for (const auto& t : file->tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"a.bias", "empty", "m.scale", "scalar", "z.weight"}));
  for (size_t i = 0; i < decls.size(); ++i) {
    const TensorEntry* t = file->Find(decls[i].name);
    ASSERT_NE(t, nullptr) << decls[i].name;
    EXPECT_EQ(t->dtype, decls[i].dtype);
    EXPECT_EQ(t->shape, decls[i].shape);
    auto bytes = file->Data(*t);
    EXPECT_EQ(std::vector<uint8_t>(bytes.begin(), bytes.end()), data[i]) << decls[i].name;
  }
  EXPECT_EQ(file->Find("scalar")->n_elems, 1);
  EXPECT_EQ(file->Find("empty")->n_elems, 0);
  EXPECT_EQ(file->Find("nope"), nullptr);
  // Releasing pages keeps the data readable.
  file->ReleaseData(*file->Find("z.weight"));
  EXPECT_EQ(file->Data(*file->Find("z.weight"))[0], 1);
}

TEST(SafetensorsFile, AcceptsUnalignedHeadersAndUnknownFields) {
  // Other writers neither pad nor sort; the reader must not require it.
  const std::string header = R"({"b":{"dtype":"F16","shape":[1],"data_offsets":[4,6],"extra":{"x":[1,[2]]}},)"
                             R"("a":{"shape":[1],"dtype":"F32","data_offsets":[0,4]}})";
  auto bytes = RawFile(header, 6);
  auto file = SafetensorsFile::Parse(bytes, "test.safetensors");
  ASSERT_TRUE(file.has_value()) << file.error().message();
  EXPECT_EQ(file->tensors()[0].name, "a");
  EXPECT_EQ(file->tensors()[0].file_offset, 8 + header.size());
  EXPECT_EQ(file->tensors()[1].file_offset, 8 + header.size() + 4);
}

TEST(SafetensorsFile, RejectsBadLengths) {
  std::vector<uint8_t> tiny = {1, 2, 3};
  ExpectError(SafetensorsFile::Parse(tiny, "test.safetensors").status(), StatusKind::kCorruption, "shorter");
  auto bytes = RawFile("{}", 0);
  bytes[0] = 200;  // header length 200 > file
  ExpectError(SafetensorsFile::Parse(bytes, "test.safetensors").status(), StatusKind::kCorruption, "runs past the end");
  uint64_t huge = kMaxHeaderBytes + 1;
  std::memcpy(bytes.data(), &huge, 8);
  ExpectError(SafetensorsFile::Parse(bytes, "test.safetensors").status(), StatusKind::kCorruption, "limit");
}

TEST(SafetensorsFile, RejectsMalformedHeaders) {
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]})";
  ExpectError(ParseStatus("{", 0), StatusKind::kCorruption, "invalid JSON");
  ExpectError(ParseStatus("[1]", 0), StatusKind::kCorruption, "not a JSON object");
  ExpectError(ParseStatus("{" + ok_entry + "} x", 4), StatusKind::kCorruption, "invalid JSON");
  ExpectError(ParseStatus("{" + ok_entry + "," + ok_entry + "}", 4), StatusKind::kCorruption, "duplicate key 'a'");
  ExpectError(ParseStatus(R"({"a":5})", 0), StatusKind::kCorruption, "not an object");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1]}})", 4), StatusKind::kCorruption, "no 'data_offsets'");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), StatusKind::kCorruption,
              "negative");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", 4), StatusKind::kCorruption,
              "fractional");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8), StatusKind::kCorruption,
              "not 2");
  ExpectError(ParseStatus(R"({"a":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", 4), StatusKind::kCorruption,
              "'dtype'");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 4),
              StatusKind::kCorruption, "two 'dtype'");
  ExpectError(ParseStatus(R"({"__metadata__":{"k":1}})", 0), StatusKind::kCorruption, "not a string");
  ExpectError(ParseStatus("{\"a\xff\":{}}", 0), StatusKind::kCorruption, "invalid JSON");
}

TEST(SafetensorsFile, RejectsUnknownDtypesAsNotSupported) {
  ExpectError(ParseStatus(R"({"a":{"dtype":"F8_E8M0","shape":[4],"data_offsets":[0,4]}})", 4),
              StatusKind::kNotSupported, "'F8_E8M0'");
  ExpectError(ParseStatus(R"({"a":{"dtype":"bf16","shape":[2],"data_offsets":[0,4]}})", 4), StatusKind::kNotSupported,
              "'bf16'");
}

TEST(SafetensorsFile, RejectsHeadersThatLieAboutTheData) {
  // Offsets past the end (a truncated file).
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 12), StatusKind::kCorruption,
              "runs past the end");
  // Size disagrees with shape x dtype.
  ExpectError(ParseStatus(R"({"a":{"dtype":"BF16","shape":[3],"data_offsets":[0,8]}})", 8), StatusKind::kCorruption,
              "needs 6");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8), StatusKind::kCorruption,
              "end before they begin");
  // Overlap, gap, trailing bytes.
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                          8),
              StatusKind::kCorruption, "overlaps tensor 'a'");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                          12),
              StatusKind::kCorruption, "unused bytes before tensor 'b'");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", 6), StatusKind::kCorruption,
              "2 bytes after the last tensor");
  // Shapes whose size overflows 64 bits.
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})", 4),
              StatusKind::kCorruption, "overflows");
  ExpectError(ParseStatus(R"({"a":{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,4]}})", 4),
              StatusKind::kCorruption, "too large");
}

TEST(SafetensorsFile, EveryTruncationIsACleanError) {
  TempDir dir;
  const std::string path = dir.File("t.safetensors");
  {
    auto w = SafetensorsWriter::Begin(path, {{"a", FindDType("F32"), {3}}, {"b", FindDType("BF16"), {2, 2}}});
    ASSERT_TRUE(w.has_value());
    ASSERT_TRUE(w->WriteTensor(Iota(12, 0)).ok());
    ASSERT_TRUE(w->WriteTensor(Iota(8, 0)).ok());
    ASSERT_TRUE(w->Finish().ok());
  }
  auto full = testing::ReadFileBytes(path);
  for (size_t n = 0; n < full.size(); ++n) {
    std::span<const uint8_t> cut(full.data(), n);
    auto r = SafetensorsFile::Parse(cut, "test.safetensors");
    ASSERT_FALSE(r.has_value()) << "truncated to " << n;
    EXPECT_EQ(r.error().kind(), StatusKind::kCorruption) << r.error().message();
  }
  // Flipping any header byte either still parses or fails cleanly (sanitizer builds check the "cleanly").
  for (size_t i = 0; i < full.size(); ++i) {
    auto copy = full;
    copy[i] ^= 0x5A;
    auto r = SafetensorsFile::Parse(copy, "test.safetensors");
    if (!r.has_value()) {
      EXPECT_EQ(r.error().message().find('\n'), std::string::npos);
    }
  }
}

TEST(SafetensorsWriter, RefusesBadDeclarations) {
  TempDir dir;
  EXPECT_FALSE(SafetensorsWriter::Begin(dir.File("x"), {{"a", nullptr, {1}}}).has_value());
  EXPECT_FALSE(SafetensorsWriter::Begin(dir.File("x"), {{"a", FindDType("F32"), {-1}}}).has_value());
  EXPECT_FALSE(SafetensorsWriter::Begin(dir.File("x"), {{"a", FindDType("F32"), {1}}, {"a", FindDType("F32"), {1}}})
                   .has_value());
  EXPECT_FALSE(SafetensorsWriter::Begin(dir.File("x"), {{"bad\xff", FindDType("F32"), {1}}}).has_value());
  auto w = SafetensorsWriter::Begin(dir.File("y"), {{"a", FindDType("F32"), {1}}});
  ASSERT_TRUE(w.has_value());
  EXPECT_FALSE(w->WriteTensor(Iota(3, 0)).ok());
  EXPECT_FALSE(w->Finish().ok());
}

}  // namespace
}  // namespace mixq::safetensors
