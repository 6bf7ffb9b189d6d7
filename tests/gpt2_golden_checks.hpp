// The GPT-2 parity checks against Hugging Face's golden fixtures (tests/golden/gpt2_*, made by
// tools/make_golden.py), written once for any backend: the CPU tests and the CUDA tests run them.
#pragma once

#include <string>

#include "backend/backend.hpp"

namespace eaq::test {

struct Gpt2Tolerance {
  double logits = 1e-4;      // max|ours - HF| / max|HF|
  double perplexity = 1e-4;  // relative
  bool tokens = true;        // greedy tokens must be identical
};

// Every check the fixture's reference.safetensors supports: full logits, the left-padded batch
// (positions whose mask is 1), KV-cache prefill and steps (plain and left-padded), greedy tokens
// (direct and graph-replayed steps) and the sliding-window perplexity. Prints measured errors
// with the "[ decoder   ]" tag.
void check_gpt2_fixture(Backend& backend, const std::string& fixture,
                        const Gpt2Tolerance& tolerance);

// models/gpt2-mini against tests/golden/bundled/gpt2_reference.safetensors: logits at the stored
// positions and the per-token NLL of its 64 tokens.
void check_bundled_gpt2(Backend& backend, const Gpt2Tolerance& tolerance);

}  // namespace eaq::test
