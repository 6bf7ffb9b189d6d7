#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <functional>

#include "core/error.hpp"
#include "file_helpers.hpp"
#include "report/csv_writer.hpp"
#include "report/output_files.hpp"
#include "test_util.hpp"

namespace eaq::report {
namespace {

namespace fs = std::filesystem;
using eaq::test::read_file;
using eaq::test::TempDir;
using eaq::test::write_file;

using ::eaq::test::error_of;

TEST(OutputPaths, SeedLayoutByDefault) {
  const OutputPaths p = resolve_output_paths("", "fp16", 3, "20250131_123456");
  EXPECT_EQ(p.csv, fs::path("results/fp16/trial_3_20250131_123456.csv"));
  EXPECT_EQ(p.json, fs::path("results/fp16/trial_3_20250131_123456.json"));
  const OutputPaths rooted = default_output_paths("/tmp/r", "int8-static", 1, "T");
  EXPECT_EQ(rooted.csv, fs::path("/tmp/r/int8-static/trial_1_T.csv"));
}

TEST(OutputPaths, OutputFlagOverrides) {
  OutputPaths p = resolve_output_paths("out/run.csv", "fp32", 1, "T");
  EXPECT_EQ(p.csv, fs::path("out/run.csv"));
  EXPECT_EQ(p.json, fs::path("out/run.json"));
  p = resolve_output_paths("run.json", "fp32", 1, "T");
  EXPECT_EQ(p.csv, fs::path("run.csv"));
  EXPECT_EQ(p.json, fs::path("run.json"));
  p = resolve_output_paths("sweep/", "fp32", 2, "T");
  EXPECT_EQ(p.csv, fs::path("sweep/trial_2_T.csv"));
  TempDir dir;
  p = resolve_output_paths(dir.path().string(), "fp32", 2, "T");  // an existing folder
  EXPECT_EQ(p.json, dir.path() / "trial_2_T.json");
  EXPECT_NE(error_of([] {
              resolve_output_paths("out/run.txt", "fp32", 1, "T");
            }).find("must end in .csv or .json"),
            std::string::npos);
}

TEST(OutputPaths, BadPrecisionOrTrial) {
  EXPECT_NE(error_of([] {
              default_output_paths("results", "../etc", 1, "T");
            }).find("precision '../etc'"),
            std::string::npos);
  EXPECT_THROW(default_output_paths("results", "", 1, "T"), Error);
  EXPECT_THROW(default_output_paths("results", "fp32", -1, "T"), Error);
}

TEST(OutputPaths, AvoidsOverwritingAnEarlierTrial) {
  TempDir dir;
  const OutputPaths p = default_output_paths(dir.path(), "fp32", 1, "T");
  EXPECT_EQ(avoid_existing(p).csv, p.csv);  // nothing there yet
  write_file_atomic(p.csv, "x");
  const OutputPaths second = avoid_existing(p);
  EXPECT_EQ(second.csv, dir.path() / "fp32/trial_1_T_2.csv");
  EXPECT_EQ(second.json, dir.path() / "fp32/trial_1_T_2.json");
}

TEST(OutputDir, CreatesMissingFolders) {
  TempDir dir;
  ensure_writable_output_dir(dir.path() / "a/b/c");
  EXPECT_TRUE(fs::is_directory(dir.path() / "a/b/c"));
  EXPECT_TRUE(fs::is_empty(dir.path() / "a/b/c"));  // the probe file is gone
}

TEST(OutputDir, AFileWhereAFolderShouldBe) {
  TempDir dir;
  write_file(dir.path() / "results", "I am a file");
  const std::string as_dir = error_of([&] { ensure_writable_output_dir(dir.path() / "results"); });
  EXPECT_NE(as_dir.find("is a file, not a folder"), std::string::npos) << as_dir;
  const std::string under =
      error_of([&] { ensure_writable_output_dir(dir.path() / "results/fp32"); });
  EXPECT_NE(under.find("cannot create output folder"), std::string::npos) << under;
  EXPECT_NE(under.find("is a file, not a folder"), std::string::npos) << under;
}

TEST(OutputDir, AFolderNobodyCanCreate) {
  // /proc refuses new folders even to root.
  const std::string message =
      error_of([] { ensure_writable_output_dir("/proc/eaq-results/fp32"); });
  EXPECT_NE(message.find("cannot create output folder '/proc/eaq-results/fp32'"), std::string::npos)
      << message;
}

TEST(OutputDir, AReadOnlyFolder) {
  TempDir dir;
  const fs::path locked = dir.path() / "locked";
  fs::create_directory(locked);
  ::chmod(locked.c_str(), 0555);
  if (::access(locked.c_str(), W_OK) == 0)
    GTEST_SKIP() << "running as root: permissions do not bind";
  const std::string message = error_of([&] { ensure_writable_output_dir(locked); });
  EXPECT_NE(message.find("is not writable"), std::string::npos) << message;
  const std::string below = error_of([&] { ensure_writable_output_dir(locked / "fp32"); });
  EXPECT_NE(below.find("cannot create output folder"), std::string::npos) << below;
}

TEST(AtomicWrite, WritesReplacesAndLeavesNoTemporaryFiles) {
  TempDir dir;
  const fs::path file = dir.path() / "out/result.csv";
  write_file_atomic(file, "first\n");
  EXPECT_EQ(read_file(file), "first\n");
  write_file_atomic(file, "second, longer\n");
  EXPECT_EQ(read_file(file), "second, longer\n");
  std::size_t entries = 0;
  for (const auto& entry : fs::directory_iterator(dir.path() / "out")) {
    ++entries;
    EXPECT_EQ(entry.path().filename(), "result.csv");
  }
  EXPECT_EQ(entries, 1u);
  struct stat info {};
  ASSERT_EQ(::stat(file.c_str(), &info), 0);
  EXPECT_EQ(info.st_mode & 0777, 0644u);
}

TEST(AtomicWrite, FailureNamesThePath) {
  TempDir dir;
  write_file(dir.path() / "blocker", "file");
  const std::string message =
      error_of([&] { write_file_atomic(dir.path() / "blocker/x.csv", "data"); });
  EXPECT_NE(message.find("blocker"), std::string::npos) << message;
}

TEST(AtomicWrite, BothResultFiles) {
  TempDir dir;
  Result r = Result::from_schema();
  r.set("mean_latency", 0.5);
  const OutputPaths paths = default_output_paths(dir.path(), "fp32", 1, "T");
  write_result_files(r, paths);
  EXPECT_EQ(read_file(paths.csv), to_csv(r));
  EXPECT_NE(read_file(paths.json).find("\"mean_latency\": 0.5"), std::string::npos);
}

}  // namespace
}  // namespace eaq::report
