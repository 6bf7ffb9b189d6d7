// `eaq perplexity`: perplexity and bits per byte of a causal language model (GPT-2) on a text
// file (tokenized with the model's own tokenizer) or on token ids from a .npy file, by Hugging
// Face's sliding-window method (see run/perplexity.hpp).
#include <fmt/format.h>

#include <fstream>
#include <iterator>

#include "backend/factory.hpp"
#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/model_folder.hpp"
#include "io/npy.hpp"
#include "model/gpt2.hpp"
#include "model/gpt2_config.hpp"
#include "run/perplexity.hpp"
#include "text/tokenizer_loader.hpp"
#include "text/unicode.hpp"

namespace eaq::cli {
namespace {

struct PerplexityArgs {
  std::string model;
  std::string text;
  std::string ids;
  std::int64_t context = 0;
  std::int64_t stride = 0;
  std::int64_t max_tokens = 0;
  std::string device = "cpu";
  std::string precision = "fp32";
  int gpu_id = 0;
};

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EAQ_CHECK(in.good(), "--text {}: cannot open the file", path);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EAQ_CHECK(!text.empty(), "--text {}: the file is empty; perplexity needs at least 2 tokens",
            path);
  return text;
}

std::vector<std::int32_t> read_ids_npy(const std::string& path) {
  const HostTensor t = read_npy(path);
  EAQ_CHECK(t.dtype() == DType::I32 || t.dtype() == DType::I64,
            "--ids {}: dtype {} is not supported; save int32 or int64 token ids", path,
            dtype_name(t.dtype()));
  EAQ_CHECK(t.rank() == 1 || (t.rank() == 2 && t.dim(0) == 1),
            "--ids {}: expected token ids of shape [N] or [1, N], got {}", path,
            shape_str(t.shape()));
  std::vector<std::int32_t> ids;
  for (std::int64_t v : t.to_i64()) {
    EAQ_CHECK(v >= 0 && v <= INT32_MAX, "--ids {}: token id {} is negative or too large", path, v);
    ids.push_back(static_cast<std::int32_t>(v));
  }
  return ids;
}

// The UTF-8 bytes a byte-level BPE token stands for: one per character of its vocabulary string
// (each character encodes one byte; added tokens such as <|endoftext|> are printable ASCII).
std::int64_t token_bytes(const text::Tokenizer& tokenizer, std::int32_t id) {
  const std::string* token = tokenizer.id_to_token(id);
  EAQ_CHECK(token != nullptr, "token id {} is not in the tokenizer {}", id, tokenizer.source());
  return static_cast<std::int64_t>(text::decode_utf8(*token).size());
}

int run_perplexity(const PerplexityArgs& args) {
  EAQ_CHECK(args.text.empty() != args.ids.empty(), "give exactly one of --text and --ids");
  EAQ_CHECK(args.max_tokens == 0 || args.max_tokens >= 2, "--max-tokens {}: must be at least 2",
            args.max_tokens);
  const std::filesystem::path folder = resolve_model_path(args.model);
  const std::string model_type = model_type_of(folder);
  EAQ_CHECK(model_type == "gpt2",
            "--model {}: model_type \"{}\" is not a causal language model; eaq perplexity needs a "
            "GPT-2 (model_type \"gpt2\")",
            args.model, model_type);

  std::vector<std::int32_t> ids;
  std::int64_t bytes = 0;  // 0: unknown (ids given without their text)
  std::string source;
  if (!args.text.empty()) {
    const std::string text = read_text_file(args.text);
    const text::Tokenizer tokenizer = text::load_tokenizer(folder);
    EAQ_CHECK(tokenizer.model_kind() == "bpe",
              "--model {}: its tokenizer ({}) is not a byte-level BPE tokenizer", args.model,
              tokenizer.source());
    try {
      ids = tokenizer.tokenize(text);
    } catch (const Error& e) {
      fail("--text {}: {}", args.text, e.what());
    }
    bytes = static_cast<std::int64_t>(text.size());
    if (args.max_tokens > 0 && static_cast<std::int64_t>(ids.size()) > args.max_tokens) {
      ids.resize(static_cast<std::size_t>(args.max_tokens));
      bytes = 0;
      for (std::int32_t id : ids) bytes += token_bytes(tokenizer, id);
    }
    source = fmt::format(
        "{} ({} bytes{})", args.text, bytes,
        args.max_tokens > 0 && bytes < static_cast<std::int64_t>(text.size())
            ? fmt::format(" of {}, cut at --max-tokens {}", text.size(), args.max_tokens)
            : "");
  } else {
    ids = read_ids_npy(args.ids);
    if (args.max_tokens > 0 && static_cast<std::int64_t>(ids.size()) > args.max_tokens) {
      ids.resize(static_cast<std::size_t>(args.max_tokens));
    }
    source = args.ids;
  }
  EAQ_CHECK(ids.size() >= 2, "{}: {} token{}; perplexity needs at least 2", source, ids.size(),
            ids.size() == 1 ? "" : "s");

  BackendOptions backend_options;
  backend_options.device = args.device;
  backend_options.precision = parse_precision(args.precision);
  backend_options.gpu_id = args.gpu_id;
  std::unique_ptr<Backend> backend = make_backend(backend_options);
  std::unique_ptr<Gpt2Model> model = Gpt2Model::load(folder, *backend);
  const run::PerplexityResult r = run::evaluate_perplexity(*model, ids, args.context, args.stride);

  fmt::print("model:            {} ({}, {} layers, n_positions {}) on {}, {}\n", folder.string(),
             model->config().architecture, model->config().layers, model->config().positions,
             backend->name(), precision_name(backend->precision()));
  fmt::print("input:            {}, {} tokens\n", source, ids.size());
  fmt::print("windows:          {} (context {}, stride {})\n", r.windows.size(), r.context,
             r.stride);
  fmt::print("tokens evaluated: {}\n", r.exact_tokens);
  fmt::print(
      "perplexity:       {:.6f} (every token scored once: exp(total NLL / tokens evaluated))\n",
      r.exact_perplexity);
  fmt::print(
      "perplexity (doc): {:.6f} (Hugging Face docs' loop: window mean NLL weighted by "
      "trg_len - 1, {} tokens)\n",
      r.doc_perplexity, r.doc_tokens);
  fmt::print("NLL:              {:.6f} nats total, {:.6f} nats per token\n", r.exact_nll_sum,
             r.exact_nll_sum / static_cast<double>(r.exact_tokens));
  if (bytes > 0) {
    fmt::print("bits per byte:    {:.6f} (total NLL in bits / {} UTF-8 bytes)\n",
               run::bits_per_byte(r.exact_nll_sum, bytes), bytes);
  } else {
    fmt::print("bits per byte:    n/a (token ids given without their text)\n");
  }
  return 0;
}

}  // namespace

