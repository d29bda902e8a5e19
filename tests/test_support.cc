#include "test_support.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

#include "base/text_file.h"

namespace mixq::testing {

std::string TestDataPath(const std::string& file) { return std::string(MIXQ_SOURCE_DIR) + "/tests/data/" + file; }
std::string RefDevModel() { return std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/ref-dev-f16.gguf"; }
std::string RefDevText() { return std::string(MIXQ_SOURCE_DIR) + "/models/ref-dev/val.txt.gz"; }

std::string RefDevTextStart(size_t n_bytes) {
  auto text = ReadTextFile(RefDevText());
  if (!text) throw std::runtime_error(text.error().message());
  return text->substr(0, n_bytes);
}
std::string RefVectorPath(const std::string& file) { return TestDataPath("refvectors/" + file); }
std::string SeedPath(const std::string& file) { return TestDataPath("seeds/" + file); }

std::string ReadSeed(const std::string& file) {
  std::ifstream in(SeedPath(file), std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<uint8_t> ReadFileBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void WriteFileBytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

TempDir::TempDir() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "mixq-test-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

namespace {
std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
}  // namespace

CommandResult RunCommand(const std::string& command_line) {
  TempDir dir;
  std::string out_path = dir.File("out"), err_path = dir.File("err");
  std::string cmd = "(" + command_line + ") >" + out_path + " 2>" + err_path;
  int status = std::system(cmd.c_str());
  CommandResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = Slurp(out_path);
  r.err = Slurp(err_path);
  return r;
}

CommandResult RunMixq(const std::string& args) { return RunCommand(std::string(MIXQ_BINARY) + " " + args); }

std::vector<nlohmann::json> JsonLines(const std::string& text) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

std::string OraclePath() {
  if (const char* env = std::getenv("MIXQ_ORACLE")) return env;
  return MIXQ_ORACLE;
}

nlohmann::json Oracle(const std::string& args) {
  CommandResult r = RunCommand(Q(OraclePath()) + " " + args);
  EXPECT_EQ(r.exit_code, 0) << args << "\n" << r.out << r.err;
  return nlohmann::json::parse(r.out.empty() ? "{}" : r.out);
}

std::string Q(const std::string& s) { return "'" + s + "'"; }

int64_t PresentPages(std::span<const uint8_t> bytes) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<uintptr_t>(bytes.data());
  const uintptr_t first = (begin + page - 1) / page, last = (begin + bytes.size()) / page;
  const int fd = ::open("/proc/self/pagemap", O_RDONLY);
  if (fd < 0) return -1;
  int64_t present = 0;
  for (uintptr_t p = first; p < last; ++p) {
    uint64_t entry = 0;
    if (::pread(fd, &entry, sizeof entry, static_cast<off_t>(p * sizeof entry)) != sizeof entry) {
      present = -1;
      break;
    }
    present += static_cast<int64_t>(entry >> 63);
  }
  ::close(fd);
  return present;
}

std::span<const uint8_t> BeyondFaultAround(std::span<const uint8_t> bytes) {
  constexpr size_t kWindow = size_t{64} << 10;
  if (bytes.size() <= 2 * kWindow) return {};
  return bytes.subspan(kWindow, bytes.size() - 2 * kWindow);
}

}  // namespace mixq::testing
