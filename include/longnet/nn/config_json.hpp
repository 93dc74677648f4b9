// SPDX-License-Identifier: Apache-2.0
#pragma once
// Reading torchscale-style model configs (DecoderConfig, EncoderConfig field names) from JSON: the typed
// field readers shared by decoder_config.hpp and encoder_config.hpp, and the strict text / file readers.
// Every error is std::invalid_argument prefixed with the config kind ("decoder config: ...") and naming
// the field and its value. Integers outside int64 are refused, not wrapped; lists accept a JSON list,
// a single integer or a string such as "[16,32]" (torchscale command lines pass them that way).

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "longnet/io/strict_json.hpp"
#include "longnet/tensor.hpp"

namespace longnet::nn::detail {

class config_reader {
public:
    config_reader(const nlohmann::json& j, std::string kind) : j_(j), kind_(std::move(kind)) {
        if (!j.is_object()) throw std::invalid_argument(kind_ + ": expected a JSON object");
    }

    // An integer JSON value as index_t; a float, a non-number or a value outside int64 throws.
    static index_t integer_value(const nlohmann::json& v, const std::string& kind, const char* field) {
        if (!v.is_number_integer())
            throw std::invalid_argument(kind + ": " + field + " must be an integer, got " + io::describe_json(v));
        if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
            throw std::invalid_argument(kind + ": " + field + " = " + io::describe_json(v) + " is out of range");
        return static_cast<index_t>(v.get<std::int64_t>());
    }

    void integer(const char* field, index_t& out) const {
        auto it = j_.find(field);
        if (it == j_.end()) return;
        out = integer_value(*it, kind_, field);
    }
    void number(const char* field, double& out) const {
        auto it = j_.find(field);
        if (it == j_.end()) return;
        if (!it->is_number())
            throw std::invalid_argument(kind_ + ": " + field + " must be a number, got " + io::describe_json(*it));
        out = it->get<double>();
    }
    bool flag(const char* field, bool fallback) const {
        auto it = j_.find(field);
        if (it == j_.end() || it->is_null()) return fallback;
        if (!it->is_boolean())
            throw std::invalid_argument(kind_ + ": " + field + " must be true or false, got " + io::describe_json(*it));
        return it->get<bool>();
    }
    // Throws unless the flag (default `fallback`) equals `supported`.
    void require(const char* field, bool fallback, bool supported, const char* why) const {
        if (flag(field, fallback) != supported)
            throw std::invalid_argument(kind_ + ": " + field + " = " + (supported ? "false" : "true") +
                                        " is not supported: " + why);
    }
    void list(const char* field, std::vector<index_t>& out, std::size_t max_entries) const {
        auto it = j_.find(field);
        if (it == j_.end()) return;
        nlohmann::json v = *it;
        if (v.is_string()) {  // "[16,32]" or "16"
            const std::string& text = v.get_ref<const std::string&>();
            try {
                v = io::parse_strict_json(text.data(), text.data() + text.size());
            } catch (const io::strict_json_error&) {
                throw std::invalid_argument(kind_ + ": " + field + " string " + io::describe_json(*it) +
                                            " is not a list of integers");
            }
        }
        if (v.is_number_integer()) v = nlohmann::json::array({v});
        if (!v.is_array())
            throw std::invalid_argument(kind_ + ": " + field + " must be a list of integers, got " + io::describe_json(*it));
        if (v.size() > max_entries)
            throw std::invalid_argument(kind_ + ": " + field + " has " + std::to_string(v.size()) + " entries (limit " +
                                        std::to_string(max_entries) + ")");
        out.clear();
        for (const auto& e : v) {
            if (!e.is_number_integer())
                throw std::invalid_argument(kind_ + ": " + field + " must be a list of integers, got " +
                                            io::describe_json(*it));
            out.push_back(integer_value(e, kind_, field));
        }
    }
    // Throws unless the field is absent, null or the integer 0.
    void zero(const char* field) const {
        auto it = j_.find(field);
        if (it == j_.end() || it->is_null()) return;
        if (!it->is_number_integer() || it->get<std::int64_t>() != 0 ||
            (it->is_number_unsigned() && it->get<std::uint64_t>() != 0))
            throw std::invalid_argument(kind_ + ": " + field + " = " + io::describe_json(*it) + " is not supported (only 0)");
    }
    // Throws unless activation_fn is absent or "gelu".
    void gelu_only() const {
        if (auto it = j_.find("activation_fn"); it != j_.end() && !(it->is_string() && it->get<std::string>() == "gelu"))
            throw std::invalid_argument(kind_ + ": activation_fn = " + io::describe_json(*it) +
                                        " is not supported (only \"gelu\")");
    }

private:
    const nlohmann::json& j_;
    std::string kind_;
};

// Config::from_json of the text of a config.json (at most max_bytes, strict JSON); `name` stands for
// the file in messages.
template <class Config>
Config config_from_json_text(std::string_view text, const std::string& name, const std::string& kind,
                             std::size_t max_bytes) {
    if (text.size() > max_bytes)
        throw std::invalid_argument(kind + ": " + name + " is " + std::to_string(text.size()) + " bytes (limit " +
                                    std::to_string(max_bytes) + ")");
    nlohmann::json j;
    try {
        j = io::parse_strict_json(text.data(), text.data() + text.size());
    } catch (const io::strict_json_error& e) {
        throw std::invalid_argument(kind + ": " + name + " is not valid JSON: " + e.what());
    }
    try {
        return Config::from_json(j);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument(name + ": " + e.what());
    }
}

// The same of a file, read up to one block past max_bytes.
template <class Config>
Config config_from_file(const std::string& path, const std::string& kind, std::size_t max_bytes) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::invalid_argument(kind + ": cannot open " + path);
    std::string text;
    char buffer[4096];
    while (in.read(buffer, sizeof buffer) || in.gcount() > 0) {  // stop one block past the limit
        text.append(buffer, static_cast<std::size_t>(in.gcount()));
        if (text.size() > max_bytes) break;
    }
    if (in.bad()) throw std::invalid_argument(kind + ": read error in " + path);
    return config_from_json_text<Config>(text, path, kind, max_bytes);
}

}  // namespace longnet::nn::detail
