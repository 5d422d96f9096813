# Tokenizer sources (text/), included by the top-level CMakeLists after `tandem` exists.
target_sources(tandem PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/unicode.cpp
  ${CMAKE_CURRENT_LIST_DIR}/vocab.cpp
  ${CMAKE_CURRENT_LIST_DIR}/pretokenizer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/bpe.cpp
  ${CMAKE_CURRENT_LIST_DIR}/spm.cpp
  ${CMAKE_CURRENT_LIST_DIR}/tokenizer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/detokenizer.cpp
)

# Throughput benchmark against HF tokenizers (bench/tokenizer_bench.py drives it).
add_executable(tokenizer_bench ${CMAKE_SOURCE_DIR}/bench/tokenizer_bench.cpp)
target_link_libraries(tokenizer_bench PRIVATE tandem)
