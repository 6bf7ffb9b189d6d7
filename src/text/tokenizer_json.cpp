// Hugging Face's tokenizer.json for the models eaq runs: a WordPiece or BPE model, the BERT
// normalizer (or none), the BERT or ByteLevel pre-tokenizer, and the Template, Bert, Roberta or
// ByteLevel post-processors. Anything else is refused by name rather than tokenized differently.
#include "core/error.hpp"
#include "io/json_file.hpp"
#include "text/tokenizer_loader.hpp"
#include "text/tokenizer_settings.hpp"

namespace eaq::text {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Reading helpers; every error names the file and the JSON path.
class JsonReader {
 public:
  explicit JsonReader(std::string file) : file_(std::move(file)) {}

  [[noreturn]] void error(const std::string& where, const std::string& what) const {
    fail("{}: {}: {}", file_, where, what);
  }
  const json& member(const json& object, const char* key, const std::string& where) const {
    if (!object.is_object() || !object.contains(key))
      error(where, fmt::format("'{}' is missing", key));
    return object[key];
  }
  bool boolean(const json& object, const char* key, bool fallback, const std::string& where) const {
    if (!object.contains(key) || object[key].is_null()) return fallback;
    if (!object[key].is_boolean()) error(where, fmt::format("'{}' must be true or false", key));
    return object[key].get<bool>();
  }
  std::optional<std::string> string_or_null(const json& object, const char* key,
                                            const std::string& where) const {
    if (!object.contains(key) || object[key].is_null()) return std::nullopt;
    if (!object[key].is_string()) error(where, fmt::format("'{}' must be a string", key));
    return object[key].get<std::string>();
  }
  std::int32_t id(const json& value, const std::string& where) const {
    if (!value.is_number_integer() || value.get<std::int64_t>() < 0 ||
        value.get<std::int64_t>() > INT32_MAX) {
      error(where, "expected a non-negative integer id");
    }
    return value.get<std::int32_t>();
  }
  const std::string& file() const { return file_; }

 private:
  std::string file_;
};

std::string type_of(const json& object) {
  if (object.is_object() && object.contains("type") && object["type"].is_string()) {
    return object["type"].get<std::string>();
  }
  return "";
}

Vocab read_vocab(const JsonReader& r, const json& model) {
  const json& entries = r.member(model, "vocab", "model");
  if (!entries.is_object()) r.error("model.vocab", "expected an object mapping tokens to ids");
  Vocab vocab;
  for (const auto& [token, id] : entries.items()) {
    vocab.add(token, r.id(id, "model.vocab[\"" + token + "\"]"), r.file());
  }
  return vocab;
}

std::vector<BpeMerge> read_merges(const JsonReader& r, const json& model) {
  const json& entries = r.member(model, "merges", "model");
  if (!entries.is_array()) r.error("model.merges", "expected an array");
  std::vector<BpeMerge> merges;
  merges.reserve(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const json& entry = entries[i];
    const std::string where = fmt::format("model.merges[{}]", i);
    if (entry.is_string()) {  // "left right" (tokenizers < 0.20)
      const std::string text = entry.get<std::string>();
      const std::size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        r.error(where, "expected two tokens separated by one space");
      }
      merges.push_back({text.substr(0, space), text.substr(space + 1)});
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {  // ["left", "right"]
      merges.push_back({entry[0].get<std::string>(), entry[1].get<std::string>()});
    } else {
      r.error(where, "expected \"left right\" or [\"left\", \"right\"]");
    }
  }
  return merges;
}

void read_model(const JsonReader& r, const json& model, TokenizerParts& parts) {
  std::string type = type_of(model);
  if (type.empty()) {  // old files leave the model type out
    type = model.contains("merges")                     ? "BPE"
           : model.contains("max_input_chars_per_word") ? "WordPiece"
                                                        : "";
  }
  if (type == "WordPiece") {
    const auto unk = r.string_or_null(model, "unk_token", "model").value_or("[UNK]");
    const auto prefix =
        r.string_or_null(model, "continuing_subword_prefix", "model").value_or("##");
    std::size_t max_chars = 100;
    if (model.contains("max_input_chars_per_word")) {
      max_chars = static_cast<std::size_t>(
          r.id(model["max_input_chars_per_word"], "model.max_input_chars_per_word"));
    }
    parts.wordpiece =
        std::make_shared<const WordPieceModel>(read_vocab(r, model), unk, prefix, max_chars);
  } else if (type == "BPE") {
    if (model.contains("dropout") && !model["dropout"].is_null() &&
        !(model["dropout"].is_number() && model["dropout"].get<double>() == 0.0)) {
      r.error("model.dropout", "BPE dropout is random; eaq needs deterministic tokens");
    }
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const auto value = r.string_or_null(model, key, "model");
      if (value && !value->empty())
        r.error("model", fmt::format("'{}' is not supported by eaq's BPE", key));
    }
    if (r.boolean(model, "byte_fallback", false, "model")) {
      r.error("model.byte_fallback", "byte fallback is not supported by eaq's BPE");
    }
    parts.bpe = std::make_shared<const BpeModel>(
        read_vocab(r, model), read_merges(r, model), r.string_or_null(model, "unk_token", "model"),
        r.boolean(model, "fuse_unk", false, "model"),
        r.boolean(model, "ignore_merges", false, "model"), r.file());
  } else {
    r.error("model.type", fmt::format("model type '{}' is not supported (WordPiece or BPE)", type));
  }
}

