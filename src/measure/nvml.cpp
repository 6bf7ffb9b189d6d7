// NVML through dlopen. The few NVML types used here are declared below to match NVML's C ABI
// (nvml.h, checked against NVML 12.x headers): nvmlReturn_t and the enums are ints, nvmlDevice_t is
// an opaque pointer.
#include "measure/nvml.hpp"

#include <dlfcn.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "core/error.hpp"

namespace eaq::measure {
namespace {

// --- NVML ABI (subset) ------------------------------------------------------------------------
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;

constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr nvmlReturn_t kNvmlErrorNotSupported = 3;
constexpr int kNvmlClockSm = 1;                    // NVML_CLOCK_SM
constexpr int kNvmlClockMem = 2;                   // NVML_CLOCK_MEM
constexpr int kNvmlTemperatureGpu = 0;             // NVML_TEMPERATURE_GPU
constexpr unsigned kNvmlFiDevPowerInstant = 186;   // NVML_FI_DEV_POWER_INSTANT (milliwatts)
constexpr unsigned kNameBufferSize = 96;           // NVML_DEVICE_NAME_V2_BUFFER_SIZE
constexpr unsigned kUuidBufferSize = 96;           // NVML_DEVICE_UUID_V2_BUFFER_SIZE
constexpr unsigned kDriverVersionBufferSize = 81;  // NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE

struct nvmlMemory_t {
  unsigned long long total;
  unsigned long long free;
  unsigned long long used;
};

struct nvmlPciInfo_t {  // the layout nvmlDeviceGetPciInfo_v3 fills
  char busIdLegacy[16];
  unsigned int domain;
  unsigned int bus;
  unsigned int device;
  unsigned int pciDeviceId;
  unsigned int pciSubSystemId;
  char busId[32];
};

enum nvmlValueType : int {
  kValueDouble = 0,
  kValueUnsignedInt = 1,
  kValueUnsignedLong = 2,
  kValueUnsignedLongLong = 3,
  kValueSignedLongLong = 4,
  kValueSignedInt = 5,
  kValueUnsignedShort = 6,
};

union nvmlValue_t {
  double dVal;
  int siVal;
  unsigned int uiVal;
  unsigned long ulVal;
  unsigned long long ullVal;
  signed long long sllVal;
  unsigned short usVal;
};

struct nvmlFieldValue_t {
  unsigned int fieldId;
  unsigned int scopeId;
  long long timestamp;  // microseconds since 1970
  long long latencyUsec;
  int valueType;  // nvmlValueType_t
  nvmlReturn_t nvmlReturn;
  nvmlValue_t value;
};
static_assert(sizeof(nvmlFieldValue_t) == 40, "nvmlFieldValue_t must match NVML's layout");
static_assert(sizeof(nvmlPciInfo_t) == 68, "nvmlPciInfo_t must match NVML's layout");

// --- The loaded library -----------------------------------------------------------------------
class NvmlLibrary {
 public:
  // Loads and initialises NVML; on failure, reason() says why and ok() is false.
  explicit NvmlLibrary(const std::string& path) {
    handle_ = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (handle_ == nullptr) {
      const char* why = dlerror();
      reason_ = fmt::format("NVML unavailable: cannot load {}: {}", path,
                            why != nullptr ? why : "unknown dlopen error");
      return;
    }
    // Required: without these nothing works.
    if (!bind(init_, "nvmlInit_v2") || !bind(shutdown_, "nvmlShutdown") ||
        !bind(device_count_, "nvmlDeviceGetCount_v2") ||
        !bind(handle_by_index_, "nvmlDeviceGetHandleByIndex_v2")) {
      reason_ = fmt::format("NVML unavailable: {} lacks {}", path, missing_);
      return;
    }
    // Optional: a missing one makes only its reading unavailable.
    bind(error_string_, "nvmlErrorString");
    bind(handle_by_pci_, "nvmlDeviceGetHandleByPciBusId_v2");
    bind(get_name_, "nvmlDeviceGetName");
    bind(get_uuid_, "nvmlDeviceGetUUID");
    bind(get_pci_, "nvmlDeviceGetPciInfo_v3");
    bind(driver_version_, "nvmlSystemGetDriverVersion");
    bind(cuda_driver_version_, "nvmlSystemGetCudaDriverVersion_v2");
    bind(total_energy_, "nvmlDeviceGetTotalEnergyConsumption");
    bind(power_usage_, "nvmlDeviceGetPowerUsage");
    bind(field_values_, "nvmlDeviceGetFieldValues");
    bind(clock_info_, "nvmlDeviceGetClockInfo");
    bind(temperature_, "nvmlDeviceGetTemperature");
    bind(power_limit_, "nvmlDeviceGetEnforcedPowerLimit");
    bind(memory_info_, "nvmlDeviceGetMemoryInfo");

    const nvmlReturn_t rc = init_();
    if (rc != kNvmlSuccess) {
      reason_ = fmt::format("NVML unavailable: nvmlInit_v2 failed: {}", error(rc));
      return;
    }
    initialised_ = true;
  }

