// The model-output parser: reasoning split, tool calls of both Qwen formats (clean,
// several, malformed, truncated, without opener), parameter types from the schema, and
// streaming prefixes that never have to take content back. Tool calls are also rendered by
// the real Qwen chat templates (../shared/data/templates) and parsed back.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "support/test_support.h"
#include "text/chat_output.h"
#include "text/chat_template.h"

namespace tandem::text {
namespace {

using Json = nlohmann::json;

ChatOutputOptions with_tools(Json tools = Json::array()) {
  ChatOutputOptions o;
  o.parse_tool_calls = true;
  o.tools = std::move(tools);
  return o;
}

const Json kWeatherTool = Json::parse(R"([{"type":"function","function":{"name":"get_weather","parameters":{
  "type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"},"metric":{"type":"boolean"},
  "zip":{"type":"string"},"where":{"type":"object"}}}}}])");

TEST(ChatOutput, ReasoningIsSplitFromContent) {
  ChatOutputOptions o;
  ParsedChatOutput p = parse_chat_output("<think>\nLet me think.\n</think>\n\nThe answer is 4.", o, true);
  EXPECT_EQ(p.reasoning, "Let me think.");
  EXPECT_EQ(p.content, "The answer is 4.");
  // The template opened <think> in the prompt (Qwen3.5): the output starts inside it.
  o.starts_in_reasoning = true;
  p = parse_chat_output("step 1\n</think>\n\nDone", o, true);
  EXPECT_EQ(p.reasoning, "step 1");
  EXPECT_EQ(p.content, "Done");
  // Cut off while thinking: what was written is reasoning, no content.
  p = parse_chat_output("still thinking", o, true);
  EXPECT_EQ(p.reasoning, "still thinking");
  EXPECT_EQ(p.content, "");
  // No think block at all.
  o.starts_in_reasoning = false;
  p = parse_chat_output("Plain answer.", o, true);
  EXPECT_EQ(p.reasoning, "");
  EXPECT_EQ(p.content, "Plain answer.");
}

TEST(ChatOutput, JsonToolCalls) {
  const ParsedChatOutput p = parse_chat_output(
      "I'll check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>\n"
      "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Oslo\"}}\n</tool_call>",
      with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 2u);
  EXPECT_EQ(p.tool_calls[0].name, "get_weather");
  EXPECT_EQ(Json::parse(p.tool_calls[0].arguments), Json::parse(R"({"city":"Paris","days":3})"));
  EXPECT_EQ(Json::parse(p.tool_calls[1].arguments), Json::parse(R"({"city":"Oslo"})"));
  EXPECT_EQ(p.content, "I'll check.\n\n");
}

