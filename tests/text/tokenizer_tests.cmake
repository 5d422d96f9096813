# Tokenizer tests (included from tests/text/CMakeLists.txt).
#  tokenizer_convert        tools/tokenizer converts the Qwen3 tokenizer.json to GGUF vocabs
#  tokenizer_oracle_expect  HF tokenizers (PyPI) writes the expected ids for the corpus
#  tokenizer_test           C++: vectors, corpus vs oracle, round trips, streaming, specials
set(_tok_dir ${CMAKE_BINARY_DIR}/tokenizer)
set(_qwen3_json ${TANDEM_SHARED}/data/tokenizers/qwen3/tokenizer.json)

add_test(NAME tokenizer_convert
  COMMAND ${TANDEM_PYTHON} ${CMAKE_SOURCE_DIR}/tools/tokenizer/convert_tokenizer_json.py
          ${_qwen3_json} ${_tok_dir}/qwen3-vocab.gguf --pre qwen2)
add_test(NAME tokenizer_convert_qwen35
  COMMAND ${TANDEM_PYTHON} ${CMAKE_SOURCE_DIR}/tools/tokenizer/convert_tokenizer_json.py
          ${_qwen3_json} ${_tok_dir}/qwen3-vocab-qwen35.gguf --pre qwen35)
# One fixture name for all setup steps: gtest_discover_tests cannot pass a list-valued
# property (the ';' splits it), so the gtests below require just `tokenizer_data`.
set_tests_properties(tokenizer_convert tokenizer_convert_qwen35 PROPERTIES FIXTURES_SETUP tokenizer_data)

add_test(NAME tokenizer_oracle_expect
  COMMAND ${TANDEM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/oracle/tokenizer_oracle.py
          ${_qwen3_json} ${CMAKE_SOURCE_DIR}/tests/data/tokenizer/corpus.txt
          ${_tok_dir}/qwen3-expected.json)
set_tests_properties(tokenizer_oracle_expect PROPERTIES FIXTURES_SETUP tokenizer_data)

add_executable(tokenizer_test tokenizer_vectors_test.cpp tokenizer_corpus_test.cpp
               tokenizer_unit_test.cpp)
target_link_libraries(tokenizer_test PRIVATE tandem_test_support GTest::gtest_main)
target_compile_definitions(tokenizer_test PRIVATE TANDEM_TOKENIZER_BUILD_DIR="${_tok_dir}")
gtest_discover_tests(tokenizer_test DISCOVERY_TIMEOUT 60 TEST_PREFIX tokenizer.
  PROPERTIES FIXTURES_REQUIRED tokenizer_data)

# The CLI: ids as JSON, a missing model and a file without a tokenizer are errors.
add_test(NAME tokenizer_cli
  COMMAND ${TANDEM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/oracle/tokenizer_cli_check.py
          $<TARGET_FILE:tandem_cli> ${_qwen3_json} ${_tok_dir}/qwen3-vocab.gguf ${TANDEM_SHARED})
set_tests_properties(tokenizer_cli PROPERTIES FIXTURES_REQUIRED tokenizer_data)