  ~NvmlLibrary() {
    if (initialised_) shutdown_();
    // The library stays mapped for the life of the process: unloading a driver library while
    // other code may still hold its symbols is a known source of crashes at exit.
  }

  NvmlLibrary(const NvmlLibrary&) = delete;
  NvmlLibrary& operator=(const NvmlLibrary&) = delete;

  bool ok() const { return initialised_; }
  const std::string& reason() const { return reason_; }

  std::string error(nvmlReturn_t rc) const {
    const char* text = error_string_ != nullptr ? error_string_(rc) : nullptr;
    return fmt::format("{} (NVML error {})", text != nullptr ? text : "unknown", rc);
  }

  // Function pointers (null when the symbol is absent).
  nvmlReturn_t (*init_)() = nullptr;
  nvmlReturn_t (*shutdown_)() = nullptr;
  const char* (*error_string_)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*device_count_)(unsigned int*) = nullptr;
  nvmlReturn_t (*handle_by_index_)(unsigned int, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*handle_by_pci_)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*get_name_)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*get_uuid_)(nvmlDevice_t, char*, unsigned int) = nullptr;
  nvmlReturn_t (*get_pci_)(nvmlDevice_t, nvmlPciInfo_t*) = nullptr;
  nvmlReturn_t (*driver_version_)(char*, unsigned int) = nullptr;
  nvmlReturn_t (*cuda_driver_version_)(int*) = nullptr;
  nvmlReturn_t (*total_energy_)(nvmlDevice_t, unsigned long long*) = nullptr;
  nvmlReturn_t (*power_usage_)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*field_values_)(nvmlDevice_t, int, nvmlFieldValue_t*) = nullptr;
  nvmlReturn_t (*clock_info_)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*temperature_)(nvmlDevice_t, int, unsigned int*) = nullptr;
  nvmlReturn_t (*power_limit_)(nvmlDevice_t, unsigned int*) = nullptr;
  nvmlReturn_t (*memory_info_)(nvmlDevice_t, nvmlMemory_t*) = nullptr;

 private:
  template <class Fn>
  bool bind(Fn& fn, const char* symbol) {
    void* address = dlsym(handle_, symbol);
    if (address == nullptr) {
      if (missing_.empty()) missing_ = symbol;
      return false;
    }
    fn = reinterpret_cast<Fn>(address);
    return true;
  }

  void* handle_ = nullptr;
  bool initialised_ = false;
  std::string reason_;
  std::string missing_;
};

// --- The meter --------------------------------------------------------------------------------
class NvmlMeter final : public GpuMeter {
 public:
  NvmlMeter(std::shared_ptr<NvmlLibrary> library, nvmlDevice_t device, unsigned gpu_index)
      : nvml_(std::move(library)), device_(device), index_(gpu_index) {}

