#include "io/json_file.hpp"

#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace eaq {

nlohmann::json read_json_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  EAQ_CHECK(in.good(), "{}: cannot open", path.string());
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    // Translate the byte offset into a line number: users open the file in an editor.
    const std::size_t upto = std::min<std::size_t>(e.byte, text.size());
    const auto line = 1 + std::count(text.begin(), text.begin() + static_cast<long>(upto), '\n');
    fail("{}:{}: malformed JSON: {}", path.string(), line, e.what());
  }
}

}  // namespace eaq