TEST(ChatOutput, XmlToolCallsTakeTheSchemaTypes) {
  const ParsedChatOutput p = parse_chat_output(
      "<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n<parameter=days>\n5\n</parameter>\n"
      "<parameter=metric>\ntrue\n</parameter>\n<parameter=zip>\n01234\n</parameter>\n<parameter=where>\n{\"lat\": 1.5}\n"
      "</parameter>\n</function>\n</tool_call>",
      with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(p.tool_calls[0].name, "get_weather");
  // "01234" stays a string because the schema says string; 5 and true become JSON values.
  EXPECT_EQ(Json::parse(p.tool_calls[0].arguments),
            Json::parse(R"({"city":"New York","days":5,"metric":true,"zip":"01234","where":{"lat":1.5}})"));
  EXPECT_EQ(p.content, "");
}

// Written by Qwen2.5-Coder-0.5B given the Qwen3-Coder template (seen through tandem serve).
TEST(ChatOutput, AttributeStyleParametersAndUnofferedNames) {
  ParsedChatOutput p = parse_chat_output(
      "<tool_call>\n<function=get_weather>\n<parameter=city=\"Paris\">\n<parameter=days=\"3\">\n</function>\n</tool_call>",
      with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(Json::parse(p.tool_calls[0].arguments), Json::parse(R"({"city":"Paris","days":3})"));
  // The template's example function, not one the request offered: content, as written.
  const std::string text = "<tool_call>\n<function=example_function_name>\n<parameter=x>\n1\n</parameter>\n</function>\n</tool_call>";
  p = parse_chat_output(text, with_tools(kWeatherTool), true);
  EXPECT_TRUE(p.tool_calls.empty());
  EXPECT_EQ(p.content, text);
}

TEST(ChatOutput, ToleratesMissingOpenerAndMissingCloserAtTheEnd) {
  // No <tool_call> opener (a common slip of small models), XML form.
  ParsedChatOutput p = parse_chat_output("<function=get_weather>\n<parameter=city>\nRome\n</parameter>\n</function>\n</tool_call>",
                                         with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(Json::parse(p.tool_calls[0].arguments), Json::parse(R"({"city":"Rome"})"));
  // No opener, JSON form, text before it stays content.
  p = parse_chat_output("Sure. {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bern\"}}</tool_call>",
                        with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(p.content, "Sure. ");
  // Generation stopped before </tool_call> (EOS right after the call).
  p = parse_chat_output("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Lima\"}}", with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(Json::parse(p.tool_calls[0].arguments), Json::parse(R"({"city":"Lima"})"));
  // XML parameter without its closer, at the end.
  p = parse_chat_output("<tool_call>\n<function=get_weather>\n<parameter=city>\nKyiv\n", with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(Json::parse(p.tool_calls[0].arguments), Json::parse(R"({"city":"Kyiv"})"));
}

// Small Qwen models often answer a tool request with the bare JSON object (seen with
// Qwen2.5-Coder-0.5B through tandem serve).
TEST(ChatOutput, AnAnswerThatIsOnlyBareJsonCallsIsToolCalls) {
  ParsedChatOutput p = parse_chat_output("{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
                                         with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(Json::parse(p.tool_calls[0].arguments), Json::parse(R"({"city":"Paris"})"));
  EXPECT_EQ(p.content, "");
  p = parse_chat_output("{\"name\": \"get_weather\", \"arguments\": {\"city\": \"A\"}}\n"
                        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"B}\"}}",
                        with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 2u);
  EXPECT_EQ(Json::parse(p.tool_calls[1].arguments), Json::parse(R"({"city":"B}"})"));
  // In a Markdown fence (Qwen2.5-Coder-0.5B does this too).
  p = parse_chat_output("```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\"city\": \"Paris\", \"days\": 3}\n}\n```",
                        with_tools(kWeatherTool), true);
  ASSERT_EQ(p.tool_calls.size(), 1u);
  EXPECT_EQ(Json::parse(p.tool_calls[0].arguments), Json::parse(R"({"city":"Paris","days":3})"));
  // Not offered, or prose around it: content as written.
  for (const std::string& text : {std::string("{\"name\": \"launch\", \"arguments\": {}}"),
                                 std::string("Call it as {\"name\": \"get_weather\", \"arguments\": {}} please")}) {
    p = parse_chat_output(text, with_tools(kWeatherTool), true);
    EXPECT_TRUE(p.tool_calls.empty()) << text;
    EXPECT_EQ(p.content, text);
  }
}

TEST(ChatOutput, MalformedCallsStayContentAndNothingIsLost) {
  for (const std::string& text : {
           std::string("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": }\n</tool_call>"),  // bad JSON
           std::string("<tool_call>\nnot a call at all\n</tool_call>"),
           std::string("<tool_call>\n{\"arguments\": {}}\n</tool_call>"),                                    // no name
           std::string("<tool_call>\n<function=>\n</function>\n</tool_call>"),                               // empty name
           std::string("<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": 1"),                           // truncated JSON
       }) {
    const ParsedChatOutput p = parse_chat_output(text, with_tools(kWeatherTool), true);
    EXPECT_TRUE(p.tool_calls.empty()) << text;
    // The model's text is all still there (the call's body included).
    EXPECT_NE(p.content.find(text.substr(12)), std::string::npos) << text << " -> " << p.content;
  }
  // Tools not offered: markup is plain content.
  const ParsedChatOutput p = parse_chat_output("<tool_call>{\"name\": \"x\", \"arguments\": {}}</tool_call>", ChatOutputOptions{}, true);
  EXPECT_TRUE(p.tool_calls.empty());
  EXPECT_EQ(p.content, "<tool_call>{\"name\": \"x\", \"arguments\": {}}</tool_call>");
}

// Feeding the text a character at a time, each non-final parse is a prefix of the final
// one: content and reasoning only grow, calls appear only once complete.
void expect_prefix_stable(const std::string& text, const ChatOutputOptions& o) {
  const ParsedChatOutput last = parse_chat_output(text, o, true);
  size_t calls = 0;
  for (size_t n = 0; n <= text.size(); ++n) {
    const ParsedChatOutput p = parse_chat_output(std::string_view(text).substr(0, n), o, false);
    ASSERT_EQ(last.content.compare(0, p.content.size(), p.content), 0) << "at " << n << ": '" << p.content << "'";
    ASSERT_EQ(last.reasoning.compare(0, p.reasoning.size(), p.reasoning), 0) << "at " << n;
    ASSERT_GE(p.tool_calls.size(), calls) << "at " << n;
    ASSERT_LE(p.tool_calls.size(), last.tool_calls.size()) << "at " << n;
    for (size_t i = 0; i < p.tool_calls.size(); ++i) {
      EXPECT_EQ(p.tool_calls[i].arguments, last.tool_calls[i].arguments) << "at " << n;
    }
    calls = p.tool_calls.size();
    EXPECT_EQ(p.content.find("<tool_call"), std::string::npos) << "markup leaked at " << n;
    EXPECT_EQ(p.content.find("<think"), std::string::npos) << "markup leaked at " << n;
  }
}

TEST(ChatOutput, StreamingPrefixesNeverTakeContentBack) {
  expect_prefix_stable("<think>\nhmm\n</think>\n\nLet me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": "
                       "{\"city\": \"Paris\"}}\n</tool_call>\nand <b>bold</b> text",
                       with_tools(kWeatherTool));
  expect_prefix_stable("A <tool_call>\n<function=get_weather>\n<parameter=city>\nX\n</parameter>\n</function>\n</tool_call> B",
                       with_tools(kWeatherTool));
  expect_prefix_stable("x < y and <tool", with_tools(kWeatherTool));
  expect_prefix_stable("{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}", with_tools(kWeatherTool));
  expect_prefix_stable("int f() { return {\"name\"}; }", with_tools(kWeatherTool));
  expect_prefix_stable("```json\n{\n  \"name\": \"get_weather\",\n  \"arguments\": {\"city\": \"Paris\"}\n}\n```",
                       with_tools(kWeatherTool));
  expect_prefix_stable("```python\nprint({\"name\": 1})\n```", with_tools(kWeatherTool));
}

// The real templates render assistant tool calls; their text parses back to the same calls.
TEST(ChatOutput, ToolCallsRoundTripThroughRealQwenTemplates) {
  TANDEM_REQUIRE_SHARED_DATA(shared);
  const nlohmann::ordered_json calls = nlohmann::ordered_json::parse(R"([
    {"type":"function","function":{"name":"get_weather","arguments":{"city":"São Paulo","days":2}}},
    {"type":"function","function":{"name":"get_weather","arguments":{"city":"Oslo","metric":false}}}])");
  for (const char* name : {"Qwen-Qwen2.5-7B-Instruct.jinja", "Qwen-Qwen3-0.6B.jinja", "Qwen3-Coder.jinja", "Qwen3.5-4B.jinja"}) {
    SCOPED_TRACE(name);
    const ChatTemplate chat = ChatTemplate::from_file(shared / "data" / "templates" / name, nullptr);
    ChatInputs in;
    in.tools = nlohmann::ordered_json(kWeatherTool);
    in.messages.push_back({{"role", "user"}, {"content", "Weather?"}});
    in.messages.push_back({{"role", "assistant"}, {"content", ""}, {"tool_calls", calls}});
    const std::string rendered = chat.render(in);
    // What the model would have written: the assistant turn's body.
    const size_t start = rendered.rfind("<|im_start|>assistant\n");
    ASSERT_NE(start, std::string::npos);
    std::string body = rendered.substr(start + 22);
    body = body.substr(0, body.find("<|im_end|>"));
    const ParsedChatOutput p = parse_chat_output(body, with_tools(kWeatherTool), true);
    ASSERT_EQ(p.tool_calls.size(), 2u) << body;
    for (size_t i = 0; i < 2; ++i) {
      EXPECT_EQ(p.tool_calls[i].name, "get_weather");
      EXPECT_EQ(Json::parse(p.tool_calls[i].arguments), Json(calls[i]["function"]["arguments"])) << body;
    }
    EXPECT_EQ(p.content.find_first_not_of(" \n"), std::string::npos) << "content: '" << p.content << "'";
  }
}

}  // namespace
}  // namespace tandem::text
