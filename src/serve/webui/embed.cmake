# Turns the chat page's files (src/serve/webui/*.html, *.css, *.js) into a C++ source of
# byte arrays, so the page is part of the binary. Run by the build (cmake -P) whenever a
# file changes:  cmake -DSOURCE_DIR=... -DOUTPUT=... -P embed.cmake
file(GLOB files RELATIVE ${SOURCE_DIR} ${SOURCE_DIR}/*.html ${SOURCE_DIR}/*.css ${SOURCE_DIR}/*.js)
list(SORT files)
set(arrays "")
set(table "")
set(i 0)
foreach(name IN LISTS files)
  file(READ ${SOURCE_DIR}/${name} hex HEX)
  string(LENGTH "${hex}" hex_len)
  math(EXPR size "${hex_len} / 2")
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  if(name MATCHES "\\.html$")
    set(mime "text/html; charset=utf-8")
  elseif(name MATCHES "\\.css$")
    set(mime "text/css; charset=utf-8")
  else()
    set(mime "text/javascript; charset=utf-8")
  endif()
  string(APPEND arrays "// ${name}\nconst unsigned char k${i}[] = {${bytes}0x00};\n")
  string(APPEND table "    {\"/${name}\", \"${mime}\", {reinterpret_cast<const char*>(k${i}), ${size}}},\n")
  math(EXPR i "${i} + 1")
endforeach()
set(text "// Generated from src/serve/webui/ by embed.cmake at build time: do not edit.
#include \"serve/webui.h\"

namespace tandem::serve {
namespace {
${arrays}}  // namespace

std::span<const WebAsset> web_assets() {
  static const WebAsset assets[] = {
${table}  };
  return assets;
}

}  // namespace tandem::serve
")
# Rewrite only on change, so an unchanged page does not relink the binary.
if(EXISTS ${OUTPUT})
  file(READ ${OUTPUT} old)
endif()
if(NOT "${old}" STREQUAL "${text}")
  file(WRITE ${OUTPUT} "${text}")
endif()
