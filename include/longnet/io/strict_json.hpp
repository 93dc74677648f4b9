// SPDX-License-Identifier: Apache-2.0
#pragma once
// Strict JSON for file headers read from elsewhere (the .safetensors header, config.json).
//
//   nlohmann::json j = longnet::io::parse_strict_json(text.data(), text.data() + text.size());
//   "got " + longnet::io::describe_json(value)        // bounded text for error messages
//
// parse_strict_json accepts exactly one JSON value (whitespace around it, nothing else), rejects
// duplicate keys in any object (nlohmann would keep the last one silently: two tensors of one name are
// ambiguous), and nesting deeper than max_depth arrays/objects (default 64: no file format here needs
// more than 3, and the depth bounds every recursive walk of the result, e.g. nlohmann's dump()).
// Invalid UTF-8 inside strings is rejected by nlohmann's lexer. Every failure throws
// strict_json_error, whose what() says what is wrong and where (nlohmann's byte position).
//
// describe_json never recurses and never returns more than ~100 characters: a scalar is dumped (a long
// string is cut), an array or object is described by its size ("an array of 3 elements: [1, 2, 3]",
// short arrays of scalars are shown in full).
//
// Needs nlohmann/json (header only).

#include <cstddef>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace longnet::io {

class strict_json_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Largest nesting depth (arrays and objects) parse_strict_json accepts by default.
inline constexpr std::size_t default_max_json_depth = 64;

inline std::string describe_json(const nlohmann::json& j) {
    constexpr std::size_t max_string = 64;
    if (j.is_string()) {
        const auto& s = j.get_ref<const std::string&>();
        if (s.size() <= max_string) return j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
        return nlohmann::json(s.substr(0, max_string)).dump(-1, ' ', true, nlohmann::json::error_handler_t::replace) +
               "... (a string of " + std::to_string(s.size()) + " bytes)";
    }
    if (j.is_array()) {
        bool all_scalars = j.size() <= 8;
        for (const auto& e : j)
            if (!all_scalars || e.is_structured() || (e.is_string() && e.get_ref<const std::string&>().size() > 16))
                all_scalars = false;
        std::string s = "an array of " + std::to_string(j.size()) + (j.size() == 1 ? " element" : " elements");
        if (all_scalars && !j.empty()) s += ": " + j.dump(-1, ' ', true, nlohmann::json::error_handler_t::replace);
        return s;
    }
    if (j.is_object()) return "an object with " + std::to_string(j.size()) + (j.size() == 1 ? " key" : " keys");
    return j.dump();  // number, boolean, null (discarded values do not occur here)
}

namespace strict_json_detail {
// Thrown from inside nlohmann's parser callback, turned into strict_json_error by parse_strict_json.
struct limit_exceeded {
    std::string problem;
};
}  // namespace strict_json_detail

inline nlohmann::json parse_strict_json(const char* first, const char* last,
                                        std::size_t max_depth = default_max_json_depth) {
    using nlohmann::json;
    std::vector<std::set<std::string>> open_objects;  // keys seen so far, innermost object last
    std::size_t depth = 0;
    const json::parser_callback_t check = [&](int, json::parse_event_t event, json& parsed) -> bool {
        switch (event) {
            case json::parse_event_t::object_start:
            case json::parse_event_t::array_start:
                if (++depth > max_depth)
                    throw strict_json_detail::limit_exceeded{"nesting deeper than " + std::to_string(max_depth) +
                                                             " arrays/objects"};
                if (event == json::parse_event_t::object_start) open_objects.emplace_back();
                break;
            case json::parse_event_t::object_end:
            case json::parse_event_t::array_end:
                --depth;
                if (event == json::parse_event_t::object_end) open_objects.pop_back();
                break;
            case json::parse_event_t::key:
                if (!open_objects.back().insert(parsed.get<std::string>()).second)
                    throw strict_json_detail::limit_exceeded{"duplicate key " + describe_json(parsed)};
                break;
            case json::parse_event_t::value: break;
        }
        return true;
    };
    try {
        return json::parse(first, last, check, /*allow_exceptions=*/true, /*ignore_comments=*/false);
    } catch (const strict_json_detail::limit_exceeded& e) {
        throw strict_json_error(e.problem);
    } catch (const json::exception& e) {
        // nlohmann's message quotes the last token read, which can be the whole (huge) input: cut it.
        std::string what = e.what();
        if (what.size() > 200) what = what.substr(0, 200) + "...";
        throw strict_json_error(what);
    }
}

}  // namespace longnet::io
