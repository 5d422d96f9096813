#include "quant/tensor_rows.h"

#include "core/error.h"
#include "quant/dequantize.h"

namespace tandem::quant {

void require_dequantizable(const gguf::TensorInfo& tensor) {
  if (!can_dequantize(tensor.type)) {
    fail("tensor '{}' has type {} (id {}), which tandem cannot decode yet", tensor.name,
         dtype_name(tensor.type), static_cast<uint32_t>(tensor.type));
  }
}

void dequantize_rows(const gguf::TensorInfo& tensor, int64_t first_row, int64_t n_rows, float* dst) {
  require_dequantizable(tensor);
  const int64_t rows = tensor.rows();
  if (first_row < 0 || n_rows < 0 || first_row > rows || n_rows > rows - first_row) {
    fail("tensor '{}': rows [{}, {}) are outside its {} rows", tensor.name, first_row,
         first_row + n_rows, rows);
  }
  const DTypeInfo& info = dtype_info(tensor.type);
  const int64_t row_elems = tensor.dims[0];
  const uint64_t row_bytes = static_cast<uint64_t>(row_elems) / info.block_elems * info.block_bytes;
  dequantize_row(tensor.type, tensor.data + static_cast<uint64_t>(first_row) * row_bytes, dst,
                 row_elems * n_rows);
}

}  // namespace tandem::quant
