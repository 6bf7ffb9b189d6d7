#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "file_helpers.hpp"
#include "measure/clock.hpp"
#include "measure/smi_logger.hpp"
#include "test_util.hpp"

namespace eaq::measure {
namespace {

using eaq::test::read_file;
using eaq::test::TempDir;
using eaq::test::write_file;
using namespace std::chrono_literals;

// Puts `dir` first on PATH for the life of the object.
class ScopedPath {
 public:
  explicit ScopedPath(const std::string& path) {
    const char* old = std::getenv("PATH");
    had_ = old != nullptr;
    if (had_) old_ = old;
    ::setenv("PATH", path.c_str(), 1);
  }
  ~ScopedPath() {
    if (had_)
      ::setenv("PATH", old_.c_str(), 1);
    else
      ::unsetenv("PATH");
  }
  static std::string prepend(const std::string& dir) {
    const char* old = std::getenv("PATH");
    return old != nullptr ? dir + ":" + old : dir;
  }

 private:
  bool had_ = false;
  std::string old_;
};

// A stand-in for nvidia-smi: records its arguments, then prints "timestamp, power" lines like
// `nvidia-smi --query-gpu=timestamp,power.draw --format=csv,noheader,nounits -lms N` until killed.
constexpr const char* kFakeSmi = R"sh(#!/bin/sh
echo "$@" > "$(dirname "$0")/args.txt"
i=0
while :; do
  if [ $((i % 2)) -eq 0 ]; then p=100.50; else p=200.25; fi
  printf '%s, %s\n' "$(date '+%Y/%m/%d %H:%M:%S.%3N')" "$p"
  i=$((i + 1))
  sleep 0.02
done
)sh";

TEST(SmiParse, ReadsTimestampAndPower) {
  const auto a = parse_smi_line("2025/01/31 12:34:56.789, 71.23");
  ASSERT_TRUE(a.has_value());
  ASSERT_TRUE(a->power_w.has_value());
  EXPECT_DOUBLE_EQ(*a->power_w, 71.23);
  const auto b = parse_smi_line("2025/01/31 12:34:57.289, 80\r");
  ASSERT_TRUE(b && b->wall_time_s && a->wall_time_s);
  EXPECT_NEAR(*b->wall_time_s - *a->wall_time_s, 0.5, 1e-6);
  // Across midnight and a month end.
  const auto c = parse_smi_line("2025/01/31 23:59:59.900, 1");
  const auto d = parse_smi_line("2025/02/01 00:00:00.100, 1");
  ASSERT_TRUE(c && d);
  EXPECT_NEAR(*d->wall_time_s - *c->wall_time_s, 0.2, 1e-6);
}

TEST(SmiParse, NotAvailableAndGarbage) {
  const auto na = parse_smi_line("2025/01/31 12:34:56.789, [N/A]");
  ASSERT_TRUE(na.has_value());
  EXPECT_FALSE(na->power_w.has_value());
  EXPECT_FALSE(parse_smi_line("No devices were found").has_value());
  EXPECT_FALSE(parse_smi_line("garbage, 12").has_value());
  EXPECT_FALSE(parse_smi_line("2025/01/31 12:34:56.789, 71.2 W").has_value());
  EXPECT_FALSE(parse_smi_line("2025/01/31 12:34:56.789, -3").has_value());
  EXPECT_FALSE(parse_smi_line("2025/13/31 12:34:56.789, 3").has_value());
  EXPECT_FALSE(parse_smi_line("").has_value());
}

TEST(SmiLogger, FindExecutable) {
  TempDir dir;
  const auto fake = write_file(dir.path() / "nvidia-smi", kFakeSmi, true);
  write_file(dir.path() / "not-executable", "#!/bin/sh\n");
  ScopedPath path(ScopedPath::prepend(dir.path().string()));
  const Reading<std::string> found = find_executable("nvidia-smi");
  ASSERT_TRUE(found) << found.reason();
  EXPECT_EQ(*found, fake.string());
  EXPECT_FALSE(find_executable("not-executable"));
  EXPECT_FALSE(find_executable("eaq-no-such-program"));
  EXPECT_EQ(find_executable("eaq-no-such-program").reason(),
            "eaq-no-such-program not found on PATH");
  EXPECT_FALSE(find_executable((dir.path() / "not-executable").string()));
}

TEST(SmiLogger, ReadsAFakeNvidiaSmiFirstOnPath) {
  TempDir dir;
  write_file(dir.path() / "nvidia-smi", kFakeSmi, true);
  ScopedPath path(ScopedPath::prepend(dir.path().string()));
  SmiPowerLogger logger({.gpu_index = 3, .interval = 20ms});
  const double t_start = steady_now_s();
  ASSERT_TRUE(logger.start()) << logger.unavailable_reason();
  EXPECT_TRUE(logger.running());
  std::this_thread::sleep_for(500ms);
  logger.stop();
  const double t_stop = steady_now_s();
  EXPECT_FALSE(logger.running());
  logger.stop();  // idempotent

  const std::vector<PowerSample> samples = logger.samples();
  ASSERT_GE(samples.size(), 5u) << logger.unavailable_reason();
  for (std::size_t i = 0; i < samples.size(); ++i) {
    ASSERT_TRUE(samples[i].power_w.has_value());
    EXPECT_DOUBLE_EQ(*samples[i].power_w, i % 2 == 0 ? 100.50 : 200.25);
    // nvidia-smi's own timestamps (millisecond resolution) mapped onto the steady clock.
    EXPECT_GE(samples[i].t_s, t_start - 0.01);
    EXPECT_LE(samples[i].t_s, t_stop + 0.01);
  }
  EXPECT_EQ(logger.unparsed_lines(), 0u);
  EXPECT_TRUE(logger.unavailable_reason().empty());
  EXPECT_EQ(logger.exit_description(), "killed by signal 15");
  EXPECT_EQ(read_file(dir.path() / "args.txt"),
            "--query-gpu=timestamp,power.draw --format=csv,noheader,nounits -lms 20 -i 3\n");
}

TEST(SmiLogger, MissingNvidiaSmiIsUnavailable) {
  TempDir empty;
  ScopedPath path(empty.path().string());
  SmiPowerLogger logger;
  EXPECT_FALSE(logger.start());
  EXPECT_FALSE(logger.running());
  EXPECT_EQ(logger.unavailable_reason(),
            "nvidia-smi power logging unavailable: nvidia-smi not found on PATH");
  logger.stop();
  EXPECT_TRUE(logger.samples().empty());
}

TEST(SmiLogger, AnNvidiaSmiThatFailsSaysWhat) {
  TempDir dir;
  const auto smi = write_file(dir.path() / "fake-smi",
                              "#!/bin/sh\necho 'No devices were found'\nexit 6\n", true);
  SmiPowerLogger logger({.executable = smi.string()});
  ASSERT_TRUE(logger.start());
  std::this_thread::sleep_for(200ms);
  logger.stop();
  EXPECT_TRUE(logger.samples().empty());
  const std::string reason = logger.unavailable_reason();
  EXPECT_NE(reason.find("exited with status 6 before it was stopped"), std::string::npos) << reason;
  EXPECT_NE(reason.find("No devices were found"), std::string::npos) << reason;
  EXPECT_EQ(logger.unparsed_lines(), 1u);
}

TEST(SmiLogger, StderrIsQuoted) {
  TempDir dir;
  const auto smi =
      write_file(dir.path() / "fake-smi",
                 "#!/bin/sh\necho 'Invalid combination of input arguments' >&2\nexit 2\n", true);
  SmiPowerLogger logger({.executable = smi.string()});
  ASSERT_TRUE(logger.start());
  std::this_thread::sleep_for(200ms);
  logger.stop();
  EXPECT_NE(logger.unavailable_reason().find("Invalid combination of input arguments"),
            std::string::npos)
      << logger.unavailable_reason();
}

TEST(SmiLogger, OneThatIgnoresSigtermIsKilled) {
  TempDir dir;
  const auto smi =
      write_file(dir.path() / "stubborn-smi",
                 "#!/bin/sh\ntrap '' TERM\nwhile :; do printf '2025/01/31 12:00:00.000, "
                 "5\\n'; sleep 0.02; done\n",
                 true);
  SmiPowerLogger logger({.executable = smi.string(), .stop_grace = 200ms});
  ASSERT_TRUE(logger.start());
  std::this_thread::sleep_for(100ms);
  const double before = steady_now_s();
  logger.stop();
  EXPECT_LT(steady_now_s() - before, 2.0);
  EXPECT_EQ(logger.exit_description(), "killed by signal 9");
  // Its fixed timestamp is far from now: the samples fall back to arrival times.
  const std::vector<PowerSample> samples = logger.samples();
  ASSERT_FALSE(samples.empty());
  EXPECT_GE(samples.front().t_s, before - 1.0);
}

TEST(SmiLogger, DestructorStopsIt) {
  TempDir dir;
  write_file(dir.path() / "nvidia-smi", kFakeSmi, true);
  ScopedPath path(ScopedPath::prepend(dir.path().string()));
  const double before = steady_now_s();
  {
    SmiPowerLogger logger({.interval = 20ms});
    ASSERT_TRUE(logger.start());
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_LT(steady_now_s() - before, 2.0);
}

}  // namespace
}  // namespace eaq::measure