// A "Sequence" of zero or one steps is the step itself (or nothing).
const json& unwrap_sequence(const JsonReader& r, const json& step, const char* list_key,
                            const char* where) {
  static const json null_step;
  if (type_of(step) != "Sequence") return step;
  const json& steps = r.member(step, list_key, where);
  if (!steps.is_array() || steps.size() > 1) {
    r.error(where, "a Sequence of more than one step is not supported");
  }
  return steps.empty() ? null_step : steps[0];
}

void read_normalizer(const JsonReader& r, const json& sequence_or_step, TokenizerParts& parts) {
  const json& normalizer = unwrap_sequence(r, sequence_or_step, "normalizers", "normalizer");
  if (normalizer.is_null()) return;
  const std::string type = type_of(normalizer);
  if (type != "BertNormalizer") {
    r.error("normalizer",
            fmt::format("normalizer '{}' is not supported (BertNormalizer or none)", type));
  }
  BertNormalizer bert;
  bert.clean_text = r.boolean(normalizer, "clean_text", true, "normalizer");
  bert.handle_chinese_chars = r.boolean(normalizer, "handle_chinese_chars", true, "normalizer");
  bert.lowercase = r.boolean(normalizer, "lowercase", true, "normalizer");
  if (normalizer.contains("strip_accents") && !normalizer["strip_accents"].is_null()) {
    bert.strip_accents = r.boolean(normalizer, "strip_accents", false, "normalizer");
  }
  parts.normalizer = bert;
}

void read_pre_tokenizer(const JsonReader& r, const json& sequence_or_step, TokenizerParts& parts) {
  const json& pre_tokenizer =
      unwrap_sequence(r, sequence_or_step, "pretokenizers", "pre_tokenizer");
  if (pre_tokenizer.is_null()) {
    parts.pre_tokenizer = PreTokenizerKind::None;
    return;
  }
  const std::string type = type_of(pre_tokenizer);
  if (type == "BertPreTokenizer") {
    parts.pre_tokenizer = PreTokenizerKind::Bert;
  } else if (type == "ByteLevel") {
    parts.pre_tokenizer = PreTokenizerKind::ByteLevel;
    parts.byte_level.add_prefix_space =
        r.boolean(pre_tokenizer, "add_prefix_space", true, "pre_tokenizer");
    parts.byte_level.use_regex = r.boolean(pre_tokenizer, "use_regex", true, "pre_tokenizer");
  } else {
    r.error("pre_tokenizer",
            fmt::format("pre-tokenizer '{}' is not supported (BertPreTokenizer, ByteLevel or none)",
                        type));
  }
}

// A token named in a processor, as [token, id].
std::int32_t processor_token(const JsonReader& r, const json& processor, const char* key) {
  const json& pair = r.member(processor, key, "post_processor");
  if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string()) {
    r.error(fmt::format("post_processor.{}", key), "expected [token, id]");
  }
  return r.id(pair[1], fmt::format("post_processor.{}", key));
}

std::vector<TemplatePiece> read_template(const JsonReader& r, const json& processor,
                                         const char* key) {
  const json& pieces = r.member(processor, key, "post_processor");
  const json& special_tokens = r.member(processor, "special_tokens", "post_processor");
  if (!pieces.is_array()) r.error(fmt::format("post_processor.{}", key), "expected an array");
  std::vector<TemplatePiece> out;
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    const std::string where = fmt::format("post_processor.{}[{}]", key, i);
    const json& piece = pieces[i];
    TemplatePiece result;
    if (piece.contains("Sequence")) {
      const json& sequence = piece["Sequence"];
      const std::string id = sequence.value("id", "A");
      if (id != "A" && id != "B") r.error(where, "a sequence must be A or B");
      result.kind = id == "A" ? TemplatePiece::Kind::SequenceA : TemplatePiece::Kind::SequenceB;
      result.type_id = r.id(r.member(sequence, "type_id", where), where);
    } else if (piece.contains("SpecialToken")) {
      const json& special = piece["SpecialToken"];
      const json& name = r.member(special, "id", where);
      if (!name.is_string() || !special_tokens.contains(name.get<std::string>())) {
        r.error(where, "names a special token that special_tokens does not define");
      }
      const json& ids = r.member(special_tokens[name.get<std::string>()], "ids", where);
      if (!ids.is_array()) r.error(where, "special token ids must be an array");
      result.kind = TemplatePiece::Kind::Special;
      for (const json& id : ids) result.special_ids.push_back(r.id(id, where));
      result.type_id = r.id(r.member(special, "type_id", where), where);
    } else {
      r.error(where, "expected a Sequence or a SpecialToken");
    }
    out.push_back(std::move(result));
  }
  return out;
}