  bool available() const override { return true; }
  std::string unavailable_reason() const override { return {}; }
  unsigned index() const override { return index_; }

  Reading<std::string> name() const override {
    return device_string(nvml_->get_name_, "nvmlDeviceGetName", kNameBufferSize);
  }
  Reading<std::string> uuid() const override {
    return device_string(nvml_->get_uuid_, "nvmlDeviceGetUUID", kUuidBufferSize);
  }
  Reading<std::string> pci_bus_id() const override {
    if (nvml_->get_pci_ == nullptr) return missing<std::string>("nvmlDeviceGetPciInfo_v3");
    nvmlPciInfo_t pci{};
    const nvmlReturn_t rc = nvml_->get_pci_(device_, &pci);
    if (rc != kNvmlSuccess) return failed<std::string>("nvmlDeviceGetPciInfo_v3", rc);
    pci.busId[sizeof(pci.busId) - 1] = '\0';
    return Reading<std::string>::ok(pci.busId);
  }
  Reading<std::string> driver_version() const override {
    if (nvml_->driver_version_ == nullptr)
      return missing<std::string>("nvmlSystemGetDriverVersion");
    char buffer[kDriverVersionBufferSize] = {};
    const nvmlReturn_t rc = nvml_->driver_version_(buffer, sizeof(buffer));
    if (rc != kNvmlSuccess) return failed<std::string>("nvmlSystemGetDriverVersion", rc);
    buffer[sizeof(buffer) - 1] = '\0';
    return Reading<std::string>::ok(buffer);
  }
  Reading<std::string> cuda_driver_version() const override {
    if (nvml_->cuda_driver_version_ == nullptr) {
      return missing<std::string>("nvmlSystemGetCudaDriverVersion_v2");
    }
    int version = 0;
    const nvmlReturn_t rc = nvml_->cuda_driver_version_(&version);
    if (rc != kNvmlSuccess) return failed<std::string>("nvmlSystemGetCudaDriverVersion_v2", rc);
    // NVML encodes 12.4 as 12040 (the CUDA_VERSION convention).
    return Reading<std::string>::ok(fmt::format("{}.{}", version / 1000, (version % 1000) / 10));
  }

  Reading<std::uint64_t> energy_mj() const override {
    if (nvml_->total_energy_ == nullptr) {
      return missing<std::uint64_t>("nvmlDeviceGetTotalEnergyConsumption");
    }
    unsigned long long millijoules = 0;
    const nvmlReturn_t rc = nvml_->total_energy_(device_, &millijoules);
    if (rc != kNvmlSuccess) return failed<std::uint64_t>("nvmlDeviceGetTotalEnergyConsumption", rc);
    return Reading<std::uint64_t>::ok(millijoules);
  }
  Reading<std::uint32_t> power_mw() const override {
    return device_uint(nvml_->power_usage_, "nvmlDeviceGetPowerUsage");
  }
  Reading<std::uint32_t> instant_power_mw() const override {
    if (nvml_->field_values_ == nullptr) return missing<std::uint32_t>("nvmlDeviceGetFieldValues");
    nvmlFieldValue_t field{};
    field.fieldId = kNvmlFiDevPowerInstant;
    nvmlReturn_t rc = nvml_->field_values_(device_, 1, &field);
    if (rc == kNvmlSuccess) rc = field.nvmlReturn;
    if (rc != kNvmlSuccess) {
      return failed<std::uint32_t>("nvmlDeviceGetFieldValues(NVML_FI_DEV_POWER_INSTANT)", rc);
    }
    return field_as_uint(field);
  }

