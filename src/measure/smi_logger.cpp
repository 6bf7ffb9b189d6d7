#include "measure/smi_logger.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "core/error.hpp"
#include "measure/clock.hpp"

namespace eaq::measure {
namespace {

constexpr std::size_t kMaxStderrBytes = 4096;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

// "2025/01/31 12:34:56.789" in local time -> seconds since the epoch.
std::optional<double> parse_smi_timestamp(std::string_view text) {
  const std::string s(text);
  int year = 0, month = 0, day = 0, hour = 0, minute = 0;
  double seconds = 0;
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%d/%d/%d %d:%d:%lf%n", &year, &month, &day, &hour, &minute, &seconds,
                  &consumed) != 6 ||
      static_cast<std::size_t>(consumed) != s.size()) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > 31 || hour < 0 || hour > 23 || minute < 0 ||
      minute > 59 || seconds < 0 || seconds >= 61) {
    return std::nullopt;
  }
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = 0;
  tm.tm_isdst = -1;
  const std::time_t whole = std::mktime(&tm);
  if (whole == static_cast<std::time_t>(-1)) return std::nullopt;
  return static_cast<double>(whole) + seconds;
}

double wall_now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return fmt::format("killed by signal {}", WTERMSIG(status));
  return fmt::format("ended with wait status {}", status);
}

}  // namespace

std::optional<SmiLine> parse_smi_line(std::string_view line) {
  line = trim(line);
  const auto comma = line.rfind(',');
  if (comma == std::string_view::npos) return std::nullopt;
  const std::string_view time_text = trim(line.substr(0, comma));
  const std::string_view power_text = trim(line.substr(comma + 1));
  SmiLine parsed;
  parsed.wall_time_s = parse_smi_timestamp(time_text);
  if (!parsed.wall_time_s) return std::nullopt;
  if (!power_text.empty() && power_text.front() == '[') return parsed;  // "[N/A]" and friends
  double watts = 0;
  const auto [end, ec] =
      std::from_chars(power_text.data(), power_text.data() + power_text.size(), watts);
  if (ec != std::errc() || end != power_text.data() + power_text.size() || watts < 0) {
    return std::nullopt;
  }
  parsed.power_w = watts;
  return parsed;
}

Reading<std::string> find_executable(const std::string& name) {
  namespace fs = std::filesystem;
  const auto runnable = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_regular_file(p, ec) && ::access(p.c_str(), X_OK) == 0;
  };
  if (name.empty()) return Reading<std::string>::unavailable("empty executable name");
  if (name.find('/') != std::string::npos) {
    if (runnable(name)) return Reading<std::string>::ok(name);
    return Reading<std::string>::unavailable(fmt::format("{} is not an executable file", name));
  }
  const char* path_env = std::getenv("PATH");
  std::string_view path = path_env != nullptr ? path_env : "";
  while (true) {
    const auto colon = path.find(':');
    const std::string_view dir = path.substr(0, colon);
    const fs::path candidate = fs::path(dir.empty() ? "." : std::string(dir)) / name;
    if (runnable(candidate)) return Reading<std::string>::ok(candidate.string());
    if (colon == std::string_view::npos) break;
    path.remove_prefix(colon + 1);
  }
  return Reading<std::string>::unavailable(fmt::format("{} not found on PATH", name));
}

SmiPowerLogger::SmiPowerLogger(SmiLoggerOptions options) : options_(std::move(options)) {
  EAQ_CHECK(options_.interval.count() >= 1,
            "nvidia-smi sample interval must be at least 1 ms, got {} ms",
            options_.interval.count());
}

SmiPowerLogger::~SmiPowerLogger() {
  stop();
}

std::vector<std::string> SmiPowerLogger::command_line() const {
  return {options_.executable,
          "--query-gpu=timestamp,power.draw",
          "--format=csv,noheader,nounits",
          "-lms",
          std::to_string(options_.interval.count()),
          "-i",
          std::to_string(options_.gpu_index)};
}

bool SmiPowerLogger::start() {
  std::lock_guard control(control_mutex_);
  {
    std::lock_guard lock(mutex_);
    EAQ_CHECK(!running_, "the nvidia-smi power logger is already running");
    samples_.clear();
    unavailable_reason_.clear();
    stderr_text_.clear();
    first_unparsed_.clear();
    unparsed_lines_ = 0;
    exit_description_.clear();
    exited_on_its_own_ = false;
  }
  const Reading<std::string> path = find_executable(options_.executable);
  if (!path) {
    std::lock_guard lock(mutex_);
    unavailable_reason_ = fmt::format("nvidia-smi power logging unavailable: {}", path.reason());
    return false;
  }

  int out_pipe[2] = {-1, -1};
  int err_pipe[2] = {-1, -1};
  if (::pipe2(out_pipe, O_CLOEXEC) != 0 || ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    const int error = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) {
      if (fd >= 0) ::close(fd);
    }
    std::lock_guard lock(mutex_);
    unavailable_reason_ =
        fmt::format("cannot create a pipe for nvidia-smi: {}", std::strerror(error));
    return false;
  }

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_pipe[1], 2);
  // The child starts with no blocked signals and default handlers for the ones we send or that
  // end it, whatever this process has set up.
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  sigset_t no_signals;
  sigemptyset(&no_signals);
  posix_spawnattr_setsigmask(&attributes, &no_signals);
  sigset_t default_signals;
  sigemptyset(&default_signals);
  for (int sig : {SIGTERM, SIGINT, SIGPIPE, SIGHUP}) sigaddset(&default_signals, sig);
  posix_spawnattr_setsigdefault(&attributes, &default_signals);
  posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> args = command_line();
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  const int spawn_error =
      posix_spawn(&pid, path->c_str(), &actions, &attributes, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  if (spawn_error != 0) {
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    std::lock_guard lock(mutex_);
    unavailable_reason_ = fmt::format("cannot start {}: {}", *path, std::strerror(spawn_error));
    return false;
  }

  pid_ = pid;
  stdout_fd_ = out_pipe[0];
  stderr_fd_ = err_pipe[0];
  start_s_ = steady_now_s();
  wall_minus_steady_s_ = wall_now_s() - start_s_;
  stop_reader_ = false;
  {
    std::lock_guard lock(mutex_);
    running_ = true;
  }
  reader_ = std::thread([this] { read_output(); });
  return true;
}

