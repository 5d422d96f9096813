// Grammars from arbitrary bytes: the input up to the first NUL is GBNF text (or, when it
// parses as JSON, a JSON Schema compiled to GBNF, which must then compile), the rest is
// matched against the grammar. Errors are tandem::Error; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "grammar/matcher.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  const size_t nul = all.find('\0');
  const std::string_view text = all.substr(0, nul);
  const std::string_view input = nul == std::string_view::npos ? std::string_view() : all.substr(nul + 1, 256);
  std::string gbnf(text);
  const auto schema = nlohmann::ordered_json::parse(text, nullptr, false);
  const bool from_schema = !schema.is_discarded();
  if (from_schema) {
    try {
      gbnf = tandem::grammar::json_schema_to_gbnf(schema);
    } catch (const tandem::Error&) {
      return 0;
    }
  }
  try {
    tandem::grammar::Matcher m(tandem::grammar::compile(gbnf));
    m.walk(m.start(), input);
  } catch (const tandem::Error&) {
    if (from_schema) std::abort();  // the schema compiler wrote GBNF its own parser rejects
  }
  return 0;
}
