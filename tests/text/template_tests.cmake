# Chat templates: interpreter unit tests, then the jinja2 oracle over every template in
# ../shared/data/templates (and the real model's own) x tests/data/conversations.
tandem_add_gtest(jinja_test ${CMAKE_CURRENT_LIST_DIR}/jinja_test.cpp)

# Python jinja2 configured as transformers configures it renders each case; tandem's CLI
# must print the same bytes, or fail where jinja2 raises.
set(_template_oracle_args ${CMAKE_SOURCE_DIR}/tests/oracle/template_render.py compare $<TARGET_FILE:tandem_cli>
    --templates ${TANDEM_SHARED}/data/templates --conversations ${CMAKE_SOURCE_DIR}/tests/data/conversations)
if(TANDEM_TEST_MODEL)
  list(APPEND _template_oracle_args --model ${TANDEM_TEST_MODEL})
endif()
add_test(NAME template_oracle_matrix COMMAND ${TANDEM_PYTHON} ${_template_oracle_args})

# The same check for single features (tests/oracle/template_snippets.json).
add_test(NAME template_oracle_snippets
         COMMAND ${TANDEM_PYTHON} ${CMAKE_SOURCE_DIR}/tests/oracle/template_render.py snippets $<TARGET_FILE:tandem_cli>
                 ${CMAKE_SOURCE_DIR}/tests/oracle/template_snippets.json)

# Model output -> reasoning, content and tool calls (the server's parser).
tandem_add_gtest(chat_output_test ${CMAKE_CURRENT_LIST_DIR}/chat_output_test.cpp)
