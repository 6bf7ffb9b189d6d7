// The `eaq` subcommands. Each lives in its own file and registers its flags on a CLI11 subcommand;
// the flag definitions drive parsing, --help (with defaults) and the configuration we record.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace eaq::cli {

// A subcommand: `setup` declares flags on `app` and returns what to run once they are parsed.
struct Command {
  std::string name;
  std::string description;
  std::function<std::function<int()>(CLI::App& app)> setup;
};

const std::vector<Command>& all_commands();

// The process's argv, recorded by main() for result metadata.
const std::vector<std::string>& command_line();

// One registration line per command file.
Command calibrate_command();
Command info_command();
Command forward_command();
Command measure_command();
Command tokenize_command();
Command perplexity_command();

}  // namespace eaq::cli