  Reading<std::uint32_t> sm_clock_mhz() const override { return clock(kNvmlClockSm, "SM"); }
  Reading<std::uint32_t> mem_clock_mhz() const override { return clock(kNvmlClockMem, "MEM"); }
  Reading<std::uint32_t> temperature_c() const override {
    if (nvml_->temperature_ == nullptr) return missing<std::uint32_t>("nvmlDeviceGetTemperature");
    unsigned int celsius = 0;
    const nvmlReturn_t rc = nvml_->temperature_(device_, kNvmlTemperatureGpu, &celsius);
    if (rc != kNvmlSuccess) return failed<std::uint32_t>("nvmlDeviceGetTemperature", rc);
    return Reading<std::uint32_t>::ok(celsius);
  }
  Reading<std::uint32_t> power_limit_mw() const override {
    return device_uint(nvml_->power_limit_, "nvmlDeviceGetEnforcedPowerLimit");
  }
  Reading<GpuMemoryInfo> memory() const override {
    if (nvml_->memory_info_ == nullptr) return missing<GpuMemoryInfo>("nvmlDeviceGetMemoryInfo");
    nvmlMemory_t memory_info{};
    const nvmlReturn_t rc = nvml_->memory_info_(device_, &memory_info);
    if (rc != kNvmlSuccess) return failed<GpuMemoryInfo>("nvmlDeviceGetMemoryInfo", rc);
    return Reading<GpuMemoryInfo>::ok({memory_info.total, memory_info.free, memory_info.used});
  }

 private:
  template <class T>
  static Reading<T> missing(const char* symbol) {
    return Reading<T>::unavailable(fmt::format("this NVML has no {}", symbol));
  }
  template <class T>
  Reading<T> failed(const char* call, nvmlReturn_t rc) const {
    if (rc == kNvmlErrorNotSupported) {
      return Reading<T>::unavailable(fmt::format("{}: not supported on this GPU", call));
    }
    return Reading<T>::unavailable(fmt::format("{} failed: {}", call, nvml_->error(rc)));
  }

  Reading<std::string> device_string(nvmlReturn_t (*fn)(nvmlDevice_t, char*, unsigned int),
                                     const char* call, unsigned size) const {
    if (fn == nullptr) return missing<std::string>(call);
    std::string buffer(size, '\0');
    const nvmlReturn_t rc = fn(device_, buffer.data(), size);
    if (rc != kNvmlSuccess) return failed<std::string>(call, rc);
    buffer.resize(std::strlen(buffer.c_str()));
    return Reading<std::string>::ok(std::move(buffer));
  }

  Reading<std::uint32_t> device_uint(nvmlReturn_t (*fn)(nvmlDevice_t, unsigned int*),
                                     const char* call) const {
    if (fn == nullptr) return missing<std::uint32_t>(call);
    unsigned int value = 0;
    const nvmlReturn_t rc = fn(device_, &value);
    if (rc != kNvmlSuccess) return failed<std::uint32_t>(call, rc);
    return Reading<std::uint32_t>::ok(value);
  }

  Reading<std::uint32_t> clock(int clock_type, const char* label) const {
    if (nvml_->clock_info_ == nullptr) return missing<std::uint32_t>("nvmlDeviceGetClockInfo");
    unsigned int mhz = 0;
    const nvmlReturn_t rc = nvml_->clock_info_(device_, clock_type, &mhz);
    if (rc != kNvmlSuccess) {
      return failed<std::uint32_t>(fmt::format("nvmlDeviceGetClockInfo({})", label).c_str(), rc);
    }
    return Reading<std::uint32_t>::ok(mhz);
  }

  static Reading<std::uint32_t> field_as_uint(const nvmlFieldValue_t& field) {
    long double value = 0;
    switch (field.valueType) {
      case kValueDouble:
        value = field.value.dVal;
        break;
      case kValueUnsignedInt:
        value = field.value.uiVal;
        break;
      case kValueUnsignedLong:
        value = static_cast<long double>(field.value.ulVal);
        break;
      case kValueUnsignedLongLong:
        value = static_cast<long double>(field.value.ullVal);
        break;
      case kValueSignedLongLong:
        value = static_cast<long double>(field.value.sllVal);
        break;
      case kValueSignedInt:
        value = field.value.siVal;
        break;
      case kValueUnsignedShort:
        value = field.value.usVal;
        break;
      default:
        return Reading<std::uint32_t>::unavailable(
            fmt::format("NVML_FI_DEV_POWER_INSTANT: unknown value type {}", field.valueType));
    }
    if (!(value >= 0 && value <= 4.0e9L)) {
      return Reading<std::uint32_t>::unavailable(fmt::format(
          "NVML_FI_DEV_POWER_INSTANT: implausible value {}", static_cast<double>(value)));
    }
    return Reading<std::uint32_t>::ok(static_cast<std::uint32_t>(value));
  }

