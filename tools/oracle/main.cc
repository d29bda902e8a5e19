// gguf-oracle: the real llama.cpp (its prebuilt shared libraries, through the
// public C API) as the judge of mixq's files in tests and benchmarks. Each
// command prints one JSON object; exit code 0 ok, 1 failed (the JSON says
// why), 2 usage error. tools/oracle/README.md describes the commands.
#include <cstdio>
#include <cstring>
#include <string>

#include "common.h"

namespace {

constexpr const char* kUsage =
    "usage: gguf-oracle COMMAND ...\n"
    "  info MODEL\n"
    "  types\n"
    "  tokenize MODEL --text-file F [--no-bos] [--out F.tok]\n"
    "  eval MODEL (--text-file F | --token-file F.tok | --ref F.lgt) [--ctx N] [--chunks K] [--threads T]\n"
    "       [--out F.lgt] [--ref F.lgt]\n"
    "  tensors MODEL [--ref REF.gguf]\n"
    "  quantize IN OUT FTYPE [--pure] [--imatrix F | --imatrix-ones] [--tensor-type REGEX=TYPE ...]\n"
    "       [--tensor-type-file F] [--output-tensor-type TYPE] [--token-embedding-type TYPE] [--threads T]\n";

struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
};

constexpr Command kCommands[] = {
    {"info", oracle::RunInfo}, {"types", oracle::RunTypes},     {"tokenize", oracle::RunTokenize},
    {"eval", oracle::RunEval}, {"tensors", oracle::RunTensors}, {"quantize", oracle::RunQuantize},
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  for (const Command& c : kCommands) {
    if (std::strcmp(argv[1], c.name) != 0) continue;
    try {
      oracle::InitLlama();
      return c.run(argc - 2, argv + 2);
    } catch (const oracle::UsageError& e) {
      std::fprintf(stderr, "gguf-oracle %s: %s\n%s", c.name, e.what(), kUsage);
      return 2;
    }
  }
  std::fprintf(stderr, "gguf-oracle: unknown command '%s'\n%s", argv[1], kUsage);
  return 2;
}
