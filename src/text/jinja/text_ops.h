// Python str operations on UTF-8 text, with Python's definitions of whitespace and
// separators (strip, split, replace, title, ...). Case mapping is ASCII-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tandem::jinja {

// str.strip/lstrip/rstrip; `chars` null means Unicode whitespace.
std::string py_strip(const std::string& s, const std::string* chars, bool left, bool right);
// str.split() / rsplit() with no separator: runs of whitespace, at most `maxsplit` splits (-1: all).
std::vector<std::string> split_whitespace(const std::string& s, int64_t maxsplit, bool from_right);
// str.split(sep) / rsplit(sep).
std::vector<std::string> split_on(const std::string& s, const std::string& sep, int64_t maxsplit, bool from_right);
// str.splitlines(keepends).
std::vector<std::string> split_lines(const std::string& s, bool keepends);
// str.replace(old, new, count).
std::string py_replace(const std::string& s, const std::string& from, const std::string& to, int64_t count);
int64_t count_occurrences(const std::string& s, const std::string& sub);
std::string ascii_upper(std::string s);
std::string ascii_lower(std::string s);
std::string py_title(const std::string& s);
std::string py_capitalize(const std::string& s);

}  // namespace tandem::jinja
