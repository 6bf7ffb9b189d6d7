// The CUDA backend against the CPU reference on whole encoders: a tolerance per precision,
// golden Hugging Face fixtures in fp32, CUDA graph replay, and argmax agreement at DistilBERT's
// default shape.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "backend/cpu/cpu_backend.hpp"
#include "cuda_test_util.hpp"
#include "golden.hpp"
#include "io/safetensors.hpp"
#include "model/encoder.hpp"
#include "random_models.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

// max |gpu - cpu| / max |cpu| on logits, per precision (llm.c-style tolerance table).
const std::map<Precision, double> kLogitTolerance = {
    {Precision::Fp32, 1e-4},         {Precision::Tf32, 5e-3}, {Precision::Fp16, 1e-2},
    {Precision::Fp16Autocast, 1e-2}, {Precision::Bf16, 5e-2},
};

struct Inputs {
  HostTensor ids, mask;
};

Inputs random_inputs(int batch, int seq, int vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(batch * seq)), mask(ids.size(), 1);
  for (int b = 0; b < batch; ++b) {
    const int length = seq - (b * 7) % (seq / 2);  // rows of different lengths
    for (int t = 0; t < seq; ++t) {
      ids[b * seq + t] = t < length ? static_cast<std::int32_t>(rng() % vocab) : 0;
      mask[b * seq + t] = t < length ? 1 : 0;
    }
  }
  return {HostTensor::from_i32({batch, seq}, ids), HostTensor::from_i32({batch, seq}, mask)};
}

HostTensor logits_on(Backend& backend, EncoderModel& model, const Inputs& in, bool use_graph) {
  EncoderBatch batch;
  batch.input_ids = backend.upload(in.ids, DType::I32);
  batch.attention_mask = backend.upload(in.mask, DType::I32);
  EncoderOutputs out = model.forward(batch);
  if (use_graph) {
    // Poison the logits, replay a captured forward, and read them again.
    DeviceTensor poison =
        backend.upload(HostTensor::from_f32(
                           out.logits.shape,
                           std::vector<float>(static_cast<std::size_t>(out.logits.numel()), 1e4f)),
                       out.logits.dtype);
    backend.copy(poison, out.logits);
    backend.release(poison);
    auto graph = backend.capture([&] { model.forward(batch); });
    graph->launch();
    graph->launch();
  }
  HostTensor logits = backend.download(out.logits);
  backend.release(batch.input_ids);
  backend.release(batch.attention_mask);
  return logits;
}

class CudaEncoder : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaEncoder, EveryFloatPrecisionWithinTolerance) {
  test::TempDir dir;
  test::RandomEncoderSpec spec;
  spec.model_type = GetParam();
  spec.hidden = 128;
  spec.heads = 2;  // head_dim 64: the tensor-core attention path in f16/bf16
  spec.intermediate = 256;
  spec.layers = 3;
  spec.vocab = 500;
  spec.positions = 128;
  spec.weight_scale = 0.1f;
  test::write_random_encoder(dir.path(), spec);
  const Inputs in = random_inputs(4, 64, spec.vocab, 5);

  auto cpu = make_cpu_backend(Precision::Fp32);
  auto reference_model = EncoderModel::load(dir.path(), *cpu);
  const HostTensor expected = logits_on(*cpu, *reference_model, in, false);

  for (const auto& [precision, tolerance] : kLogitTolerance) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto model = EncoderModel::load(dir.path(), *gpu);
    const HostTensor direct = logits_on(*gpu, *model, in, false);
    const HostTensor graphed = logits_on(*gpu, *model, in, true);
    const double error = test::max_relative_error(direct, expected);
    std::printf("[ encoder   ] %-10s %-14s logits rel. error %.2e (tolerance %.0e)\n",
                GetParam().c_str(), std::string(precision_name(precision)).c_str(), error,
                tolerance);
    EXPECT_LE(error, tolerance) << precision_name(precision);
    EXPECT_EQ(test::max_relative_error(graphed, direct), 0.0) << "graph replay differs";
  }
}

