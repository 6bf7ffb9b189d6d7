#include "text/tokenizer_loader.hpp"

#include "core/error.hpp"
#include "io/json_file.hpp"
#include "text/tokenizer_settings.hpp"
#include "text/unicode.hpp"

namespace eaq::text {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string folder_name(const fs::path& folder) {
  const fs::path normal = folder.lexically_normal();
  std::string name = normal.filename().string();
  if (name.empty()) name = normal.parent_path().filename().string();  // "dir/" -> "dir"
  return name.empty() ? normal.string() : name;
}

// Lines of a text file, '\n'-separated, a trailing '\r' removed, no empty last line; each must
// be valid UTF-8 (the error names the line).
std::vector<std::string> read_lines(const fs::path& path) {
  const std::string text = read_text_file(path);
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (const auto bad = find_invalid_utf8(line)) {
      fail("{}:{}: invalid UTF-8 at byte {} of the line", path.string(), lines.size() + 1,
           *bad + 1);
    }
    lines.push_back(std::move(line));
    start = end + 1;
  }
  return lines;
}

// The special tokens of a classic folder, as added tokens: the vocabulary's id when the token is
// in it, otherwise the next free id (as transformers adds a missing special token).
std::vector<AddedToken> special_added_tokens(const std::vector<std::string>& contents,
                                             const Vocab& vocab) {
  std::vector<AddedToken> tokens;
  std::int32_t next_id = vocab.id_bound();
  for (const std::string& content : contents) {
    bool seen = false;
    for (const AddedToken& token : tokens) seen = seen || token.content == content;
    if (seen) continue;
    AddedToken token;
    token.content = content;
    token.special = true;
    const auto id = vocab.find(content);
    token.id = id ? *id : next_id++;
    tokens.push_back(token);
  }
  return tokens;
}

bool is_wordpiece_model_type(const std::string& type) {
  return type == "bert" || type == "distilbert";
}

}  // namespace

Tokenizer load_wordpiece_vocab(const fs::path& vocab_txt, const fs::path& folder) {
  const TokenizerSettings settings = read_tokenizer_settings(folder);
  Vocab vocab;
  const std::vector<std::string> lines = read_lines(vocab_txt);
  EAQ_CHECK(!lines.empty(), "{} is empty", vocab_txt.string());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    vocab.add(lines[i], static_cast<std::int32_t>(i), vocab_txt.string());
  }

  const std::string unk = settings.special("unk_token").value_or("[UNK]");
  const std::string sep = settings.special("sep_token").value_or("[SEP]");
  const std::string pad = settings.special("pad_token").value_or("[PAD]");
  const std::string cls = settings.special("cls_token").value_or("[CLS]");
  const std::string mask = settings.special("mask_token").value_or("[MASK]");
  for (const std::string* token : {&unk, &sep, &cls}) {
    EAQ_CHECK(vocab.contains(*token), "{}: the special token '{}' is not in the vocabulary",
              vocab_txt.string(), *token);
  }

  TokenizerParts parts;
  parts.name = folder_name(folder);
  parts.source = vocab_txt.string();
  BertNormalizer normalizer;
  normalizer.lowercase = settings.do_lower_case.value_or(true);
  normalizer.strip_accents = settings.strip_accents;
  normalizer.handle_chinese_chars = settings.tokenize_chinese_chars.value_or(true);
  parts.normalizer = normalizer;
  parts.pre_tokenizer = PreTokenizerKind::Bert;
  parts.added_tokens = special_added_tokens({pad, unk, cls, sep, mask}, vocab);
  parts.post_processor = PostProcessor::bert(*vocab.find(cls), *vocab.find(sep));
  parts.pad_token = pad;
  parts.model_max_length = settings.model_max_length;
  parts.wordpiece = std::make_shared<const WordPieceModel>(std::move(vocab), unk);
  return Tokenizer(std::move(parts));
}

