#include "backend/backend.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"

namespace tandem {

void check_delta_net_rollback(const DeltaNetRollback& r) {
  if (r.keep < 1) fail("delta_net_rollback: keeping {} positions (a verify pass keeps at least its first)", r.keep);
  if (r.conv_out == r.conv_in) fail("delta_net_rollback: the conv state would be rebuilt over itself");
  if ((r.ssm_out == r.ssm_in) != (r.keep == 1)) {
    fail("delta_net_rollback: keeping {} positions with the state {} (it is the input exactly when only the first "
         "position is kept)", r.keep, r.ssm_out == r.ssm_in ? "written over its input" : "in a second buffer");
  }
}

void Backend::moe_experts_streamed(const FfnWeights& w, Backend&, const float*, int64_t, const int32_t*, const float*,
                                   float*) {
  fail("{}: this device cannot stream expert weights from another device", w.gate_exps.name);
}

void Backend::read_weight_rows(const Tensor& w, int64_t row0, int64_t n_rows, void* dst) {
  if (w.interleaved || w.device != Device::Cpu) fail("read_weight_rows '{}': not in host memory in the file's layout", w.name);
  if (row0 < 0 || n_rows < 0 || row0 + n_rows > w.rows()) {
    fail("read_weight_rows '{}': rows [{}, {}) outside its {}", w.name, row0, row0 + n_rows, w.rows());
  }
  std::memcpy(dst, w.row(row0), static_cast<size_t>(n_rows) * w.row_bytes());
}

void Backend::linear(const Tensor& w, const float*, int64_t, float*) {
  fail("{}: this device has no plain linear op (the MTP block runs on the CPU)", w.name);
}

void check_head_subset(const Tensor& head, std::span<const RowRange> subset) {
  const int64_t V = head.rows();
  int64_t at = 0;
  for (const RowRange& r : subset) {
    const bool whole = (r.end - r.begin) % kHeadSubsetRows == 0 || r.end == V;
    if (r.begin < at || r.end <= r.begin || r.end > V || r.begin % kHeadSubsetRows != 0 || !whole) {
      fail("logits '{}': head rows [{}, {}) are not sorted whole runs of {} within its {} rows", head.name, r.begin,
           r.end, kHeadSubsetRows, V);
    }
    at = r.end;
  }
}

void fill_outside_subset(std::span<const RowRange> subset, int64_t V, float* logits) {
  constexpr float kNone = -std::numeric_limits<float>::infinity();
  int64_t at = 0;
  for (const RowRange& r : subset) {
    std::fill(logits + at, logits + r.begin, kNone);
    at = r.end;
  }
  std::fill(logits + at, logits + V, kNone);
}

void Backend::logits_subset(const std::vector<float>& norm, float eps, const Tensor& head, const float* x,
                            int64_t rows, int64_t D, float* scratch, float* logits, std::span<const RowRange> subset) {
  check_head_subset(head, subset);
  this->logits(norm, eps, head, x, rows, D, scratch, logits);
  for (int64_t t = 0; t < rows; ++t) fill_outside_subset(subset, head.rows(), logits + t * head.rows());
}

StoredRowsUnpack* Backend::read_stored_rows(const Tensor& w, int64_t row0, int64_t n_rows, void* dst) {
  read_weight_rows(w, row0, n_rows, dst);
  return nullptr;
}

}  // namespace tandem
