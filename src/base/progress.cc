// Progress bars and JSON Lines progress events on stderr.
#include "base/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace mixq {
namespace {

constexpr auto kBarInterval = std::chrono::milliseconds(100);
constexpr auto kEventInterval = std::chrono::milliseconds(250);
constexpr int kBarWidth = 30;

// Milliseconds are enough for a progress display, and keep lines short.
double RoundToMs(double seconds) { return std::round(seconds * 1000.0) / 1000.0; }

void WriteLine(std::FILE* out, const std::string& type, const nlohmann::json& data) {
  const nlohmann::json line = {{"type", type}, {"data", data}};
  const std::string text = line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  std::fputs(text.c_str(), out);
  std::fflush(out);
}

}  // namespace

ProgressStyle ChooseProgressStyle(bool quiet, bool json) {
  if (quiet) return ProgressStyle::kSilent;
  if (json) return ProgressStyle::kJsonLines;
  return ::isatty(STDERR_FILENO) ? ProgressStyle::kBar : ProgressStyle::kSilent;
}

Progress::Progress(ProgressStyle style, std::string step, uint64_t total, std::FILE* out)
    : style_(style), step_(std::move(step)), total_(total), out_(out) {}

Progress::~Progress() { Finish(); }

double Progress::ElapsedSeconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

void Progress::Update(uint64_t done, std::string_view item) {
  if (style_ == ProgressStyle::kSilent || finished_) return;
  done_ = done;
  const auto now = Clock::now();
  const auto interval = style_ == ProgressStyle::kBar ? kBarInterval : kEventInterval;
  if (shown_ && done < total_ && now - last_ < interval) return;
  last_ = now;
  shown_ = true;
  if (style_ == ProgressStyle::kBar) {
    DrawBar(item);
  } else {
    EmitEvent(item);
  }
}

void Progress::DrawBar(std::string_view item) {
  const double frac = total_ > 0 ? std::min(1.0, static_cast<double>(done_) / static_cast<double>(total_)) : 0.0;
  std::string bar(static_cast<size_t>(frac * kBarWidth), '#');
  bar.resize(kBarWidth, '.');
  const double elapsed = ElapsedSeconds();
  const double eta = EtaSeconds(elapsed, done_, total_);
  std::fprintf(out_, "\r\033[K%s [%s] %3d%% %llu/%llu %s ETA %s %.*s", step_.c_str(), bar.c_str(),
               static_cast<int>(frac * 100), static_cast<unsigned long long>(done_),
               static_cast<unsigned long long>(total_), FormatDuration(elapsed).c_str(),
               eta < 0 ? "--" : FormatDuration(eta).c_str(), static_cast<int>(item.size()), item.data());
  std::fflush(out_);
}

void Progress::EmitEvent(std::string_view item) {
  const double elapsed = ElapsedSeconds();
  const double eta = EtaSeconds(elapsed, done_, total_);
  WriteLine(out_, "progress",
            {{"step", step_},
             {"done", done_},
             {"total", total_},
             {"item", item},
             {"elapsed_s", RoundToMs(elapsed)},
             {"eta_s", eta < 0 ? nlohmann::json(nullptr) : nlohmann::json(RoundToMs(eta))}});
}

void Progress::Finish() {
  if (finished_) return;
  finished_ = true;
  if (style_ == ProgressStyle::kBar && shown_) {
    std::fputs("\r\033[K", out_);
    std::fflush(out_);
  } else if (style_ == ProgressStyle::kJsonLines && shown_) {
    WriteLine(out_, "progress_end",
              {{"step", step_}, {"done", done_}, {"total", total_}, {"elapsed_s", RoundToMs(ElapsedSeconds())}});
  }
}

double EtaSeconds(double elapsed_s, uint64_t done, uint64_t total) {
  if (done == 0 || total == 0) return -1.0;
  if (done >= total) return 0.0;
  return elapsed_s * static_cast<double>(total - done) / static_cast<double>(done);
}

std::string FormatDuration(double seconds) {
  const long long s = std::llround(std::max(0.0, seconds));
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%llds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, s / 60 % 60);
  }
  return buf;
}

}  // namespace mixq