// Returns true when the processor sets special tokens (at most one may, in a Sequence).
bool read_post_processor(const JsonReader& r, const json& processor, TokenizerParts& parts) {
  if (processor.is_null()) return false;
  const std::string type = type_of(processor);
  using Kind = TemplatePiece::Kind;
  if (type == "ByteLevel") return false;  // offsets only
  if (type == "TemplateProcessing") {
    parts.post_processor =
        PostProcessor(read_template(r, processor, "single"), read_template(r, processor, "pair"));
    return true;
  }
  if (type == "BertProcessing") {
    parts.post_processor = PostProcessor::bert(processor_token(r, processor, "cls"),
                                               processor_token(r, processor, "sep"));
    return true;
  }
  if (type == "RobertaProcessing") {
    const std::int32_t cls = processor_token(r, processor, "cls");
    const std::int32_t sep = processor_token(r, processor, "sep");
    parts.post_processor = PostProcessor(
        {{Kind::Special, {cls}, 0}, {Kind::SequenceA, {}, 0}, {Kind::Special, {sep}, 0}},
        {{Kind::Special, {cls}, 0},
         {Kind::SequenceA, {}, 0},
         {Kind::Special, {sep, sep}, 0},
         {Kind::SequenceB, {}, 0},
         {Kind::Special, {sep}, 0}});
    return true;
  }
  if (type == "Sequence") {
    const json& processors = r.member(processor, "processors", "post_processor");
    if (!processors.is_array()) r.error("post_processor.processors", "expected an array");
    int with_special_tokens = 0;
    for (const json& inner : processors)
      with_special_tokens += read_post_processor(r, inner, parts) ? 1 : 0;
    if (with_special_tokens > 1)
      r.error("post_processor", "more than one processor adds special tokens");
    return with_special_tokens == 1;
  }
  r.error("post_processor", fmt::format("post-processor '{}' is not supported", type));
}

std::vector<AddedToken> read_added_tokens(const JsonReader& r, const json& root) {
  std::vector<AddedToken> tokens;
  if (!root.contains("added_tokens") || root["added_tokens"].is_null()) return tokens;
  const json& entries = root["added_tokens"];
  if (!entries.is_array()) r.error("added_tokens", "expected an array");
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const std::string where = fmt::format("added_tokens[{}]", i);
    const json& entry = entries[i];
    AddedToken token;
    token.id = r.id(r.member(entry, "id", where), where);
    const json& content = r.member(entry, "content", where);
    if (!content.is_string()) r.error(where, "'content' must be a string");
    token.content = content.get<std::string>();
    token.special = r.boolean(entry, "special", false, where);
    token.normalized = r.boolean(entry, "normalized", !token.special, where);
    token.lstrip = r.boolean(entry, "lstrip", false, where);
    token.rstrip = r.boolean(entry, "rstrip", false, where);
    token.single_word = r.boolean(entry, "single_word", false, where);
    tokens.push_back(std::move(token));
  }
  return tokens;
}

}  // namespace

Tokenizer load_tokenizer_json(const fs::path& tokenizer_json, const fs::path& folder) {
  const JsonReader r(tokenizer_json.string());
  const json root = read_json_file(tokenizer_json);
  if (!root.is_object()) r.error("top level", "expected a JSON object");
  const TokenizerSettings settings = read_tokenizer_settings(folder);

  TokenizerParts parts;
  {
    const fs::path normal = folder.lexically_normal();
    parts.name = normal.filename().empty() ? normal.parent_path().filename().string()
                                           : normal.filename().string();
    if (parts.name.empty() || parts.name == ".")
      parts.name = fs::absolute(folder).filename().string();
  }
  parts.source = tokenizer_json.string();
  read_model(r, r.member(root, "model", "top level"), parts);
  read_normalizer(r, root.value("normalizer", json()), parts);
  read_pre_tokenizer(r, root.value("pre_tokenizer", json()), parts);
  read_post_processor(r, root.value("post_processor", json()), parts);
  parts.added_tokens = read_added_tokens(r, root);
  parts.model_max_length = settings.model_max_length;

  // As transformers' BertTokenizerFast and GPT2TokenizerFast do, settings written in
  // tokenizer_config.json win over the ones inside tokenizer.json.
  if (parts.normalizer) {
    if (settings.do_lower_case) parts.normalizer->lowercase = *settings.do_lower_case;
    if (settings.strip_accents) parts.normalizer->strip_accents = settings.strip_accents;
    if (settings.tokenize_chinese_chars) {
      parts.normalizer->handle_chinese_chars = *settings.tokenize_chinese_chars;
    }
  }
  if (parts.pre_tokenizer == PreTokenizerKind::ByteLevel && settings.add_prefix_space) {
    parts.byte_level.add_prefix_space = *settings.add_prefix_space;
  }

  // The padding token: tokenizer.json's padding section, else tokenizer_config.json.
  if (root.contains("padding") && root["padding"].is_object()) {
    parts.pad_token = r.string_or_null(root["padding"], "pad_token", "padding");
  }
  if (!parts.pad_token) parts.pad_token = settings.special("pad_token");
  return Tokenizer(std::move(parts));
}

}  // namespace eaq::text
