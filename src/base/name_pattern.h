// NamePattern: the one regular-expression syntax of mixq's command line.
//
// --tensor-type and --keep take the same patterns as llama-quantize's
// --tensor-type: ECMAScript syntax (std::regex), searched anywhere in the
// tensor name, not anchored ("attn_v" matches blk.3.attn_v.weight; write
// ^blk\.3\.attn_v\.weight$ for exactly one tensor). A pattern is compiled once.
//
// Thread safety: Search is const and safe to call concurrently.
#ifndef MIXQ_BASE_NAME_PATTERN_H_
#define MIXQ_BASE_NAME_PATTERN_H_

#include <memory>
#include <regex>
#include <string>
#include <string_view>

#include "base/status.h"

namespace mixq {

class NamePattern {
 public:
  // InvalidArgument naming the pattern when it does not compile.
  static Result<NamePattern> Compile(const std::string& text);

  bool Search(std::string_view name) const;
  const std::string& text() const { return text_; }

 private:
  NamePattern(std::string text, std::shared_ptr<const std::regex> re) : text_(std::move(text)), re_(std::move(re)) {}
  std::string text_;
  std::shared_ptr<const std::regex> re_;
};

}  // namespace mixq

#endif  // MIXQ_BASE_NAME_PATTERN_H_
