#include "measure/rapl.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <regex>
#include <sstream>

#include "measure/clock.hpp"
#include "measure/energy.hpp"

namespace eaq::measure {
namespace {

// The whole (small) sysfs file; unavailable with strerror when it cannot be opened.
Reading<std::string> read_text(const std::filesystem::path& path) {
  errno = 0;
  std::ifstream in(path);
  if (!in) {
    const int error = errno;
    return Reading<std::string>::unavailable(fmt::format(
        "cannot read {}: {}", path.string(), error != 0 ? std::strerror(error) : "cannot open"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return Reading<std::string>::unavailable(fmt::format("cannot read {}", path.string()));
  }
  return Reading<std::string>::ok(text.str());
}

Reading<std::uint64_t> read_u64(const std::filesystem::path& path) {
  const Reading<std::string> text = read_text(path);
  if (!text) return Reading<std::uint64_t>::unavailable(text.reason());
  std::string_view s = *text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) {
    return Reading<std::uint64_t>::unavailable(
        fmt::format("{} does not hold an unsigned integer: '{}'", path.string(), s));
  }
  return Reading<std::uint64_t>::ok(value);
}

}  // namespace

RaplMeter::RaplMeter(std::filesystem::path root) : root_(std::move(root)) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(root_, ec)) {
    reason_ = fmt::format("RAPL unavailable: {} does not exist (no powercap on this machine)",
                          root_.string());
    return;
  }
  static const std::regex package_zone(R"(intel-rapl:(\d+))");
  std::vector<std::pair<int, fs::path>> zones;
  for (const fs::directory_entry& entry : fs::directory_iterator(root_, ec)) {
    const std::string name = entry.path().filename().string();
    std::smatch match;
    if (std::regex_match(name, match, package_zone))
      zones.emplace_back(std::stoi(match[1]), entry.path());
  }
  if (ec) {
    reason_ = fmt::format("RAPL unavailable: cannot list {}: {}", root_.string(), ec.message());
    return;
  }
  if (zones.empty()) {
    reason_ = fmt::format("RAPL unavailable: no intel-rapl:<N> package zone in {}", root_.string());
    return;
  }
  std::sort(zones.begin(), zones.end());
  for (const auto& [number, dir] : zones) {
    RaplDomain domain;
    domain.dir = dir;
    const Reading<std::string> name = read_text(dir / "name");
    domain.name =
        name ? std::string(name->substr(0, name->find('\n'))) : fmt::format("package-{}", number);
    const Reading<std::uint64_t> range = read_u64(dir / "max_energy_range_uj");
    domain.max_energy_range_uj = range ? *range : 0;
    const Reading<std::uint64_t> probe = read_u64(dir / "energy_uj");
    if (!probe) {
      reason_ = fmt::format("RAPL unavailable: {}{}", probe.reason(),
                            probe.reason().find("Permission denied") != std::string::npos
                                ? " (energy_uj is readable by root only since Linux 5.10)"
                                : "");
      domains_.clear();
      return;
    }
    domains_.push_back(std::move(domain));
  }
}

Reading<RaplReading> RaplMeter::read() const {
  if (!available()) return Reading<RaplReading>::unavailable(reason_);
  RaplReading reading;
  const double before = steady_now_s();
  for (const RaplDomain& domain : domains_) {
    const Reading<std::uint64_t> uj = read_u64(domain.dir / "energy_uj");
    if (!uj) return Reading<RaplReading>::unavailable(uj.reason());
    reading.energy_uj.push_back(*uj);
  }
  reading.t_s = before + (steady_now_s() - before) / 2;
  return Reading<RaplReading>::ok(std::move(reading));
}

CounterDelta RaplMeter::energy_between(const RaplReading& start, const RaplReading& end) const {
  CounterDelta total;
  if (!available()) {
    total.joules = Reading<double>::unavailable(reason_);
    return total;
  }
  if (start.energy_uj.size() != domains_.size() || end.energy_uj.size() != domains_.size()) {
    total.joules = Reading<double>::unavailable(
        fmt::format("RAPL readings have {} and {} counters for {} package(s)",
                    start.energy_uj.size(), end.energy_uj.size(), domains_.size()));
    return total;
  }
  double joules = 0;
  for (std::size_t i = 0; i < domains_.size(); ++i) {
    const CounterDelta delta =
        rapl_energy_delta(start.energy_uj[i], end.energy_uj[i], domains_[i].max_energy_range_uj);
    total.wrapped = total.wrapped || delta.wrapped;
    if (!delta.joules) {
      total.reset = delta.reset;
      total.joules = Reading<double>::unavailable(
          fmt::format("{}: {}", domains_[i].name, delta.joules.reason()));
      return total;
    }
    joules += *delta.joules;
  }
  total.joules = Reading<double>::ok(joules);
  return total;
}

}  // namespace eaq::measure
