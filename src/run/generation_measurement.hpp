// One measured trial of greedy generation with a GPT-2 model (`eaq measure --task generation`):
// a prefill window (time to first token, energy per prompt) and a decode window (tokens per
// second, energy per generated token), each with its own energy counter reads.
#pragma once

#include <cstdint>
#include <string>

#include "model/gpt2.hpp"
#include "run/classification_measurement.hpp"

namespace eaq::run {

struct GenerationSettings {
  std::int64_t prompt_len = 128;  // --prompt-len
  std::int64_t new_tokens = 256;  // --new-tokens
  std::string prompt_text;        // --prompt-text (default: a fixed English passage)
};

struct GenerationContext {
  Backend& backend;
  Gpt2Model& model;
  const measure::GpuMeter& meter;
  const measure::RaplMeter* rapl;
  std::size_t weight_bytes;
  std::vector<std::string> command_line;
};

// The prompt: the text's tokens repeated until `prompt_len` tokens, the same for every row.
HostTensor generation_prompt(const std::filesystem::path& model_dir, const std::string& text,
                             std::int64_t prompt_len, std::int64_t batch);

report::Result run_generation_trial(const MeasureSettings& settings,
                                    const GenerationSettings& generation,
                                    GenerationContext& context);

}  // namespace eaq::run
