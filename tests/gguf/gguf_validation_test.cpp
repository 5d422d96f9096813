// The parser must reject every malformed header with a tandem::Error that names the reason
// and the byte offset, and must never crash or read out of bounds (this runs under
// ASan/UBSan in CI as well).
#include <gtest/gtest.h>

#include <random>
#include <string>

#include "core/error.h"
#include "gguf/gguf_file.h"
#include "gguf/gguf_bytes.h"

namespace tandem::gguf {
namespace {

using testing::GgufBytes;

// Parses and returns the error message; fails the test if parsing succeeds.
std::string parse_error(const GgufBytes& b) {
  try {
    File::parse(b.bytes(), "crafted.gguf");
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "parse succeeded but should have failed";
  return "";
}

#define EXPECT_PARSE_ERROR(bytes, offset, text)                          \
  do {                                                                   \
    const std::string message = parse_error(bytes);                      \
    EXPECT_NE(message.find("crafted.gguf: byte " #offset ":"), std::string::npos) << message; \
    EXPECT_NE(message.find(text), std::string::npos) << message;         \
  } while (0)

// A small valid file: one metadata entry and one 32-element F32 tensor.
GgufBytes valid_file() {
  GgufBytes b;
  b.header(1, 1).kv_str("general.architecture", "test").tensor("w", {32}, 0, 0).pad_to(32).zeros(128);
  return b;
}

TEST(GgufValidation, ValidFileParses) {
  const GgufBytes b = valid_file();
  const File file = File::parse(b.bytes(), "crafted.gguf");
  EXPECT_EQ(file.version(), 3u);
  ASSERT_EQ(file.tensors().size(), 1u);
  EXPECT_EQ(file.tensors()[0].n_bytes, 128u);
  EXPECT_EQ(file.tensors()[0].file_offset, file.data_offset());
  EXPECT_EQ(file.data_offset(), 128u);  // header ends at byte 101, padded to 32
  EXPECT_EQ(file.architecture(), "test");
}

TEST(GgufValidation, EmptyFile) { EXPECT_PARSE_ERROR(GgufBytes(), 0, "file ends while reading the magic"); }

TEST(GgufValidation, BadMagic) {
  GgufBytes b;
  b.u32(0x12345678).u32(3).u64(0).u64(0);
  EXPECT_PARSE_ERROR(b, 0, "not a GGUF file");
}

TEST(GgufValidation, UnsupportedVersions) {
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 0, 1), 4, "version 1");
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 0, 4), 4, "unsupported GGUF version 4");
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 0, 0x03000000), 4, "big-endian");
}

TEST(GgufValidation, HugeCounts) {
  EXPECT_PARSE_ERROR(GgufBytes().header(0, UINT64_MAX), 16, "metadata count");
  EXPECT_PARSE_ERROR(GgufBytes().header(UINT64_MAX, 0), 8, "tensor count");
  EXPECT_PARSE_ERROR(GgufBytes().header(1ull << 40, 0).zeros(100), 8, "cannot fit");
}

TEST(GgufValidation, HugeStringLength) {
  GgufBytes b;
  b.header(0, 1).u64(UINT64_MAX).zeros(16);
  EXPECT_PARSE_ERROR(b, 24, "string length 18446744073709551615 exceeds");
  GgufBytes v;
  v.header(0, 1).str("k").u32(8).u64(1ull << 62).zeros(16);
  EXPECT_PARSE_ERROR(v, 37, "metadata 'k': string length");
}

TEST(GgufValidation, HugeArrayCount) {
  GgufBytes b;
  b.header(0, 1).str("k").u32(9).u32(4).u64(1ull << 61).zeros(64);
  EXPECT_PARSE_ERROR(b, 41, "array of 2305843009213693952 uint32 values cannot fit");
  GgufBytes s;  // string arrays: each element needs at least its 8-byte length
  s.header(0, 1).str("k").u32(9).u32(8).u64(100).zeros(64);
  EXPECT_PARSE_ERROR(s, 41, "cannot fit");
}

TEST(GgufValidation, UnknownValueTypes) {
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 1).str("k").u32(13).u32(0), 33, "unknown value type id 13");
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 1).str("k").u32(9).u32(77).u64(1), 37, "unknown value type id 77");
}

TEST(GgufValidation, DeepNesting) {
  GgufBytes b;
  b.header(0, 1).str("k").u32(9);
  for (int i = 0; i < 20; ++i) b.u32(9).u64(1);
  b.u32(4).u64(1).u32(7);
  const std::string message = parse_error(b);
  EXPECT_NE(message.find("nested deeper than 8"), std::string::npos) << message;
}

TEST(GgufValidation, DuplicateKey) {
  GgufBytes b;
  b.header(0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2);
  EXPECT_PARSE_ERROR(b, 43, "duplicate metadata key 'a.b'");
}

TEST(GgufValidation, EmptyKey) {
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 1).kv_u32("", 1), 24, "empty key");
}

TEST(GgufValidation, BadBool) {
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 1).str("k").u32(7).u8(2), 37, "bool byte is 2");
}

TEST(GgufValidation, BadAlignment) {
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 1).kv_u32("general.alignment", 0), 24, "not a power of two");
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 1).kv_u32("general.alignment", 48), 24, "not a power of two");
  EXPECT_PARSE_ERROR(GgufBytes().header(0, 1).kv_str("general.alignment", "32"), 24, "must be uint32");
}

