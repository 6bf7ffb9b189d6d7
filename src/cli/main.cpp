// eaq: measure what quantization buys on a GPU. Entry point: dispatches to subcommands.
#include <fmt/format.h>

#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "core/build_info.hpp"
#include "core/error.hpp"

namespace eaq::cli {

namespace {
std::vector<std::string> g_command_line;
}  // namespace

const std::vector<std::string>& command_line() {
  return g_command_line;
}

const std::vector<Command>& all_commands() {
  static const std::vector<Command> commands = {
      calibrate_command(), measure_command(),    forward_command(),
      info_command(),      perplexity_command(), tokenize_command(),
  };
  return commands;
}

}  // namespace eaq::cli

int main(int argc, char** argv) {
  eaq::cli::g_command_line.assign(argv, argv + argc);
  CLI::App app{
      "eaq: accuracy, latency, throughput, power and energy per inference of transformer "
      "models across precisions"};
  app.set_version_flag("--version", std::string(eaq::build_info().version) + " (" +
                                        eaq::build_info().git_commit + ")");
  app.require_subcommand(1);
  app.option_defaults()->always_capture_default();

  std::function<int()> run;
  for (const auto& command : eaq::cli::all_commands()) {
    CLI::App* sub = app.add_subcommand(command.name, command.description);
    sub->option_defaults()->always_capture_default();
    auto action = command.setup(*sub);
    sub->callback([&run, action] { run = action; });
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return run();
  } catch (const eaq::Error& e) {
    fmt::print(stderr, "eaq: error: {}\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    fmt::print(stderr, "eaq: unexpected error: {}\n", e.what());
    return 2;
  }
}
