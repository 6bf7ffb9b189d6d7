// Calibration for int8-static: histogram statistics, the recording backend, the calibration pass
// over a model, and the calibration file (round trip, and refusal of files that do not fit).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "backend/cpu/cpu_backend.hpp"
#include "core/error.hpp"
#include "quant/calibrate.hpp"
#include "quant/calibrating_backend.hpp"
#include "quant/calibration.hpp"
#include "quant/calibration_stats.hpp"
#include "random_models.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

void expect_error(const std::function<void()>& body, const std::string& expected) {
  try {
    body();
    FAIL() << "expected an error containing: " << expected;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
  }
}

TEST(AbsHistogram, MaxIsExactAndPercentilesWithinOneBin) {
  quant::AbsHistogram histogram(1024);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> all;
  // Batches of growing spread: the range doubles several times along the way.
  for (int batch = 0; batch < 6; ++batch) {
    std::vector<float> values(5000);
    for (float& v : values) v = normal(rng) * static_cast<float>(1 << batch) * 0.1f;
    histogram.add(values.data(), static_cast<std::int64_t>(values.size()), "test");
    for (float v : values) all.push_back(std::fabs(v));
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(histogram.count(), all.size());
  EXPECT_EQ(histogram.max(), all.back());
  const double bin = histogram.range() / histogram.bins();
  for (double p : {50.0, 90.0, 99.0, 99.9, 99.99}) {
    const auto index = static_cast<std::size_t>(std::ceil(p / 100.0 * all.size())) - 1;
    EXPECT_NEAR(histogram.percentile(p), all[index], bin) << "percentile " << p;
  }
  EXPECT_EQ(histogram.percentile(100.0), all.back());
  EXPECT_THROW(histogram.percentile(0.0), Error);
}

TEST(AbsHistogram, ZerosBeforeTheFirstNonZeroValueCount) {
  quant::AbsHistogram histogram(64);
  const std::vector<float> zeros(90, 0.0f);
  histogram.add(zeros.data(), 90, "test");
  EXPECT_EQ(histogram.max(), 0.0f);
  EXPECT_EQ(histogram.percentile(50.0), 0.0f);
  const std::vector<float> ones(10, 1.0f);
  histogram.add(ones.data(), 10, "test");
  EXPECT_EQ(histogram.count(), 100u);
  EXPECT_LE(histogram.percentile(85.0), histogram.range() / 64);  // still among the zeros
  EXPECT_NEAR(histogram.percentile(95.0), 1.0f, histogram.range() / 64);
  const float nan = std::nanf("");
  expect_error([&] { histogram.add(&nan, 1, "layers.1.o"); },
               "layers.1.o: calibration saw a non-finite");
}

TEST(CalibratingBackend, RecordsLinearInputsSkippingPaddingRows) {
  auto cpu = make_cpu_backend(Precision::Fp32);
  quant::CalibratingBackend recorder(*cpu);
  LinearOptions options;
  options.name = "probe";
  const HostTensor w = test::random_f32({3, 4}, 1);
  auto linear = recorder.prepare_linear(w, nullptr, options);
  // Rows 0 and 2 are real tokens; row 1 (padding) holds the largest value and must be ignored.
  const HostTensor x = HostTensor::from_f32({3, 4}, {0.5f, -1.0f, 0.25f, 0.0f,  //
                                                     9.0f, 9.0f, 9.0f, 9.0f,    //
                                                     -2.0f, 0.1f, 0.2f, 0.3f});
  recorder.set_token_mask({1, 0, 1});
  DeviceTensor dx = recorder.upload(x, DType::F32);
  DeviceTensor dy = recorder.allocate(DType::F32, {3, 3});
  recorder.linear(dx, *linear, Activation::None, dy);
  ASSERT_EQ(recorder.statistics().count("probe"), 1u);
  const quant::AbsHistogram& h = recorder.statistics().at("probe");
  EXPECT_EQ(h.count(), 8u);
  EXPECT_EQ(h.max(), 2.0f);
  // The op itself still ran: y equals the plain backend's.
  DeviceTensor expected = cpu->allocate(DType::F32, {3, 3});
  cpu->linear(dx, *linear, Activation::None, expected);
  const HostTensor a = recorder.download(dy), b = cpu->download(expected);
  for (int i = 0; i < 9; ++i) EXPECT_EQ(a.data<float>()[i], b.data<float>()[i]);
  for (DeviceTensor* t : {&dx, &dy, &expected}) cpu->release(*t);
}

struct CalibrationFixture {
  test::TempDir dir;
  test::RandomEncoderSpec spec;
  HostTensor ids, mask;

  CalibrationFixture() {
    spec.layers = 2;
    test::write_random_encoder(dir.path() / "model", spec);
    std::mt19937 rng(11);
    std::vector<std::int32_t> id(16 * 12), m(16 * 12);
    for (int b = 0; b < 16; ++b) {
      const int length = 3 + b % 9;
      for (int t = 0; t < 12; ++t) {
        id[b * 12 + t] = t < length ? static_cast<std::int32_t>(rng() % spec.vocab) : 0;
        m[b * 12 + t] = t < length;
      }
    }
    ids = HostTensor::from_i32({16, 12}, id);
    mask = HostTensor::from_i32({16, 12}, m);
  }
  std::filesystem::path model() const { return dir.path() / "model"; }
  quant::Calibration run(quant::CalibrationMethod method) const {
    quant::CalibrationOptions options;
    options.method = method;
    options.batches = 4;
    options.batch_size = 4;
    options.dataset = "random ids";
    return quant::calibrate(model(), {&ids, &mask, nullptr}, options);
  }
};

TEST(Calibrate, ScalesForEveryLinearFromRealTokens) {
  CalibrationFixture f;
  const quant::Calibration max = f.run(quant::CalibrationMethod::Max);
  const quant::Calibration pct = f.run(quant::CalibrationMethod::Percentile);
  EXPECT_EQ(max.batches, 4);
  EXPECT_EQ(max.examples, 16);
  std::int64_t real_tokens = 0;
  for (std::int64_t i = 0; i < f.mask.numel(); ++i) real_tokens += f.mask.data<std::int32_t>()[i];
  EXPECT_EQ(max.tokens, real_tokens);
  for (const char* name : {"layers.0.qkv", "layers.0.o", "layers.0.ffn_in", "layers.0.ffn_out",
                           "layers.1.qkv", "layers.1.ffn_out", "pre_classifier", "classifier"}) {
    ASSERT_EQ(max.layers.count(name), 1u) << name;
    const quant::LayerCalibration& l = max.layers.at(name);
    EXPECT_GT(l.scale, 0.0f) << name;
    EXPECT_FLOAT_EQ(l.scale, l.observed_max / 127.0f) << name;
    // Per-token inputs saw hidden (or intermediate) values for every real token.
    if (std::string(name).rfind("layers.", 0) == 0) {
      const std::int64_t width = std::string(name).find("ffn_out") != std::string::npos
                                     ? f.spec.intermediate
                                     : f.spec.hidden;
      EXPECT_EQ(l.values, static_cast<std::uint64_t>(real_tokens * width)) << name;
    }
    EXPECT_LE(pct.layers.at(name).absmax, pct.layers.at(name).observed_max) << name;
    EXPECT_EQ(pct.layers.at(name).observed_max, l.observed_max) << name;
  }
  EXPECT_EQ(max.plan().static_input_scales.at("layers.1.qkv"), max.layers.at("layers.1.qkv").scale);
}

TEST(Calibrate, RefusesDataThatDoesNotFitTheModel) {
  CalibrationFixture f;
  quant::CalibrationOptions options;
  options.batches = 2;
  options.batch_size = 4;
  options.dataset = "datasets/other";
  const HostTensor bad =
      HostTensor::from_i32({16, 12}, std::vector<std::int32_t>(16 * 12, f.spec.vocab + 5));
  expect_error(
      [&] {
        quant::calibrate(f.model(), {&bad, &f.mask, nullptr}, options);
      },
      "datasets/other: input_ids[0, 0]");
  options.batches = 5;
  expect_error(
      [&] {
        quant::calibrate(f.model(), {&f.ids, &f.mask, nullptr}, options);
      },
      "need 20 examples, but it has only 16");
  options.batches = 2;
  auto int8 = make_cpu_backend(Precision::Int8);
  expect_error(
      [&] {
        quant::calibrate(f.model(), {&f.ids, &f.mask, nullptr}, options, int8.get());
      },
      "calibration runs the model in fp32");
  // DistilBERT has no token types: all-zero ones (as BERT tokenizers write) are ignored, others
  // refused.
  const HostTensor zeros = HostTensor::from_i32({16, 12}, std::vector<std::int32_t>(16 * 12, 0));
  EXPECT_EQ(quant::calibrate(f.model(), {&f.ids, &f.mask, &zeros}, options).batches, 2);
  const HostTensor ones = HostTensor::from_i32({16, 12}, std::vector<std::int32_t>(16 * 12, 1));
  expect_error(
      [&] {
        quant::calibrate(f.model(), {&f.ids, &f.mask, &ones}, options);
      },
      "datasets/other: token_type_ids holds 1, but DistilBertForSequenceClassification has no "
      "token type embeddings");
}

TEST(CalibrationFile, RoundTripAndRefusals) {
  CalibrationFixture f;
  const quant::Calibration calibration = f.run(quant::CalibrationMethod::Percentile);
  const std::filesystem::path file = f.dir.path() / "calibration.json";
  quant::save_calibration(calibration, file);
  const quant::Calibration loaded = quant::load_calibration(file, f.model(), Precision::Int8Static);
  EXPECT_EQ(loaded.method, quant::CalibrationMethod::Percentile);
  EXPECT_EQ(loaded.percentile, 99.99);
  EXPECT_EQ(loaded.batches, 4);
  EXPECT_EQ(loaded.dataset, "random ids");
  ASSERT_EQ(loaded.layers.size(), calibration.layers.size());
  for (const auto& [name, layer] : calibration.layers) {
    EXPECT_EQ(loaded.layers.at(name).scale, layer.scale) << name;
    EXPECT_EQ(loaded.layers.at(name).values, layer.values) << name;
  }

  // Another precision.
  expect_error([&] { quant::load_calibration(file, f.model(), Precision::Fp8); },
               "this calibration is for --precision int8-static, not fp8");
  // Another model: same architecture, other weights.
  test::RandomEncoderSpec other = f.spec;
  other.seed = 2;
  test::write_random_encoder(f.dir.path() / "other", other);
  expect_error(
      [&] { quant::load_calibration(file, f.dir.path() / "other", Precision::Int8Static); },
      "weights file model.safetensors differs");
  // Another config.
  other.layers = 3;
  test::write_random_encoder(f.dir.path() / "deeper", other);
  expect_error(
      [&] { quant::load_calibration(file, f.dir.path() / "deeper", Precision::Int8Static); },
      "config.json differs");
  // Not a calibration file, a broken scale, a missing file.
  test::write_text(f.dir.path() / "bad.json", "{\"format\": \"something else\"}");
  expect_error(
      [&] { quant::load_calibration(f.dir.path() / "bad.json", f.model(), Precision::Int8Static); },
      "not an eaq calibration file");
  std::string text = test::read_text(file);
  const std::size_t at = text.find("\"scale\": ");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, text.find(',', at) - at, "\"scale\": -1.0");
  test::write_text(f.dir.path() / "negative.json", text);
  expect_error(
      [&] {
        quant::load_calibration(f.dir.path() / "negative.json", f.model(), Precision::Int8Static);
      },
      "scales must be finite and > 0");
  expect_error(
      [&] {
        quant::load_calibration(f.dir.path() / "none.json", f.model(), Precision::Int8Static);
      },
      "no such file");
}

}  // namespace
}  // namespace eaq
