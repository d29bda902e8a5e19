#include "base/name_pattern.h"

namespace mixq {

Result<NamePattern> NamePattern::Compile(const std::string& text) {
  try {
    return NamePattern(text, std::make_shared<const std::regex>(text, std::regex::ECMAScript | std::regex::optimize));
  } catch (const std::regex_error& e) {
    return Status::InvalidArgument("invalid regular expression '" + text + "': " + e.what());
  }
}

bool NamePattern::Search(std::string_view name) const {
  // Tensor names are short, so std::regex's recursion cannot run out of stack;
  // a pattern too complex for the library simply matches nothing.
  try {
    return std::regex_search(name.begin(), name.end(), *re_);
  } catch (const std::regex_error&) {
    return false;
  }
}

}  // namespace mixq
