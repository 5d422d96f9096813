// libFuzzer target: the GGUF parser on arbitrary bytes. Any outcome other than a parsed
// file or a tandem::Error (a crash, a sanitizer report, another exception) is a finding.
#include <cstddef>
#include <cstdint>
#include <span>

#include "core/error.h"
#include "gguf/gguf_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const tandem::gguf::File file = tandem::gguf::File::parse(std::span(data, size), "fuzz.gguf");
    // Touch what a consumer would: every tensor's first and last data byte, every key.
    uint8_t sum = 0;
    for (const auto& t : file.tensors()) sum ^= t.data[0] ^ t.data[t.n_bytes - 1];
    for (const auto& e : file.metadata()) sum ^= static_cast<uint8_t>(e.key.size());
    volatile uint8_t sink = sum;  // keep the reads from being optimised away
    (void)sink;
  } catch (const tandem::Error&) {
  }
  return 0;
}
