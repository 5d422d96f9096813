#include "model/expert_streaming.h"

#include "core/error.h"

namespace tandem::model {

ExpertStreaming::Mode ExpertStreaming::parse_mode(std::string_view text, std::string_view what) {
  if (text == "off") return Mode::kOff;
  if (text == "auto") return Mode::kAuto;
  if (text == "on") return Mode::kOn;
  fail("{}: '{}' is not off, auto or on", what, text);
}

std::string_view ExpertStreaming::mode_name(Mode mode) {
  switch (mode) {
    case Mode::kOff: return "off";
    case Mode::kAuto: return "auto";
    case Mode::kOn: return "on";
  }
  return "?";
}

ExpertStreaming::Rates ExpertStreaming::prior(int cpu_threads) {
  return {30e9 * (cpu_threads > 0 ? cpu_threads : 1), 12e9};
}

ExpertStreaming::ExpertStreaming(Mode mode, Rates prior) : mode_(mode), rates_(prior) {
  if (mode_ == Mode::kAuto && !(rates_.cpu_macs_per_s > 0 && rates_.stream_bytes_per_s > 0)) {
    fail("expert streaming: auto needs positive prior rates");
  }
}

ExpertStreaming::Rates ExpertStreaming::rates() const {
  std::lock_guard lock(mutex_);
  return rates_;
}

bool ExpertStreaming::stream(int64_t T, double bytes, double macs_per_token) {
  if (mode_ == Mode::kOff || T <= kMaxDecodeTokens) return false;
  if (mode_ == Mode::kOn) return true;
  std::lock_guard lock(mutex_);
  const bool faster = bytes / rates_.stream_bytes_per_s < static_cast<double>(T) * macs_per_token / rates_.cpu_macs_per_s;
  if (T >= kExploreTokens) {
    if (faster && !cpu_measured_) return false;    // measure the CPU once first
    if (!faster && !stream_measured_) return true;  // and streaming
  }
  return faster;
}

void ExpertStreaming::fold(double& rate, bool& measured, double units, double seconds) {
  if (!(units > 0 && seconds > 0)) return;
  const double sample = units / seconds;
  // Seconds per unit averaged, the newest a quarter: steady against one noisy call, and a
  // changed machine state (another load, thermal) shows within a few layers.
  rate = measured ? 1.0 / (0.75 / rate + 0.25 / sample) : sample;
  measured = true;
}

void ExpertStreaming::measured_cpu(double macs, double seconds) {
  std::lock_guard lock(mutex_);
  fold(rates_.cpu_macs_per_s, cpu_measured_, macs, seconds);
}

void ExpertStreaming::measured_stream(double bytes, double seconds) {
  std::lock_guard lock(mutex_);
  fold(rates_.stream_bytes_per_s, stream_measured_, bytes, seconds);
}

}  // namespace tandem::model
