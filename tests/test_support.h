// Helpers shared by the test binaries: where the data is, temp dirs, running
// the mixq binary and the gguf-oracle.
#ifndef MIXQ_TESTS_TEST_SUPPORT_H_
#define MIXQ_TESTS_TEST_SUPPORT_H_

#include <cstdint>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <vector>

namespace mixq::testing {

std::string TestDataPath(const std::string& file);  // tests/data/ (tests/data/README.md says where each came from)
std::string RefDevModel();                          // the F16 GGUF the repo ships
std::string RefDevText();                           // its held-out text (val.txt.gz)
// The first n_bytes of that text (all of it for a larger n_bytes).
std::string RefDevTextStart(size_t n_bytes);
std::string RefVectorPath(const std::string& file);  // ggml's outputs per block type
std::string SeedPath(const std::string& file);       // the documents the project started from
std::string ReadSeed(const std::string& file);       // one of them, whole ("" when it cannot be read)
std::vector<uint8_t> ReadFileBytes(const std::string& path);
void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& bytes);

// A fresh directory, removed with its contents at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs a shell command line, capturing stdout and stderr.
CommandResult RunCommand(const std::string& command_line);
// Runs the built mixq binary with the given arguments (already shell-quoted).
CommandResult RunMixq(const std::string& args);

// Each line of `text` parsed as JSON (mixq's --json output: JSON Lines).
std::vector<nlohmann::json> JsonLines(const std::string& text);

// How many of the pages wholly inside `bytes` this process has mapped in, by
// /proc/self/pagemap's present bit (mincore would not do: for a file mapping
// it reports the page cache, which keeps pages a mapping has let go); -1 when
// pagemap cannot be read.
int64_t PresentPages(std::span<const uint8_t> bytes);
// All of `bytes` but 64 KiB at each end (empty when shorter): the part that
// reading the bytes around it cannot map in, as the kernel's fault-around
// maps the cached pages of the 64 KiB-aligned window of each read fault.
std::span<const uint8_t> BeyondFaultAround(std::span<const uint8_t> bytes);

// Path of gguf-oracle, or empty when not configured (tests then GTEST_SKIP).
std::string OraclePath();
// gguf-oracle run with `args` (already shell-quoted): its stdout as JSON ({}
// when empty); a nonzero exit is a test failure.
nlohmann::json Oracle(const std::string& args);

// `s` in single quotes, for a shell command line (s holds no single quote).
std::string Q(const std::string& s);

}  // namespace mixq::testing

#endif  // MIXQ_TESTS_TEST_SUPPORT_H_