Tokenizer load_gpt2_bpe(const fs::path& vocab_json, const fs::path& merges_txt,
                        const fs::path& folder) {
  const TokenizerSettings settings = read_tokenizer_settings(folder);
  const json root = read_json_file(vocab_json);
  EAQ_CHECK(root.is_object() && !root.empty(), "{}: expected a JSON object mapping tokens to ids",
            vocab_json.string());
  Vocab vocab;
  for (const auto& [token, id] : root.items()) {
    EAQ_CHECK(id.is_number_integer(), "{}: the id of '{}' is not an integer", vocab_json.string(),
              token);
    vocab.add(token, id.get<std::int32_t>(), vocab_json.string());
  }

  std::vector<BpeMerge> merges;
  const std::vector<std::string> lines = read_lines(merges_txt);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    if (line.rfind("#version", 0) == 0) continue;
    const std::size_t space = line.find(' ');
    EAQ_CHECK(space != std::string::npos && space > 0 && space + 1 < line.size() &&
                  line.find(' ', space + 1) == std::string::npos,
              "{}:{}: expected two tokens separated by one space, got '{}'", merges_txt.string(),
              i + 1, line);
    merges.push_back({line.substr(0, space), line.substr(space + 1)});
  }

  const std::string eos = settings.special("eos_token").value_or("<|endoftext|>");
  const std::string bos = settings.special("bos_token").value_or("<|endoftext|>");
  const std::string unk = settings.special("unk_token").value_or("<|endoftext|>");
  std::vector<std::string> specials = {bos, eos, unk};
  const auto pad = settings.special("pad_token");
  if (pad) specials.push_back(*pad);

  TokenizerParts parts;
  parts.name = folder_name(folder);
  parts.source = vocab_json.string() + " + " + merges_txt.string();
  parts.pre_tokenizer = PreTokenizerKind::ByteLevel;
  parts.byte_level.add_prefix_space = settings.add_prefix_space.value_or(false);
  parts.added_tokens = special_added_tokens(specials, vocab);
  parts.pad_token = pad;
  parts.model_max_length = settings.model_max_length;
  parts.bpe = std::make_shared<const BpeModel>(std::move(vocab), merges, std::nullopt, false, false,
                                               parts.source);
  return Tokenizer(std::move(parts));
}

Tokenizer load_tokenizer(const fs::path& folder_or_file) {
  EAQ_CHECK(fs::exists(folder_or_file), "tokenizer path {} does not exist",
            folder_or_file.string());
  if (fs::is_regular_file(folder_or_file)) {
    EAQ_CHECK(folder_or_file.extension() == ".json",
              "{}: give a tokenizer folder or a tokenizer.json file", folder_or_file.string());
    const fs::path parent = folder_or_file.has_parent_path() ? folder_or_file.parent_path() : ".";
    return load_tokenizer_json(folder_or_file, parent);
  }
  const fs::path& folder = folder_or_file;
  if (fs::is_regular_file(folder / "tokenizer.json")) {
    return load_tokenizer_json(folder / "tokenizer.json", folder);
  }
  const bool has_wordpiece = fs::is_regular_file(folder / "vocab.txt");
  const bool has_bpe =
      fs::is_regular_file(folder / "vocab.json") && fs::is_regular_file(folder / "merges.txt");
  const std::optional<std::string> model_type = read_model_type(folder);
  if (model_type) {
    if (*model_type == "gpt2") {
      EAQ_CHECK(has_bpe,
                "{}: config.json says model_type 'gpt2' but there is no tokenizer.json "
                "and no vocab.json + merges.txt",
                folder.string());
      return load_gpt2_bpe(folder / "vocab.json", folder / "merges.txt", folder);
    }
    if (is_wordpiece_model_type(*model_type)) {
      EAQ_CHECK(has_wordpiece,
                "{}: config.json says model_type '{}' but there is no "
                "tokenizer.json and no vocab.txt",
                folder.string(), *model_type);
      return load_wordpiece_vocab(folder / "vocab.txt", folder);
    }
    fail(
        "{}: no tokenizer.json, and eaq reads the classic tokenizer files only for BERT, "
        "DistilBERT and GPT-2 (config.json says model_type '{}')",
        folder.string(), *model_type);
  }
  EAQ_CHECK(!(has_wordpiece && has_bpe),
            "{}: both vocab.txt and vocab.json + merges.txt are here; add a config.json with "
            "model_type to say which tokenizer this is",
            folder.string());
  if (has_wordpiece) return load_wordpiece_vocab(folder / "vocab.txt", folder);
  if (has_bpe) return load_gpt2_bpe(folder / "vocab.json", folder / "merges.txt", folder);
  fail("{}: no tokenizer files (tokenizer.json, vocab.txt, or vocab.json + merges.txt)",
       folder.string());
}

}  // namespace eaq::text
