#include "base/atomic_file.h"

#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>

namespace mixq {
namespace {

// A fixed table rather than a container so the signal handler never allocates.
constexpr int kMaxPending = 16;
constexpr int kMaxPathBytes = 4096;
std::array<std::array<char, kMaxPathBytes>, kMaxPending> g_pending_paths;
std::array<std::atomic<bool>, kMaxPending> g_pending_used;

int RegisterPending(const std::string& path) {
  if (path.size() + 1 > kMaxPathBytes) return -1;
  for (int i = 0; i < kMaxPending; ++i) {
    bool expected = false;
    if (g_pending_used[i].compare_exchange_strong(expected, true)) {
      std::memcpy(g_pending_paths[i].data(), path.c_str(), path.size() + 1);
      return i;
    }
  }
  return -1;
}

void UnregisterPending(const std::string& path) {
  for (int i = 0; i < kMaxPending; ++i) {
    if (g_pending_used[i].load() && path == g_pending_paths[i].data()) g_pending_used[i].store(false);
  }
}

// The writer of `<path>.tmp.<pid>` is gone when no process has that pid.
bool WriterIsGone(std::string_view pid_text) {
  pid_t pid = 0;
  auto [end, ec] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
  if (ec != std::errc() || end != pid_text.data() + pid_text.size() || pid <= 0 || pid == ::getpid()) return false;
  return ::kill(pid, 0) == -1 && errno == ESRCH;
}

// A writer killed by SIGKILL (or a crash) cannot remove its temporary; the
// next successful write of the same output does. A live pid keeps its file.
void RemoveStaleTempFiles(const std::string& path) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string prefix = target.filename().string() + ".tmp.";
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.starts_with(prefix) && WriterIsGone(std::string_view(name).substr(prefix.size()))) {
      std::error_code ignored;  // another cleaner may have been first
      fs::remove(it->path(), ignored);
    }
  }
}

}  // namespace

void RemovePendingTempFiles() {
  for (int i = 0; i < kMaxPending; ++i) {
    if (g_pending_used[i].load()) ::unlink(g_pending_paths[i].data());
  }
}

Result<AtomicFile> AtomicFile::Create(const std::string& path) {
  AtomicFile out;
  out.path_ = path;
  out.temp_path_ = path + ".tmp." + std::to_string(::getpid());
  out.file_ = std::fopen(out.temp_path_.c_str(), "wb");
  if (out.file_ == nullptr) {
    return Status::IOError("cannot create output '" + out.temp_path_ + "': " + std::strerror(errno) +
                           "; check that the directory exists and is writable");
  }
  RegisterPending(out.temp_path_);
  return out;
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : file_(other.file_),
      path_(std::move(other.path_)),
      temp_path_(std::move(other.temp_path_)),
      bytes_written_(other.bytes_written_) {
  other.file_ = nullptr;
}

AtomicFile::~AtomicFile() { Abandon(); }

void AtomicFile::Abandon() {
  if (file_ == nullptr) return;
  std::fclose(file_);
  file_ = nullptr;
  std::remove(temp_path_.c_str());
  UnregisterPending(temp_path_);
}

Status AtomicFile::Write(const void* data, uint64_t n_bytes) {
  if (file_ == nullptr) return Status::Internal("write to a closed output file '" + path_ + "'");
  if (n_bytes > 0 && std::fwrite(data, 1, n_bytes, file_) != n_bytes) {
    return Status::IOError("cannot write '" + temp_path_ + "': " + std::strerror(errno));
  }
  bytes_written_ += n_bytes;
  return Status::Ok();
}

Status AtomicFile::WriteZeros(uint64_t n_bytes) {
  static const std::array<uint8_t, 256> kZeros{};
  while (n_bytes > 0) {
    uint64_t chunk = n_bytes < kZeros.size() ? n_bytes : kZeros.size();
    MIXQ_TRY(Write(kZeros.data(), chunk));
    n_bytes -= chunk;
  }
  return Status::Ok();
}

Status AtomicFile::Commit() {
  if (file_ == nullptr) return Status::Internal("commit of a closed output file '" + path_ + "'");
  bool flushed = std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
  int err = errno;
  if (std::fclose(file_) != 0 && flushed) {
    flushed = false;
    err = errno;
  }
  file_ = nullptr;
  if (!flushed || std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    if (flushed) err = errno;
    std::remove(temp_path_.c_str());
    UnregisterPending(temp_path_);
    return Status::IOError("cannot finish output '" + path_ + "': " + std::strerror(err));
  }
  UnregisterPending(temp_path_);
  RemoveStaleTempFiles(path_);
  return Status::Ok();
}

}  // namespace mixq
