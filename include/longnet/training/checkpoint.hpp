// SPDX-License-Identifier: Apache-2.0
#pragma once
// Writing parameters and gradients as .safetensors (F32 or F64, torchscale names and shapes), and the
// training checkpoint of a run folder:
//
//   DIR/state-<step>.safetensors   everything a resume needs, in the compute type: parameters
//                                  ("param.<name>"), AdamW moments ("exp_avg.<name>",
//                                  "exp_avg_sq.<name>"); metadata: step, data-sampler RNG state
//   DIR/checkpoint.json            {"step": s, "state": "state-<s>.safetensors", ...}: the commit point
//   DIR/model.safetensors          float32 parameters (torchscale state_dict names, with the XPos
//                                  buffers): what longnet_lm and torchscale load
//   DIR/config.json                torchscale DecoderConfig fields
//
// Every file is written under a temporary name in DIR and renamed into place (io::staged_file; a write
// that fails throws io::write_error naming the file). The state file goes first, then checkpoint.json
// (the commit), then model/config, and only then is the previous state file removed: a process killed
// at any moment leaves checkpoint.json naming a complete state file.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "longnet/io/safetensors.hpp"
#include "longnet/io/staged_file.hpp"
#include "longnet/training/parameters.hpp"

namespace longnet::training {

enum class save_dtype { float32, float64 };

inline save_dtype parse_save_dtype(const std::string& s) {
    if (s == "float32" || s == "float") return save_dtype::float32;
    if (s == "float64" || s == "double") return save_dtype::float64;
    throw std::invalid_argument("unknown save dtype '" + s + "' (expected float32 or float64)");
}

// One tensor to write: name, shape and values (converted to the file's dtype on writing).
struct tensor_record {
    std::string name;
    std::vector<std::int64_t> shape;
    const void* data = nullptr;
    bool is_double = false;  // data is double (else float)
};

// The bytes of a .safetensors file holding `tensors` (in this order) as F32 or F64.
inline std::string safetensors_bytes(const std::vector<tensor_record>& tensors, save_dtype dtype,
                                     const std::map<std::string, std::string>& metadata = {}) {
    const std::size_t item = dtype == save_dtype::float32 ? 4 : 8;
    nlohmann::ordered_json header;
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::uint64_t offset = 0;
    for (const auto& t : tensors) {
        std::uint64_t n = 1;
        for (auto e : t.shape) n *= static_cast<std::uint64_t>(e);
        header[t.name] = {{"dtype", dtype == save_dtype::float32 ? "F32" : "F64"},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + n * item}}};
        offset += n * item;
    }
    std::string json = header.dump();
    while ((8 + json.size()) % 8 != 0) json.push_back(' ');  // data section 8-byte aligned
    std::string out;
    out.reserve(8 + json.size() + offset);
    const std::uint64_t header_size = json.size();
    for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((header_size >> (8 * i)) & 0xff));  // little-endian
    out += json;
    for (const auto& t : tensors) {
        std::uint64_t n = 1;
        for (auto e : t.shape) n *= static_cast<std::uint64_t>(e);
        for (std::uint64_t i = 0; i < n; ++i) {
            const double v = t.is_double ? static_cast<const double*>(t.data)[i] : static_cast<const float*>(t.data)[i];
            char bytes[8];
            if (dtype == save_dtype::float32) {
                const float f = static_cast<float>(v);
                std::memcpy(bytes, &f, 4);
            } else {
                std::memcpy(bytes, &v, 8);
            }
            out.append(bytes, item);  // x86/ARM hosts are little-endian; the reader checks the host
        }
    }
    return out;
}

template <class T>
tensor_record record_of(const named_tensor<T>& t, const std::string& prefix = "") {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "float or double tensors only");
    return {prefix + t.name, t.shape, t.data, std::is_same_v<T, double>};
}

// Write named tensors (parameters or gradients) atomically as .safetensors.
template <class T>
void save_tensors(const std::string& path, const std::vector<named_tensor<T>>& tensors, save_dtype dtype,
                  const std::map<std::string, std::string>& metadata = {}) {
    std::vector<tensor_record> records;
    for (const auto& t : tensors) records.push_back(record_of(t));
    io::staged_file f(path, safetensors_bytes(records, dtype, metadata));
    f.commit();
}

// A decoder's parameters plus its XPos buffers (layers.<l>.self_attn.xpos.scale), as torchscale's
// state_dict: what load_decoder reads back.
template <class T>
std::vector<tensor_record> model_records(nn::decoder<T, T>& model, std::vector<named_tensor<T>>& params,
                                         std::vector<std::vector<float>>& zeta_storage) {
    params = named_parameters(model);
    std::vector<tensor_record> out;
    for (const auto& p : params) out.push_back(record_of(p));
    zeta_storage.clear();
    if (model.options.positions == nn::position_encoding::xpos)
        for (const auto& layer : model.layers) zeta_storage.push_back(layer.self_attn.rotary.zeta);
    for (std::size_t l = 0; l < zeta_storage.size(); ++l)
        out.push_back({"layers." + std::to_string(l) + ".self_attn.xpos.scale",
                       {static_cast<std::int64_t>(zeta_storage[l].size())}, zeta_storage[l].data(), false});
    return out;
}

// The model as a torchscale-loadable .safetensors (float32 by default), atomically.
template <class T>
void save_model(const std::string& path, nn::decoder<T, T>& model, save_dtype dtype = save_dtype::float32) {
    std::vector<named_tensor<T>> params;
    std::vector<std::vector<float>> zeta;
    const auto records = model_records(model, params, zeta);
    io::staged_file f(path, safetensors_bytes(records, dtype, {{"format", "pt"}}));
    f.commit();
}

// Write `text` to path atomically.
inline void save_text(const std::string& path, const std::string& text) {
    io::staged_file f(path, text);
    f.commit();
}

}  // namespace longnet::training
