// Importer for per-layer cost tables in markdown (seed 000: Flux.1-dev).
#include <algorithm>
#include <charconv>
#include <cmath>

#include "formats/formats.h"
#include "plan/plan.h"

namespace mixq::plan {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Cells of a "| a | b |" line, trimmed.
std::vector<std::string_view> Cells(std::string_view line) {
  line = Trim(line);
  if (!line.empty() && line.front() == '|') line.remove_prefix(1);
  if (!line.empty() && line.back() == '|') line.remove_suffix(1);
  std::vector<std::string_view> cells;
  size_t start = 0;
  while (true) {
    size_t bar = line.find('|', start);
    cells.push_back(Trim(line.substr(start, bar == std::string_view::npos ? std::string_view::npos : bar - start)));
    if (bar == std::string_view::npos) break;
    start = bar + 1;
  }
  return cells;
}

bool IsTableLine(std::string_view line) { return !Trim(line).empty() && Trim(line).front() == '|'; }

bool IsSeparator(std::string_view line) {
  if (!IsTableLine(line)) return false;
  for (std::string_view c : Cells(line)) {
    if (c.empty() || c.find_first_not_of(":-") != std::string_view::npos) return false;
  }
  return true;
}

bool ParseDouble(std::string_view s, double* out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size() && std::isfinite(*out);
}

struct Column {
  std::string label;
  std::string type;  // ggml name, or the label for foreign types
  bool starred = false;
  bool used = true;  // false when another column maps to the same type and wins
  double bits = 0.0;
};

Column MapLabel(std::string_view label) {
  Column c;
  c.label = std::string(label);
  std::string_view stem = label;
  if (!stem.empty() && stem.back() == '*') {
    c.starred = true;
    stem.remove_suffix(1);
  }
  c.type = std::string(stem);
  if (const formats::Format* f = formats::FindFormatByName(stem); f != nullptr && !f->removed()) {
    c.type = std::string(f->name);
  } else if (stem.size() > 2 && stem[stem.size() - 2] == '_') {
    char size = static_cast<char>(std::toupper(static_cast<unsigned char>(stem.back())));
    const formats::Format* base = formats::FindFormatByName(stem.substr(0, stem.size() - 2));
    if ((size == 'S' || size == 'M' || size == 'L') && base != nullptr && !base->removed()) {
      c.type = std::string(base->name);
    }
  }
  return c;
}

int64_t OptionBytes(const std::string& type, double bits, int64_t n_weights) {
  const formats::Format* f = formats::FindFormatByName(type);
  if (f != nullptr && !f->removed() && f->block_elems > 0 && n_weights % f->block_elems == 0) {
    return n_weights / f->block_elems * f->block_bytes;
  }
  return static_cast<int64_t>(std::ceil(static_cast<long double>(n_weights) * bits / 8.0L));
}

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  for (size_t start = 0; start <= text.size();) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

bool IsBitsRow(std::string_view line) { return IsTableLine(line) && Cells(line).front() == "bits"; }

}  // namespace

bool IsCostTable(std::string_view markdown) {
  const std::vector<std::string_view> lines = SplitLines(markdown);
  // A "bits" row in the body of a table: below a separator row, with only table rows between.
  for (size_t l = 0; l < lines.size(); ++l) {
    if (!IsBitsRow(lines[l])) continue;
    for (size_t k = l; k > 1 && IsTableLine(lines[k - 1]); --k) {
      if (IsSeparator(lines[k - 1])) return true;
    }
  }
  return false;
}

