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

if(TANDEM_FUZZ)
  # Random bytes through encode (with and without parse_special) and the decode round trip.
  # Run: TANDEM_FUZZ_VOCAB=path/to/vocab.gguf build/fuzz/tokenizer_fuzz -max_total_time=60
  add_executable(tokenizer_fuzz ${CMAKE_SOURCE_DIR}/fuzz/tokenizer_fuzz.cpp)
  target_compile_options(tokenizer_fuzz PRIVATE -fsanitize=fuzzer)
  target_link_libraries(tokenizer_fuzz PRIVATE tandem -fsanitize=fuzzer)
endif()

# Throughput benchmark against HF tokenizers (bench/tokenizer_bench.py drives it).
add_executable(tokenizer_bench ${CMAKE_SOURCE_DIR}/bench/tokenizer_bench.cpp)
target_link_libraries(tokenizer_bench PRIVATE tandem)
