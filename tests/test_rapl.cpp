#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include "file_helpers.hpp"
#include "measure/rapl.hpp"
#include "test_util.hpp"

namespace eaq::measure {
namespace {

using eaq::test::TempDir;
using eaq::test::write_file;

// A powercap tree like a two-socket Intel server's, with a core sub-zone that must be ignored.
void make_tree(const TempDir& root) {
  write_file(root.path() / "intel-rapl:0/name", "package-0\n");
  write_file(root.path() / "intel-rapl:0/energy_uj", "1000000\n");
  write_file(root.path() / "intel-rapl:0/max_energy_range_uj", "262143328850\n");
  write_file(root.path() / "intel-rapl:0/intel-rapl:0:0/name", "core\n");
  write_file(root.path() / "intel-rapl:0/intel-rapl:0:0/energy_uj", "5\n");
  write_file(root.path() / "intel-rapl:0:0/name", "core\n");  // sub-zone link at the top level
  write_file(root.path() / "intel-rapl:0:0/energy_uj", "5\n");
  write_file(root.path() / "intel-rapl:1/name", "package-1\n");
  write_file(root.path() / "intel-rapl:1/energy_uj", "999000\n");
  write_file(root.path() / "intel-rapl:1/max_energy_range_uj", "1000000\n");
  write_file(root.path() / "intel-rapl/enabled", "1\n");  // the control type, not a zone
}

TEST(Rapl, FindsPackageZonesAndSumsTheirEnergyWithWrap) {
  TempDir root;
  make_tree(root);
  RaplMeter rapl(root.path());
  ASSERT_TRUE(rapl.available()) << rapl.unavailable_reason();
  ASSERT_EQ(rapl.domains().size(), 2u);
  EXPECT_EQ(rapl.domains()[0].name, "package-0");
  EXPECT_EQ(rapl.domains()[1].name, "package-1");
  EXPECT_EQ(rapl.domains()[1].max_energy_range_uj, 1'000'000u);

  const Reading<RaplReading> start = rapl.read();
  ASSERT_TRUE(start) << start.reason();
  EXPECT_EQ(start->energy_uj, (std::vector<std::uint64_t>{1'000'000, 999'000}));

  // Package 0 uses 2.5 J; package 1 uses 1.5 J and wraps at 1'000'000 uJ on the way.
  write_file(root.path() / "intel-rapl:0/energy_uj", "3500000\n");
  write_file(root.path() / "intel-rapl:1/energy_uj", "500000\n");
  const Reading<RaplReading> end = rapl.read();
  ASSERT_TRUE(end);
  EXPECT_GE(end->t_s, start->t_s);
  const CounterDelta delta = rapl.energy_between(*start, *end);
  ASSERT_TRUE(delta.joules) << delta.joules.reason();
  EXPECT_NEAR(*delta.joules, 2.5 + 0.501, 1e-9);
  EXPECT_TRUE(delta.wrapped);
}

TEST(Rapl, MissingTreeIsUnavailableWithTheReason) {
  TempDir root;
  RaplMeter missing(root.path() / "no-such-folder");
  EXPECT_FALSE(missing.available());
  EXPECT_NE(missing.unavailable_reason().find("does not exist"), std::string::npos);
  EXPECT_FALSE(missing.read());
  EXPECT_EQ(missing.read().reason(), missing.unavailable_reason());

  RaplMeter empty(root.path());
  EXPECT_FALSE(empty.available());
  EXPECT_NE(empty.unavailable_reason().find("no intel-rapl:<N> package zone"), std::string::npos);
}

TEST(Rapl, UnreadableCounterIsUnavailable) {
  TempDir root;
  write_file(root.path() / "intel-rapl:0/name", "package-0\n");
  write_file(root.path() / "intel-rapl:0/energy_uj", "not a number\n");
  RaplMeter rapl(root.path());
  EXPECT_FALSE(rapl.available());
  EXPECT_NE(rapl.unavailable_reason().find("energy_uj does not hold an unsigned integer"),
            std::string::npos)
      << rapl.unavailable_reason();
  TempDir other;
  write_file(other.path() / "intel-rapl:0/name", "package-0\n");  // no energy_uj at all
  RaplMeter no_counter(other.path());
  EXPECT_FALSE(no_counter.available());
  EXPECT_NE(no_counter.unavailable_reason().find("cannot read"), std::string::npos);
}

TEST(Rapl, ResetCounterIsFlagged) {
  TempDir root;
  make_tree(root);
  RaplMeter rapl(root.path());
  const RaplReading start = *rapl.read();
  write_file(root.path() / "intel-rapl:1/energy_uj", "2000000\n");  // beyond its 1'000'000 range
  const CounterDelta delta = rapl.energy_between(start, *rapl.read());
  EXPECT_FALSE(delta.joules);
  EXPECT_TRUE(delta.reset);
  EXPECT_NE(delta.joules.reason().find("package-1"), std::string::npos);
}

TEST(Rapl, ThisMachine) {
  RaplMeter rapl;  // the real /sys/class/powercap
  if (!rapl.available()) {
    EXPECT_FALSE(rapl.unavailable_reason().empty());
    GTEST_SKIP() << rapl.unavailable_reason();
  }
  EXPECT_TRUE(rapl.read());
}

}  // namespace
}  // namespace eaq::measure

namespace eaq::measure {
namespace {

TEST(Rapl, RootOnlyCounterSaysSo) {
  eaq::test::TempDir root;
  write_file(root.path() / "intel-rapl:0/name", "package-0\n");
  const auto counter = write_file(root.path() / "intel-rapl:0/energy_uj", "12345\n");
  ::chmod(counter.c_str(), 0000);
  if (::access(counter.c_str(), R_OK) == 0) {
    GTEST_SKIP() << "running as root: permissions do not bind";
  }
  RaplMeter rapl(root.path());
  EXPECT_FALSE(rapl.available());
  EXPECT_NE(rapl.unavailable_reason().find("Permission denied"), std::string::npos)
      << rapl.unavailable_reason();
  EXPECT_NE(rapl.unavailable_reason().find("root only since Linux 5.10"), std::string::npos);
}

}  // namespace
}  // namespace eaq::measure