INSTANTIATE_TEST_SUITE_P(Architectures, CudaEncoder, ::testing::Values("distilbert", "bert"));

class CudaGolden : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaGolden, Fp32MatchesHuggingFace) {
  EAQ_CUDA_BACKEND_OR_SKIP(gpu, Precision::Fp32);
  const std::filesystem::path dir = test::golden_dir() / GetParam();
  ASSERT_TRUE(std::filesystem::exists(dir / "reference.safetensors")) << dir;
  const SafetensorsFile reference = SafetensorsFile::open((dir / "reference.safetensors").string());
  auto model = EncoderModel::load(dir, *gpu);
  EncoderBatch batch;
  batch.input_ids = gpu->upload(reference.tensor("input_ids"), DType::I32);
  batch.attention_mask = gpu->upload(reference.tensor("attention_mask"), DType::I32);
  if (reference.contains("token_type_ids")) {
    batch.token_type_ids = gpu->upload(reference.tensor("token_type_ids"), DType::I32);
  }
  const EncoderOutputs out = model->forward(batch);
  if (reference.contains("logits")) {
    EXPECT_LE(test::max_relative_error(gpu->download(out.logits), reference.tensor("logits")),
              1e-4);
  }
  if (reference.contains("last_hidden_state")) {
    EXPECT_LE(
        test::max_relative_error(gpu->download(out.hidden), reference.tensor("last_hidden_state")),
        1e-4);
  }
}

INSTANTIATE_TEST_SUITE_P(HuggingFace, CudaGolden,
                         ::testing::ValuesIn(test::golden_fixtures_with_prefix({"distilbert",
                                                                                "bert"})));

TEST(CudaEncoderDefaultShape, ArgmaxAgreesWithFp32) {
  EAQ_CUDA_BACKEND_OR_SKIP(reference, Precision::Fp32);
  test::TempDir dir;
  test::RandomEncoderSpec spec;  // DistilBertConfig() defaults
  spec.vocab = 30522;
  spec.hidden = 768;
  spec.heads = 12;
  spec.layers = 6;
  spec.intermediate = 3072;
  spec.positions = 512;
  spec.labels = 2;
  spec.weight_scale = 0.04f;
  test::write_random_encoder(dir.path(), spec);
  const Inputs in = random_inputs(256, 128, spec.vocab, 9);
  auto reference_model = EncoderModel::load(dir.path(), *reference);
  const HostTensor expected = logits_on(*reference, *reference_model, in, false);
  for (Precision precision :
       {Precision::Tf32, Precision::Fp16, Precision::Fp16Autocast, Precision::Bf16}) {
    EAQ_CUDA_BACKEND_OR_SKIP(gpu, precision);
    auto model = EncoderModel::load(dir.path(), *gpu);
    const HostTensor logits = logits_on(*gpu, *model, in, false);
    int agree = 0;
    for (int b = 0; b < 256; ++b) {
      const bool a = logits.data<float>()[2 * b] >= logits.data<float>()[2 * b + 1];
      const bool e = expected.data<float>()[2 * b] >= expected.data<float>()[2 * b + 1];
      agree += a == e;
    }
    std::printf("[ default   ] %-14s argmax agreement %d/256, logits rel. error %.2e\n",
                std::string(precision_name(precision)).c_str(), agree,
                test::max_relative_error(logits, expected));
    EXPECT_GE(agree / 256.0, 0.995) << precision_name(precision);
  }
}

TEST(CudaBackendErrors, GpuIdOutOfRange) {
  EAQ_CUDA_BACKEND_OR_SKIP(gpu, Precision::Fp32);
  try {
    make_cuda_backend(Precision::Fp32, 4096);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--gpu-id 4096: out of range"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace eaq