void SmiPowerLogger::stop() {
  std::lock_guard control(control_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (!running_) return;
  }
  reap();
  stop_reader_ = true;
  if (reader_.joinable()) reader_.join();
  close_fd(stdout_fd_);
  close_fd(stderr_fd_);

  std::lock_guard lock(mutex_);
  running_ = false;
  if (!samples_.empty()) return;
  std::string said = trim(stderr_text_).empty() ? first_unparsed_ : std::string(trim(stderr_text_));
  if (said.empty()) said = "no output";
  if (exited_on_its_own_) {
    unavailable_reason_ = fmt::format("{} {} before it was stopped: {}", options_.executable,
                                      exit_description_, said);
  } else {
    unavailable_reason_ = fmt::format("{} printed no power reading ({} line(s) without one): {}",
                                      options_.executable, unparsed_lines_, said);
  }
}

void SmiPowerLogger::reap() {
  int status = 0;
  pid_t done = ::waitpid(pid_, &status, WNOHANG);
  if (done == pid_) {
    std::lock_guard lock(mutex_);
    exited_on_its_own_ = true;
    exit_description_ = describe_wait_status(status);
    pid_ = -1;
    return;
  }
  ::kill(pid_, SIGTERM);
  const auto deadline = SteadyClock::now() + options_.stop_grace;
  while (SteadyClock::now() < deadline) {
    done = ::waitpid(pid_, &status, WNOHANG);
    if (done == pid_ || (done < 0 && errno != EINTR)) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (done != pid_) {
    ::kill(pid_, SIGKILL);
    while ((done = ::waitpid(pid_, &status, 0)) < 0 && errno == EINTR) {
    }
  }
  std::lock_guard lock(mutex_);
  exit_description_ = done == pid_ ? describe_wait_status(status) : "could not be reaped";
  pid_ = -1;
}

bool SmiPowerLogger::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

std::vector<PowerSample> SmiPowerLogger::samples() const {
  std::lock_guard lock(mutex_);
  return samples_;
}

std::string SmiPowerLogger::unavailable_reason() const {
  std::lock_guard lock(mutex_);
  return unavailable_reason_;
}

std::string SmiPowerLogger::exit_description() const {
  std::lock_guard lock(mutex_);
  return exit_description_;
}

std::size_t SmiPowerLogger::unparsed_lines() const {
  std::lock_guard lock(mutex_);
  return unparsed_lines_;
}

void SmiPowerLogger::read_output() {
  pollfd fds[2] = {{stdout_fd_, POLLIN, 0}, {stderr_fd_, POLLIN, 0}};
  std::string pending_stdout;
  int open_fds = 2;
  char buffer[4096];
  while (open_fds > 0) {
    const int ready = ::poll(fds, 2, 100);
    if (ready < 0) {
      if (errno == EINTR) continue;
      break;
    }
    // Once the process is reaped, a quiet pipe means nothing more will come (a grandchild that
    // inherited the pipe must not keep us waiting).
    if (ready == 0) {
      if (stop_reader_) break;
      continue;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t n = ::read(fds[i].fd, buffer, sizeof(buffer));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[i].fd = -1;
        --open_fds;
        continue;
      }
      if (i == 1) {
        std::lock_guard lock(mutex_);
        const std::size_t room = kMaxStderrBytes - std::min(kMaxStderrBytes, stderr_text_.size());
        stderr_text_.append(buffer, std::min(room, static_cast<std::size_t>(n)));
        continue;
      }
      const double arrival = steady_now_s();
      pending_stdout.append(buffer, static_cast<std::size_t>(n));
      std::size_t newline;
      while ((newline = pending_stdout.find('\n')) != std::string::npos) {
        handle_stdout_line(std::string_view(pending_stdout).substr(0, newline), arrival);
        pending_stdout.erase(0, newline + 1);
      }
    }
  }
  if (!trim(pending_stdout).empty()) handle_stdout_line(pending_stdout, steady_now_s());
}

void SmiPowerLogger::handle_stdout_line(std::string_view line, double arrival_s) {
  if (trim(line).empty()) return;
  const std::optional<SmiLine> parsed = parse_smi_line(line);
  std::lock_guard lock(mutex_);
  if (!parsed || !parsed->power_w) {
    if (unparsed_lines_++ == 0) first_unparsed_ = std::string(trim(line));
    return;
  }
  // nvidia-smi's own timestamp says when it read the power, whatever the pipe's buffering did to
  // the arrival time. Trust it unless it is implausible (another time zone, a clock step).
  double t = *parsed->wall_time_s - wall_minus_steady_s_;
  const double slack_s = 1.0;
  if (t > arrival_s + slack_s || t < start_s_ - slack_s) t = arrival_s;
  PowerSample sample;
  sample.t_s = t;
  sample.power_w = parsed->power_w;
  samples_.push_back(sample);
}

}  // namespace eaq::measure
