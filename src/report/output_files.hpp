// Where a trial's files go and how they are written: results/<precision>/trial_<N>_<timestamp>
// .{csv,json} like the seed, an --output override, a writability check made BEFORE the run, and
// atomic writes (temp file in the same folder, fsync, rename) so a crash never leaves half a file.
#pragma once

#include <filesystem>
#include <string_view>

#include "report/result.hpp"

namespace eaq::report {

struct OutputPaths {
  std::filesystem::path csv;
  std::filesystem::path json;
};

// <results_root>/<precision>/trial_<trial>_<timestamp>.{csv,json}. Throws eaq::Error when the
// precision is not a plain folder name or the trial is negative.
OutputPaths default_output_paths(const std::filesystem::path& results_root,
                                 std::string_view precision, int trial, std::string_view timestamp);

// The --output flag:
//   ""                              -> default_output_paths(results_root, ...)
//   "x/run.csv"                     -> x/run.csv and x/run.json beside it
//   "x/run.json"                    -> x/run.json and x/run.csv beside it
//   "x/dir/" or an existing folder  -> x/dir/trial_<N>_<timestamp>.{csv,json}
//   anything else (x/run.txt, x/run) -> eaq::Error explaining the choices
OutputPaths resolve_output_paths(std::string_view output_flag, std::string_view precision,
                                 int trial, std::string_view timestamp,
                                 const std::filesystem::path& results_root = "results");

// For automatic names: when either file exists (two trials in the same second), appends _2, _3,
// ... to the stem until both names are free.
OutputPaths avoid_existing(const OutputPaths& paths);

// Creates `dir` (and parents) and proves it writable by creating and removing a file in it.
// Throws eaq::Error naming the folder and the cause. Call it before the run starts.
void ensure_writable_output_dir(const std::filesystem::path& dir);

// Writes `content` to a temporary file in the same folder, fsyncs it and renames it over `path`,
// then fsyncs the folder. Readers see the old file or the whole new one, never a partial one.
void write_file_atomic(const std::filesystem::path& path, std::string_view content);

// Both files of a trial (CSV first, then JSON), each atomically.
void write_result_files(const Result& result, const OutputPaths& paths);

}  // namespace eaq::report
