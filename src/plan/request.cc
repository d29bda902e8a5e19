// Turning a request (budget, keep rules, type bounds) into the knapsack
// problem the solvers work on.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>

#include "base/name_pattern.h"
#include "formats/formats.h"
#include "plan/problem.h"

namespace mixq::plan {
namespace {

bool SameTypeName(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      bool same =
          std::tolower(static_cast<unsigned char>(a[i - 1])) == std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (same ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string ClosestFormatNames(std::string_view name) {
  std::vector<std::pair<size_t, std::string_view>> ranked;
  for (const formats::Format& f : formats::AllFormats()) {
    if (!f.removed()) ranked.emplace_back(EditDistance(name, f.name), f.name);
  }
  std::stable_sort(ranked.begin(), ranked.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  std::string out;
  for (size_t i = 0; i < std::min<size_t>(3, ranked.size()); ++i)
    out += (i ? ", " : "") + std::string(ranked[i].second);
  return out;
}

Result<double> TypeBpw(const std::string& name, const char* flag) {
  if (name.empty()) return std::numeric_limits<double>::quiet_NaN();
  const formats::Format* f = formats::FindFormatByName(name);
  if (f == nullptr || f->removed()) {
    return Status::InvalidArgument(std::string("unknown type '") + name + "' in " + flag +
                                   "; closest: " + ClosestFormatNames(name));
  }
  return f->bpw();
}

double OptionBpw(const Unit& unit, const Option& option) {
  const formats::Format* f = formats::FindFormatByName(option.type);
  if (f != nullptr && f->bpw() > 0) return f->bpw();
  return 8.0 * static_cast<double>(option.n_bytes) / static_cast<double>(unit.n_weights);
}

std::string TypeList(const Unit& unit) {
  std::string out;
  for (const Option& o : unit.options) out += (out.empty() ? "" : ", ") + o.type;
  return out;
}

Result<double> ParseNumberPrefix(std::string_view text, size_t* consumed) {
  double value = 0.0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end == text.data() || !std::isfinite(value)) {
    return Status::InvalidArgument("not a number: '" + std::string(text) + "'");
  }
  *consumed = static_cast<size_t>(end - text.data());
  return value;
}

}  // namespace

Result<Budget> ParseBpwTarget(std::string_view text) {
  size_t n = 0;
  auto value = ParseNumberPrefix(text, &n);
  if (!value.has_value()) return Status::InvalidArgument("bad --target '" + std::string(text) + "'; use e.g. 4.5bpw");
  std::string_view rest = text.substr(n);
  if (!rest.empty() && !SameTypeName(rest, "bpw")) {
    return Status::InvalidArgument("bad --target '" + std::string(text) + "'; use e.g. 4.5bpw");
  }
  if (!(*value > 0.0 && *value <= 64.0)) {
    return Status::InvalidArgument("--target " + std::string(text) + " is out of range; use 0 < bpw <= 64");
  }
  return Budget::BitsPerWeight(*value);
}

Result<Budget> ParseSizeTarget(std::string_view text) {
  static constexpr std::pair<std::string_view, double> kUnits[] = {
      {"", 1.0},   {"B", 1.0},  {"KiB", 1024.0}, {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0},
      {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9},     {"TB", 1e12}};
  size_t n = 0;
  auto value = ParseNumberPrefix(text, &n);
  std::string_view rest = text.substr(std::min(n, text.size()));
  const std::string usage = "bad --target-size '" + std::string(text) + "'; use e.g. 2.1GiB, 900MB or a byte count";
  if (!value.has_value() || *value <= 0.0) return Status::InvalidArgument(usage);
  for (const auto& [unit, scale] : kUnits) {
    if (SameTypeName(rest, unit)) {
      long double bytes = std::floor(static_cast<long double>(*value) * scale);
      if (bytes < 1.0L || bytes > 9.0e18L) return Status::InvalidArgument(usage);
      return Budget::FileBytes(static_cast<int64_t>(bytes));
    }
  }
  return Status::InvalidArgument(usage);
}

Result<KeepRule> ParseKeepRule(std::string_view text) {
  size_t eq = text.rfind('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size()) {
    return Status::InvalidArgument("bad --keep '" + std::string(text) + "'; use REGEX=TYPE, e.g. attn_v=Q6_K");
  }
  KeepRule rule{std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
  MIXQ_TRY(NamePattern::Compile(rule.pattern));
  return rule;
}

namespace internal {

Result<Problem> BuildProblem(const Measurement& m, const Constraints& constraints) {
  MIXQ_TRY(Validate(m));
  auto min_bpw = TypeBpw(constraints.min_type, "--min-type");
  if (!min_bpw.has_value()) return min_bpw.status();
  auto max_bpw = TypeBpw(constraints.max_type, "--max-type");
  if (!max_bpw.has_value()) return max_bpw.status();
  if (*min_bpw > *max_bpw) {
    return Status::InvalidArgument("--min-type " + constraints.min_type + " is above --max-type " +
                                   constraints.max_type);
  }
  std::vector<NamePattern> patterns;
  for (const KeepRule& k : constraints.keep) {
    auto pattern = NamePattern::Compile(k.pattern);
    MIXQ_TRY(pattern);
    patterns.push_back(std::move(pattern).value());
  }
  std::vector<bool> rule_used(patterns.size(), false);
  // Tolerance so that a bound equal to a type's bpw admits that type.
  constexpr double kBpwSlack = 1e-9;
  const bool bounded = !constraints.min_type.empty() || !constraints.max_type.empty();

  Problem p;
  p.begin.reserve(m.units.size() + 1);
  p.begin.push_back(0);
  for (const Unit& u : m.units) {
    size_t rule = patterns.size();
    for (size_t r = 0; r < patterns.size() && rule == patterns.size(); ++r) {
      bool hit = patterns[r].Search(u.name);
      for (size_t t = 0; !hit && t < u.tensors.size(); ++t) hit = patterns[r].Search(u.tensors[t]);
      if (hit) rule = r;
    }
    for (size_t o = 0; o < u.options.size(); ++o) {
      const Option& opt = u.options[o];
      bool allowed;
      if (rule < patterns.size()) {
        allowed = SameTypeName(opt.type, constraints.keep[rule].type);
      } else if (bounded) {
        double bpw = OptionBpw(u, opt);
        allowed = !(bpw < *min_bpw - kBpwSlack) && !(bpw > *max_bpw + kBpwSlack);
      } else {
        allowed = true;
      }
      if (allowed) p.choices.push_back({opt.n_bytes, opt.cost, static_cast<int32_t>(o)});
    }
    if (p.choices.size() == static_cast<size_t>(p.begin.back())) {
      if (rule < patterns.size()) {
        const KeepRule& k = constraints.keep[rule];
        return Status::InvalidArgument("--keep " + k.pattern + "=" + k.type + " matches unit '" + u.name +
                                       "', which has no type " + k.type + " (it has: " + TypeList(u) + ")");
      }
      return Status::Infeasible("no type of unit '" + u.name +
                                "' lies within --min-type/--max-type (it has: " + TypeList(u) + "); widen the bounds");
    }
    if (rule < patterns.size()) rule_used[rule] = true;
    p.begin.push_back(static_cast<int32_t>(p.choices.size()));
  }
  for (size_t r = 0; r < patterns.size(); ++r) {
    if (!rule_used[r]) {
      return Status::InvalidArgument("--keep " + constraints.keep[r].pattern + "=" + constraints.keep[r].type +
                                     " matches no unit (an earlier rule may have taken them); check the pattern");
    }
  }
  return p;
}

Result<int64_t> UnitBudget(const Measurement& m, const Budget& budget) {
  if (budget.kind == Budget::Kind::kFileBytes) {
    if (budget.file_n_bytes <= 0) return Status::InvalidArgument("the size target must be positive");
    return budget.file_n_bytes - m.fixed_n_bytes;
  }
  if (!(budget.bpw > 0.0) || !std::isfinite(budget.bpw)) {
    return Status::InvalidArgument("the bpw target must be a positive number");
  }
  long double tensor_bytes =
      std::floor(static_cast<long double>(budget.bpw) * static_cast<long double>(TotalWeights(m)) / 8.0L);
  if (tensor_bytes > 9.0e18L) return std::numeric_limits<int64_t>::max() / 2;
  return static_cast<int64_t>(tensor_bytes) - m.fixed_tensor_n_bytes;
}

SizeRange ProblemSizes(const Measurement& m, const Problem& p) {
  SizeRange range{m.fixed_n_bytes, m.fixed_n_bytes};
  for (int32_t u = 0; u < p.n_units(); ++u) {
    int64_t lo = std::numeric_limits<int64_t>::max();
    int64_t hi = 0;
    for (int32_t k = p.begin[u]; k < p.begin[u + 1]; ++k) {
      lo = std::min(lo, p.choices[k].n_bytes);
      hi = std::max(hi, p.choices[k].n_bytes);
    }
    range.min_file_n_bytes += lo;
    range.max_file_n_bytes += hi;
  }
  return range;
}

}  // namespace internal

Result<SizeRange> AchievableSizes(const Measurement& m, const Constraints& constraints) {
  auto p = internal::BuildProblem(m, constraints);
  if (!p.has_value()) return p.status();
  return internal::ProblemSizes(m, *p);
}

}  // namespace mixq::plan