Result<Measurement> ImportCostTable(std::string_view markdown, const CostTableSpec& spec) {
  const std::vector<std::string_view> lines = SplitLines(markdown);
  // The first table that has a "bits" row (a document may hold summary
  // tables before it, and derived tables after it).
  std::vector<Column> columns;
  std::vector<std::string_view> head;
  struct Row {
    size_t line;
    std::vector<std::string_view> cells;
  };
  std::vector<Row> rows;
  bool have_bits = false;
  for (size_t header = 0; header + 1 < lines.size() && !have_bits; ++header) {
    if (!IsTableLine(lines[header]) || !IsSeparator(lines[header + 1])) continue;
    head = Cells(lines[header]);
    columns.clear();
    rows.clear();
    for (size_t i = 1; i < head.size(); ++i) columns.push_back(MapLabel(head[i]));
    size_t l = header + 2;
    for (; l < lines.size() && IsTableLine(lines[l]); ++l) {
      std::vector<std::string_view> cells = Cells(lines[l]);
      if (cells.size() != head.size()) {
        return Status::Corruption("table line " + std::to_string(l + 1) + " has " + std::to_string(cells.size()) +
                                  " cells, the header has " + std::to_string(head.size()));
      }
      if (IsBitsRow(lines[l])) {
        for (size_t i = 0; i < columns.size(); ++i) {
          if (cells[i + 1].empty()) continue;
          // A weight takes more than 0 and at most 64 bits (F64) in any format; beyond that the byte count of a
          // layer would overflow.
          if (!ParseDouble(cells[i + 1], &columns[i].bits) || !(columns[i].bits > 0.0 && columns[i].bits <= 64.0)) {
            return Status::Corruption("bad bits value '" + std::string(cells[i + 1]) + "' on line " +
                                      std::to_string(l + 1) + " (a bits value is above 0 and at most 64)");
          }
        }
        have_bits = true;
      } else {
        rows.push_back({l, std::move(cells)});
      }
    }
    header = l - 1;
  }
  if (!have_bits) return Status::Corruption("no markdown table with a 'bits' row (header, |-:| row, bits row) found");
  for (size_t i = 0; i < columns.size(); ++i) {
    for (size_t k = 0; k < i; ++k) {
      if (!columns[k].used || columns[k].type != columns[i].type) continue;
      bool later_wins = columns[i].starred && !columns[k].starred;
      (later_wins ? columns[k] : columns[i]).used = false;
    }
  }
  if (rows.size() != spec.layers.size()) {
    return Status::InvalidArgument("the cost table has " + std::to_string(rows.size()) + " layer rows but " +
                                   std::to_string(spec.layers.size()) + " layers were described; check the layout");
  }

  Measurement m;
  m.model = spec.model;
  m.cost_model = spec.cost_model;
  m.fixed_n_bytes = spec.fixed_n_bytes;
  m.fixed_tensor_n_bytes = spec.fixed_tensor_n_bytes;
  m.fixed_n_weights = spec.fixed_n_weights;
  for (size_t r = 0; r < rows.size(); ++r) {
    Unit u;
    u.name = spec.layers[r].name;
    u.n_weights = spec.layers[r].n_weights;
    if (!spec.unquantized_type.empty()) {
      u.options.push_back({spec.unquantized_type, OptionBytes(spec.unquantized_type, 16.0, u.n_weights), 0.0});
    }
    for (size_t i = 0; i < columns.size(); ++i) {
      std::string_view cell = rows[r].cells[i + 1];
      if (!columns[i].used || cell.empty()) continue;
      double cost = 0.0;
      if (!ParseDouble(cell, &cost)) {
        return Status::Corruption("bad cost '" + std::string(cell) + "' on line " + std::to_string(rows[r].line + 1) +
                                  ", column " + columns[i].label);
      }
      if (!(columns[i].bits > 0.0)) {
        return Status::Corruption("column " + columns[i].label + " has costs but no bits value");
      }
      u.options.push_back({columns[i].type, OptionBytes(columns[i].type, columns[i].bits, u.n_weights), cost});
    }
    m.units.push_back(std::move(u));
  }
  MIXQ_TRY(Validate(m));
  return m;
}

CostTableSpec FluxDevCostTableSpec() {
  constexpr int kDoubleBlocks = 19;
  constexpr int kSingleBlocks = 38;
  constexpr int64_t kDoubleBlockWeights = 339'738'624;
  constexpr int64_t kSingleBlockWeights = 141'557'760;
  // Entry/exit layers and norm scales (64,144,448) plus block biases
  // (3,065,920), all left in BF16.
  constexpr int64_t kFixedWeights = 64'144'448 + 3'065'920;
  CostTableSpec spec;
  for (int i = 0; i < kDoubleBlocks; ++i)
    spec.layers.push_back({"double_blocks." + std::to_string(i), kDoubleBlockWeights});
  for (int i = 0; i < kSingleBlocks; ++i)
    spec.layers.push_back({"single_blocks." + std::to_string(i), kSingleBlockWeights});
  spec.unquantized_type = "BF16";
  spec.fixed_n_weights = kFixedWeights;
  spec.fixed_tensor_n_bytes = 2 * kFixedWeights;
  spec.fixed_n_bytes = spec.fixed_tensor_n_bytes;
  spec.model = "FLUX.1-dev";
  spec.cost_model =
      "mean squared difference of the final hidden state when only this block is quantized (seed 000, 240 prompts)";
  return spec;
}

}  // namespace mixq::plan
