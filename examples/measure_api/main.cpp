// The seed's API example, in C++: measure one precision of a model on a pre-tokenized dataset.
//   measure_api MODEL_DIR DATASET_DIR [precision] [device] [iterations]
#include <eaq/eaq.hpp>

#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s MODEL_DIR DATASET_DIR [precision] [device] [iterations]\n",
                 argv[0]);
    return 2;
  }
  const std::string precision = argc > 3 ? argv[3] : "fp32";
  const std::string device = argc > 4 ? argv[4] : "cuda";
  const long iterations = argc > 5 ? std::stol(argv[5]) : 1000;
  try {
    auto data = eaq::load_pre_tokenized(argv[2]);
    auto model = eaq::load_model(argv[1], precision, device);
    eaq::warmup(model, data, 2, 8);
    eaq::PowerLogger logger(100);
    const bool logging = logger.start();
    const auto results = eaq::run_inference(model, data, iterations, 8);
    logger.stop();
    const auto energy = eaq::compute_energy(logger.read(), results);
    std::printf("%s %s on %s: %ld iterations, %.3f ms per batch of 8\n",
                model.architecture().c_str(), model.precision().c_str(), model.backend().c_str(),
                static_cast<long>(results.num_iters),
                1e3 * results.total_time_s / static_cast<double>(results.num_iters));
    if (energy.energy_per_inference_mj) {
      std::printf("energy: %.3f mJ per inference (%s, quality %s)\n",
                  *energy.energy_per_inference_mj, energy.source.c_str(), energy.quality.c_str());
    } else {
      std::printf(
          "energy: unavailable (%s)%s%s\n", energy.unavailable_reason.c_str(),
          logging ? "" : "; power logger: ", logging ? "" : logger.unavailable_reason().c_str());
    }
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "measure_api: %s\n", e.what());
    return 1;
  }
}
