// The format table against ggml-formats.md §2.1, and the lookups over it.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "formats/feedback.h"
#include "formats/formats.h"
#include "formats/int_rows.h"
#include "test_support.h"

namespace mixq::formats {
namespace {

TEST(TableTest, EveryGgmlIdHasOneEntryAtItsIndex) {
  std::span<const Format> all = AllFormats();
  ASSERT_EQ(all.size(), kGgmlTypeCount);
  for (uint32_t id = 0; id < kGgmlTypeCount; ++id) {
    EXPECT_EQ(all[id].ggml_id, id);
    EXPECT_EQ(FindFormat(id), &all[id]);
    EXPECT_FALSE(all[id].name.empty());
  }
  EXPECT_EQ(FindFormat(kGgmlTypeCount), nullptr);
}

TEST(TableTest, RemovedIdsHaveNoBlocks) {
  for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u}) {
    const Format* f = FindFormat(id);
    ASSERT_NE(f, nullptr);
    EXPECT_TRUE(f->removed()) << id;
    EXPECT_FALSE(f->can_encode());
    EXPECT_FALSE(f->can_decode());
    EXPECT_FALSE(RowFits(*f, 256));
    EXPECT_EQ(FindFormatByName(f->name), nullptr) << "removed types are not selectable by name";
  }
}

// Geometry from the spec's table (§2.1), spelled out independently of the code.
TEST(TableTest, GeometryMatchesTheSpec) {
  struct Row {
    const char* name;
    uint32_t id;
    int elems;
    int bytes;
  };
  const Row spec[] = {
      {"F32", 0, 1, 4},         {"F16", 1, 1, 2},         {"Q4_0", 2, 32, 18},      {"Q4_1", 3, 32, 20},
      {"Q5_0", 6, 32, 22},      {"Q5_1", 7, 32, 24},      {"Q8_0", 8, 32, 34},      {"Q8_1", 9, 32, 36},
      {"Q2_K", 10, 256, 84},    {"Q3_K", 11, 256, 110},   {"Q4_K", 12, 256, 144},   {"Q5_K", 13, 256, 176},
      {"Q6_K", 14, 256, 210},   {"Q8_K", 15, 256, 292},   {"IQ2_XXS", 16, 256, 66}, {"IQ2_XS", 17, 256, 74},
      {"IQ3_XXS", 18, 256, 98}, {"IQ1_S", 19, 256, 50},   {"IQ4_NL", 20, 32, 18},   {"IQ3_S", 21, 256, 110},
      {"IQ2_S", 22, 256, 82},   {"IQ4_XS", 23, 256, 136}, {"I8", 24, 1, 1},         {"I16", 25, 1, 2},
      {"I32", 26, 1, 4},        {"I64", 27, 1, 8},        {"F64", 28, 1, 8},        {"IQ1_M", 29, 256, 56},
      {"BF16", 30, 1, 2},       {"TQ1_0", 34, 256, 54},   {"TQ2_0", 35, 256, 66},   {"MXFP4", 39, 32, 17},
      {"NVFP4", 40, 64, 36},    {"Q1_0", 41, 128, 18},    {"Q2_0", 42, 64, 18},
  };
  for (const Row& r : spec) {
    const Format* f = FindFormat(r.id);
    ASSERT_NE(f, nullptr);
    EXPECT_EQ(f->name, r.name);
    EXPECT_EQ(f->block_elems, r.elems) << r.name;
    EXPECT_EQ(f->block_bytes, r.bytes) << r.name;
    EXPECT_FALSE(f->removed());
  }
  EXPECT_DOUBLE_EQ(FindFormatByName("Q4_K")->bpw(), 4.5);
  EXPECT_DOUBLE_EQ(FindFormatByName("IQ4_XS")->bpw(), 4.25);
  EXPECT_DOUBLE_EQ(FindFormatByName("Q6_K")->bpw(), 6.5625);
}

TEST(TableTest, NamesAreCaseInsensitive) {
  EXPECT_EQ(FindFormatByName("q4_k"), FindFormat(12));
  EXPECT_EQ(FindFormatByName("Q4_K"), FindFormat(12));
  EXPECT_EQ(FindFormatByName("iq4_Xs"), FindFormat(23));
  EXPECT_EQ(FindFormatByName("bf16"), FindFormat(30));
  EXPECT_EQ(FindFormatByName("q4_k "), nullptr);
  EXPECT_EQ(FindFormatByName(""), nullptr);
  EXPECT_EQ(FindFormatByName("Q4_K_M"), nullptr) << "a preset, not a type";
}

TEST(TableTest, EncodableNamesListTheCodecsInTableOrder) {
  EXPECT_EQ(EncodableFormatNames(),
            "F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, "
            "IQ4_NL, IQ3_S, IQ2_S, IQ4_XS, IQ1_M, BF16, TQ1_0, TQ2_0, MXFP4, NVFP4, Q1_0, Q2_0");
  for (const Format& f : AllFormats()) {
    EXPECT_EQ(f.quantize_row_ggml == nullptr, f.quantize_row_best == nullptr) << f.name;
    if (f.can_encode()) {
      EXPECT_TRUE(f.can_decode()) << f.name;
    }
  }
}

