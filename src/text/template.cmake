# Chat templates: the Jinja interpreter (src/text/jinja) and the chat-template API.
target_sources(tandem PRIVATE
  ${CMAKE_CURRENT_LIST_DIR}/jinja/value.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja/lexer.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja/parser.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja/interpreter.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja/operators.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja/filters.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja/tests.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja/methods.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja/text_ops.cpp
  ${CMAKE_CURRENT_LIST_DIR}/jinja/template.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chat_template.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chat_prompt.cpp
  ${CMAKE_CURRENT_LIST_DIR}/chat_output.cpp
)
