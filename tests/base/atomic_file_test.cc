#include "base/atomic_file.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "test_support.h"

namespace mixq {
namespace {

// The pid of a process that has exited and been reaped.
pid_t DeadPid() {
  pid_t pid = ::fork();
  if (pid == 0) ::_exit(0);
  ::waitpid(pid, nullptr, 0);
  return pid;
}

void Touch(const std::string& path) { testing::WriteFileBytes(path, {1, 2, 3}); }

// SIGKILL leaves "OUT.tmp.<pid>" behind; the next successful write of OUT
// removes it, and only it: a live writer's temporary, another output's and
// files that merely look alike stay.
TEST(AtomicFile, CommitRemovesTemporariesOfDeadWriters) {
  testing::TempDir dir;
  const std::string out = dir.File("im.gguf");
  const std::string dead = out + ".tmp." + std::to_string(DeadPid());
  const std::string live = out + ".tmp." + std::to_string(::getppid());
  const std::string other_output = dir.File("other.gguf.tmp." + std::to_string(DeadPid()));
  const std::string not_a_pid = out + ".tmp.12x";
  for (const auto& f : {dead, live, other_output, not_a_pid}) Touch(f);

  auto file = AtomicFile::Create(out);
  ASSERT_TRUE(file.has_value()) << file.error().message();
  ASSERT_TRUE(file->Write(std::string_view("data").data(), 4).ok());
  EXPECT_TRUE(std::filesystem::exists(dead)) << "removed before the write succeeded";
  ASSERT_TRUE(file->Commit().ok());

  EXPECT_FALSE(std::filesystem::exists(dead));
  EXPECT_TRUE(std::filesystem::exists(live));
  EXPECT_TRUE(std::filesystem::exists(other_output));
  EXPECT_TRUE(std::filesystem::exists(not_a_pid));
  EXPECT_EQ(std::filesystem::file_size(out), 4u);
}

}  // namespace
}  // namespace mixq