// The columns each kind of entry must fill, so that a new type cannot be half
// added: every fact about a type lives in its row, and nothing else lists types.
TEST(TableTest, EveryEntryFillsTheColumnsOfItsKind) {
  std::set<int32_t> ftypes;
  for (const Format& f : AllFormats()) {
    SCOPED_TRACE(std::string(f.name));
    if (f.removed()) {
      EXPECT_FALSE(f.can_decode() || f.vec_dot() || f.llama_ftype != kNoType || f.comfyui_gpu || f.int_decoding);
      continue;
    }
    if (f.llama_ftype != kNoType) {
      EXPECT_TRUE(ftypes.insert(f.llama_ftype).second) << "llama_ftype used twice";
    }
    // Every type a file can hold as weights (it decodes) names its file type and
    // how ggml rounds the activations it is multiplied with.
    if (f.can_decode() && (f.quantized || f.name == "F16" || f.name == "BF16" || f.name == "F32")) {
      EXPECT_NE(f.llama_ftype, kNoType);
    }
    if (f.quantized && f.can_decode()) {
      ASSERT_NE(f.vec_dot(), nullptr);
      EXPECT_TRUE(f.vec_dot()->name == "Q8_0" || f.vec_dot()->name == "Q8_1" || f.vec_dot()->name == "Q8_K");
      EXPECT_EQ(f.block_elems % f.vec_dot()->block_elems, 0) << "activation blocks must tile the weight blocks";
    }
    if (f.quantized && f.can_encode()) {
      ASSERT_NE(f.output_head(), nullptr);
      EXPECT_TRUE(f.output_head()->can_encode());
      EXPECT_GE(f.output_head()->bpw(), f.bpw());
    }
    // A fallback chain ends, and each step takes rows the previous one cannot.
    int steps = 0;
    for (const Format* g = &f; g->shape_fallback() != nullptr; g = g->shape_fallback()) {
      EXPECT_TRUE(g->shape_fallback()->can_encode());
      EXPECT_LT(g->shape_fallback()->block_elems, g->block_elems);
      ASSERT_LT(++steps, 8) << "fallback chain loops";
    }
    if (f.comfyui_gpu || f.default_calibration) {
      EXPECT_TRUE(f.quantized && f.can_encode());
    }
    if (f.int_decoding != nullptr) {
      EXPECT_TRUE(f.can_decode());
      EXPECT_EQ(f.block_elems % f.int_decoding->group_elems, 0);
    }
    if (f.feedback != nullptr) {
      // The feedback encoder starts with the best search and moves in
      // batches of 256 columns made of whole blocks.
      EXPECT_TRUE(f.quantized && f.can_encode() && f.can_decode());
      EXPECT_EQ(256 % f.block_elems, 0);
      EXPECT_EQ(f.block_elems % f.feedback->group_size, 0);
    }
  }
  int n_calibration = 0;
  for (const Format& f : AllFormats()) n_calibration += f.default_calibration;
  EXPECT_GE(n_calibration, 1);
}

// The llama_ftype whose default type each type is (llama.h and
// llama_ftype_get_default_type), spelled out independently of the table: the
// preset named after a type is not always it (LLAMA_FTYPE_MOSTLY_IQ2_S makes
// IQ2_XS tensors; IQ2_S tensors come from IQ2_M).
TEST(TableTest, FileTypesAreTheFtypesWhoseDefaultTypeItIs) {
  const std::pair<const char*, int32_t> expected[] = {
      {"Q4_0", 2},     {"Q8_0", 7},   {"Q2_K", 10},   {"Q4_K", 15},  {"Q6_K", 18},  {"IQ2_XXS", 19}, {"IQ2_XS", 20},
      {"IQ3_XXS", 23}, {"IQ1_S", 24}, {"IQ4_NL", 25}, {"IQ3_S", 26}, {"IQ2_S", 29}, {"IQ4_XS", 30},  {"IQ1_M", 31},
      {"TQ1_0", 36},   {"TQ2_0", 37}, {"MXFP4", 38},  {"NVFP4", 39}, {"Q1_0", 40},  {"Q2_0", 41}};
  for (const auto& [name, ftype] : expected) EXPECT_EQ(FindFormatByName(name)->llama_ftype, ftype) << name;
}

// Block geometry and which types need an importance matrix, as the real ggml
// reports them.
TEST(TableTest, MatchesGgmlsTypeTraits) {
  if (testing::OraclePath().empty()) GTEST_SKIP() << "gguf-oracle not configured";
  auto r = testing::RunCommand(testing::OraclePath() + " types");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  int compared = 0;
  for (const auto& t : j["types"]) {
    const Format* f = FindFormat(t["id"].get<uint32_t>());
    ASSERT_NE(f, nullptr) << t.dump();
    SCOPED_TRACE(std::string(f->name));
    EXPECT_FALSE(f->removed());
    EXPECT_EQ(f->block_elems, t["blck_size"].get<int>());
    EXPECT_EQ(f->block_bytes, t["type_size"].get<int>());
    EXPECT_EQ(f->quantized, t["quantized"].get<bool>());
    EXPECT_EQ(f->needs_imatrix, t["needs_imatrix"].get<bool>());
    ++compared;
  }
  EXPECT_EQ(compared, 35);
}

TEST(TableTest, RowBytes) {
  const Format& q4k = *FindFormatByName("Q4_K");
  EXPECT_EQ(RowBytes(q4k, 4096).value(), 16 * 144);
  EXPECT_EQ(RowBytes(q4k, 0).value(), 0);
  EXPECT_EQ(RowBytes(q4k, 100).error().kind(), StatusKind::kInvalidArgument);
  EXPECT_EQ(RowBytes(q4k, -256).error().kind(), StatusKind::kInvalidArgument);
  EXPECT_TRUE(RowFits(q4k, 512));
  EXPECT_FALSE(RowFits(q4k, 288));
  EXPECT_TRUE(RowFits(*FindFormatByName("Q8_0"), 288));
  EXPECT_EQ(RowBytes(*FindFormatByName("F32"), 7).value(), 28);
  // 2^62 elements of I64 would need 2^65 bytes.
  EXPECT_FALSE(RowFits(*FindFormatByName("I64"), int64_t{1} << 62));
}

}  // namespace
}  // namespace mixq::formats
