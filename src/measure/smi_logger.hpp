// The seed's power logger, kept for compatibility: an `nvidia-smi` subprocess printing power.draw
// every interval, read line by line in a thread. Started with posix_spawn (no shell), stopped with
// SIGTERM (SIGKILL after a grace period) and reaped with waitpid.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "measure/power_sampler.hpp"
#include "measure/reading.hpp"

namespace eaq::measure {

struct SmiLoggerOptions {
  unsigned gpu_index = 0;                      // nvidia-smi -i
  std::chrono::milliseconds interval{100};     // nvidia-smi -lms
  std::string executable = "nvidia-smi";       // looked up on PATH unless it has a '/'
  std::chrono::milliseconds stop_grace{2000};  // SIGTERM, then SIGKILL after this
};

// One line of `nvidia-smi --query-gpu=timestamp,power.draw --format=csv,noheader,nounits`:
// "2025/01/31 12:34:56.789, 71.23".
struct SmiLine {
  std::optional<double> wall_time_s;  // the timestamp (local time) as seconds since the epoch
  std::optional<double> power_w;      // empty for "[N/A]", "[Not Supported]" and the like
};

// nullopt when the line is not "<timestamp>, <power>" (e.g. an error message).
std::optional<SmiLine> parse_smi_line(std::string_view line);

// The executable's full path: `name` itself when it contains '/', else the first executable file
// called `name` in a PATH folder. Unavailable with the reason otherwise.
Reading<std::string> find_executable(const std::string& name);

class SmiPowerLogger final : public PowerSampler {
 public:
  explicit SmiPowerLogger(SmiLoggerOptions options = {});
  ~SmiPowerLogger() override;  // stops

  SmiPowerLogger(const SmiPowerLogger&) = delete;
  SmiPowerLogger& operator=(const SmiPowerLogger&) = delete;

  std::string source_name() const override { return "nvidia-smi"; }
  // False when nvidia-smi cannot be found or started (unavailable_reason() says why). If it
  // starts but fails (no GPU, bad -i), that shows after stop(): no samples and a reason quoting it.
  bool start() override;
  // nvidia-smi cannot be asked for a last sample: samples end at its last line before stop().
  void stop() override;
  bool running() const override;
  std::vector<PowerSample> samples() const override;
  std::string unavailable_reason() const override;

  // The arguments it runs with (argv[0] is the executable as given).
  std::vector<std::string> command_line() const;
  // After stop(): how the process ended, e.g. "exited with status 0", "killed by signal 15".
  std::string exit_description() const;
  std::size_t unparsed_lines() const;

 private:
  void read_output();
  void handle_stdout_line(std::string_view line, double arrival_s);
  // Ends the process (SIGTERM, then SIGKILL after the grace period) unless it already ended.
  void reap();

  SmiLoggerOptions options_;
  std::mutex control_mutex_;  // serialises start() and stop()

  mutable std::mutex mutex_;  // guards the fields below
  bool running_ = false;
  std::vector<PowerSample> samples_;
  std::string unavailable_reason_;
  std::string stderr_text_;     // first few KiB
  std::string first_unparsed_;  // the first stdout line that was not a reading
  std::size_t unparsed_lines_ = 0;
  std::string exit_description_;
  bool exited_on_its_own_ = false;

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
  double wall_minus_steady_s_ = 0;  // maps nvidia-smi's wall-clock timestamps to the steady clock
  double start_s_ = 0;
  std::atomic<bool> stop_reader_{false};
  std::thread reader_;
};

}  // namespace eaq::measure