  std::shared_ptr<NvmlLibrary> nvml_;
  nvmlDevice_t device_;
  unsigned index_;
};

// Loads NVML and counts GPUs; on failure returns null with `reason` set.
std::shared_ptr<NvmlLibrary> load(const std::string& library, unsigned* count,
                                  std::string* reason) {
  auto nvml = std::make_shared<NvmlLibrary>(library);
  if (!nvml->ok()) {
    *reason = nvml->reason();
    return nullptr;
  }
  const nvmlReturn_t rc = nvml->device_count_(count);
  if (rc != kNvmlSuccess) {
    *reason = fmt::format("NVML unavailable: nvmlDeviceGetCount_v2 failed: {}", nvml->error(rc));
    return nullptr;
  }
  return nvml;
}

}  // namespace

Reading<unsigned> nvml_device_count(const std::string& library) {
  unsigned count = 0;
  std::string reason;
  if (load(library, &count, &reason) == nullptr) return Reading<unsigned>::unavailable(reason);
  return Reading<unsigned>::ok(count);
}

std::unique_ptr<GpuMeter> open_nvml_meter(unsigned gpu_index, const std::string& library) {
  unsigned count = 0;
  std::string reason;
  auto nvml = load(library, &count, &reason);
  if (nvml == nullptr) return std::make_unique<UnavailableGpuMeter>(reason, gpu_index);
  if (count == 0) fail("GPU {} does not exist: NVML sees no GPUs", gpu_index);
  if (gpu_index >= count) {
    fail("GPU {} does not exist: NVML sees {} GPU(s), valid indices are 0..{}", gpu_index, count,
         count - 1);
  }
  nvmlDevice_t device = nullptr;
  const nvmlReturn_t rc = nvml->handle_by_index_(gpu_index, &device);
  if (rc != kNvmlSuccess) {
    fail("cannot open GPU {} through NVML: nvmlDeviceGetHandleByIndex_v2 failed: {}", gpu_index,
         nvml->error(rc));
  }
  return std::make_unique<NvmlMeter>(std::move(nvml), device, gpu_index);
}

std::unique_ptr<GpuMeter> open_nvml_meter_by_pci_bus_id(const std::string& pci_bus_id,
                                                        const std::string& library) {
  unsigned count = 0;
  std::string reason;
  auto nvml = load(library, &count, &reason);
  if (nvml == nullptr) return std::make_unique<UnavailableGpuMeter>(reason);
  if (nvml->handle_by_pci_ == nullptr) {
    return std::make_unique<UnavailableGpuMeter>(
        "NVML unavailable: this NVML has no nvmlDeviceGetHandleByPciBusId_v2");
  }
  nvmlDevice_t device = nullptr;
  const nvmlReturn_t rc = nvml->handle_by_pci_(pci_bus_id.c_str(), &device);
  if (rc != kNvmlSuccess) {
    fail("no GPU with PCI bus id '{}' in NVML ({} GPU(s) seen): {}", pci_bus_id, count,
         nvml->error(rc));
  }
  // Find its index, for the record.
  unsigned found_index = 0;
  for (unsigned i = 0; i < count; ++i) {
    nvmlDevice_t candidate = nullptr;
    if (nvml->handle_by_index_(i, &candidate) == kNvmlSuccess && candidate == device) {
      found_index = i;
      break;
    }
  }
  return std::make_unique<NvmlMeter>(std::move(nvml), device, found_index);
}

}  // namespace eaq::measure