Command perplexity_command() {
  return {
      "perplexity",
      "Perplexity and bits per byte of a causal language model (GPT-2) on a text, by Hugging "
      "Face's sliding-window method",
      [](CLI::App& app) {
        auto args = std::make_shared<PerplexityArgs>();
        app.add_option("--model", args->model,
                       "Model folder (Hugging Face layout) or hub name in the local cache")
            ->required();
        app.add_option("--text", args->text,
                       "UTF-8 text file, tokenized whole with the model's tokenizer");
        app.add_option("--ids", args->ids,
                       "int32/int64 .npy of token ids [N] or [1, N] (instead of --text)");
        app.add_option("--context", args->context,
                       "window length in tokens (0: the model's n_positions)");
        app.add_option("--stride", args->stride, "tokens between window starts (0: context / 2)");
        app.add_option("--max-tokens", args->max_tokens,
                       "evaluate only the first N tokens (0: all)");
        app.add_option("--device", args->device, "cpu or cuda");
        app.add_option("--precision", args->precision,
                       "fp32, tf32, fp16, fp16-autocast, bf16, int8, int8-static, int8-wo, fp8");
        app.add_option("--gpu-id", args->gpu_id, "CUDA device index");
        return std::function<int()>([args] { return run_perplexity(*args); });
      }};
}

}  // namespace eaq::cli