TEST(GgufValidation, BadDimensionCounts) {
  EXPECT_PARSE_ERROR(GgufBytes().header(1, 0).tensor("w", {}, 0, 0).zeros(64), 33, "0 dimensions");
  EXPECT_PARSE_ERROR(GgufBytes().header(1, 0).tensor("w", {1, 1, 1, 1, 1}, 0, 0).zeros(64), 33,
                     "5 dimensions");
}

TEST(GgufValidation, BadDims) {
  EXPECT_PARSE_ERROR(GgufBytes().header(1, 0).tensor("w", {32, 0}, 0, 0).zeros(64), 45, "dimension 1 is 0");
  EXPECT_PARSE_ERROR(GgufBytes().header(1, 0).tensor("w", {1ull << 63}, 0, 0).zeros(64), 37,
                     "dimension 0 is 9223372036854775808");
  // 2^32 * 2^32 overflows int64 elements.
  EXPECT_PARSE_ERROR(GgufBytes().header(1, 0).tensor("w", {1ull << 32, 1ull << 32}, 0, 0).zeros(64),
                     45, "element count overflows");
}

TEST(GgufValidation, UnknownTensorType) {
  EXPECT_PARSE_ERROR(GgufBytes().header(1, 0).tensor("w", {32}, 4, 0).zeros(64), 45,
                     "tensor 'w': unknown tensor type id 4");
  EXPECT_PARSE_ERROR(GgufBytes().header(1, 0).tensor("w", {32}, 1000, 0).zeros(64), 45,
                     "unknown tensor type id 1000");
}

TEST(GgufValidation, RowNotMultipleOfBlock) {
  EXPECT_PARSE_ERROR(GgufBytes().header(1, 0).tensor("w", {100, 2}, 12, 0).zeros(64), 53,
                     "row length 100 is not a multiple of the Q4_K block size 256");
}

TEST(GgufValidation, UnalignedOffset) {
  EXPECT_PARSE_ERROR(GgufBytes().header(1, 0).tensor("w", {32}, 0, 4).pad_to(32).zeros(256), 49,
                     "data offset 4 is not a multiple of the alignment 32");
}

TEST(GgufValidation, TensorOutsideFile) {
  GgufBytes b;
  b.header(1, 0).tensor("w", {32}, 0, 0).pad_to(32).zeros(64);  // needs 128 bytes, has 64
  EXPECT_PARSE_ERROR(b, 24, "tensor 'w': data [0, +128) lies outside the 64-byte data section");
  GgufBytes far;
  far.header(1, 0).tensor("w", {32}, 0, 1ull << 62).pad_to(32).zeros(256);
  EXPECT_PARSE_ERROR(far, 24, "lies outside");
  GgufBytes wrap;  // offset + size wraps around 2^64
  wrap.header(1, 0).tensor("w", {32}, 0, UINT64_MAX - 31).pad_to(32).zeros(256);
  EXPECT_PARSE_ERROR(wrap, 24, "lies outside");
}

TEST(GgufValidation, DataSectionPastEnd) {
  GgufBytes b;
  b.header(1, 0).tensor("w", {32}, 0, 0);  // no padding, no data
  EXPECT_PARSE_ERROR(b, 57, "data section would start at byte 64");
}

TEST(GgufValidation, OverlappingTensors) {
  GgufBytes b;
  b.header(2, 0).tensor("a", {64}, 0, 0).tensor("b", {32}, 0, 128).pad_to(32).zeros(512);
  EXPECT_PARSE_ERROR(b, 57, "tensor 'b' (data at 128) overlaps tensor 'a' (data [0, +256))");
}

TEST(GgufValidation, DuplicateTensorName) {
  GgufBytes b;
  b.header(2, 0).tensor("a", {32}, 0, 0).tensor("a", {32}, 0, 128).pad_to(32).zeros(512);
  EXPECT_PARSE_ERROR(b, 57, "duplicate tensor name 'a'");
}

TEST(GgufValidation, EveryTruncationFails) {
  const GgufBytes b = valid_file();
  for (size_t n = 0; n < b.size(); ++n) {
    std::vector<uint8_t> cut(b.bytes().begin(), b.bytes().begin() + n);
    EXPECT_THROW(File::parse(cut, "cut.gguf"), Error) << "prefix of " << n << " bytes";
  }
}

// Flipping any single bit of the header either still gives a valid file or an Error;
// nothing else (no crash, no other exception type, no out-of-bounds read under ASan).
TEST(GgufValidation, BitFlipsGiveErrorOrValidFile) {
  const GgufBytes b = valid_file();
  size_t errors = 0;
  for (size_t byte = 0; byte < 128 && byte < b.size(); ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      std::vector<uint8_t> flipped = b.bytes();
      flipped[byte] ^= static_cast<uint8_t>(1u << bit);
      try {
        const File file = File::parse(flipped, "flipped.gguf");
        for (const TensorInfo& t : file.tensors()) {
          EXPECT_LE(t.file_offset + t.n_bytes, flipped.size());
        }
      } catch (const Error&) {
        ++errors;
      }
    }
  }
  EXPECT_GT(errors, 100u);  // most header bits matter
}

TEST(GgufValidation, RandomGarbageAfterValidHeaderStart) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 2000; ++i) {
    GgufBytes b;
    b.header(rng() % 4, rng() % 4);
    const size_t n = rng() % 200;
    for (size_t j = 0; j < n; ++j) b.u8(static_cast<uint8_t>(rng() % 16));  // small values hit more branches
    try {
      File::parse(b.bytes(), "random.gguf");
    } catch (const Error&) {
    }
  }
}

}  // namespace
}  // namespace tandem::gguf
