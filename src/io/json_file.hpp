// Reading JSON files with errors that name the file (and the line, for syntax errors).
#pragma once

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace eaq {

nlohmann::json read_json_file(const std::filesystem::path& path);

}  // namespace eaq
