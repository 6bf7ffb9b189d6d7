// CPU package energy from Linux RAPL (powercap): /sys/class/powercap/intel-rapl:<N>/energy_uj, one
// counter per CPU package, wrapping at max_energy_range_uj. Unavailable, with the reason, where
// the folder is missing (many VMs and containers) or unreadable (energy_uj is root-only since
// Linux 5.10).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "measure/energy.hpp"
#include "measure/reading.hpp"

namespace eaq::measure {

inline constexpr const char* kPowercapRoot = "/sys/class/powercap";

struct RaplDomain {
  std::string name;                       // the zone's "name" file, e.g. "package-0"
  std::filesystem::path dir;              // e.g. /sys/class/powercap/intel-rapl:0
  std::uint64_t max_energy_range_uj = 0;  // 0 when unknown
};

struct RaplReading {
  double t_s = 0;                        // steady clock
  std::vector<std::uint64_t> energy_uj;  // one per domain, in domains() order
};

class RaplMeter {
 public:
  // Finds the package zones (intel-rapl:<N>, not their sub-zones intel-rapl:<N>:<M>) under `root`
  // (injectable for tests) and checks that they can be read.
  explicit RaplMeter(std::filesystem::path root = kPowercapRoot);

  bool available() const { return reason_.empty(); }
  const std::string& unavailable_reason() const { return reason_; }
  const std::vector<RaplDomain>& domains() const { return domains_; }

  Reading<RaplReading> read() const;

  // Joules between two readings, summed over the packages; each counter's wrap is handled
  // (rapl_energy_delta). What EnergyInputs::counter wants, with counter_source "rapl".
  CounterDelta energy_between(const RaplReading& start, const RaplReading& end) const;

 private:
  std::filesystem::path root_;
  std::vector<RaplDomain> domains_;
  std::string reason_;
};

}  // namespace eaq::measure
