// The one progress facility: every step that can take more than a few seconds
// (imatrix, measure, quantize, eval, convert) reports through it, on stderr.
//
// On a terminal it draws a bar with the current item (tensor or chunk), the
// time spent and an ETA; with --json it writes JSON Lines events instead, for
// other programs to show (schema in README.md, "Commands"):
//   {"data":{"done":3,"elapsed_s":1.25,"eta_s":11.2,"item":"blk.0.attn_v.weight","step":"quantize","total":30},
//    "type":"progress"}
//   {"data":{"done":30,"elapsed_s":12.5,"step":"quantize","total":30},"type":"progress_end"}
// eta_s is null until something is done. -q silences both.
#ifndef MIXQ_BASE_PROGRESS_H_
#define MIXQ_BASE_PROGRESS_H_

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace mixq {

enum class ProgressStyle {
  kSilent,     // -q, or stderr is not a terminal and no --json
  kBar,        // one line redrawn in place on a terminal
  kJsonLines,  // one event per line
};

// -q silences all; --json gives events; else a bar when stderr is a terminal.
ProgressStyle ChooseProgressStyle(bool quiet, bool json);

class Progress {
 public:
  // `step` names what runs ("quantize"); `total` may be set later (SetTotal)
  // when only the work itself knows it.
  Progress(ProgressStyle style, std::string step, uint64_t total, std::FILE* out = stderr);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void SetTotal(uint64_t total) { total_ = total; }
  // `done` of total finished; `item` is what is being worked on now. Redraws
  // at most 10 times a second and emits at most 4 events a second, but always
  // the first and the last (done == total).
  void Update(uint64_t done, std::string_view item = "");
  // Clears the bar, or emits "progress_end"; once.
  void Finish();

 private:
  using Clock = std::chrono::steady_clock;
  double ElapsedSeconds() const;
  void DrawBar(std::string_view item);
  void EmitEvent(std::string_view item);

  ProgressStyle style_;
  std::string step_;
  uint64_t total_;
  uint64_t done_ = 0;
  std::FILE* out_;
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_{};
  bool shown_ = false;
  bool finished_ = false;
};

// Seconds left if the rest goes at the rate so far; negative when unknown
// (nothing done yet, or no total).
double EtaSeconds(double elapsed_s, uint64_t done, uint64_t total);
// "7s", "3m05s", "2h04m".
std::string FormatDuration(double seconds);

}  // namespace mixq

#endif  // MIXQ_BASE_PROGRESS_H_
