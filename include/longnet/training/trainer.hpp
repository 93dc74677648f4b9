// SPDX-License-Identifier: Apache-2.0
#pragma once
// One training step, llm.c's loop: zero the gradients, forward + backward over a batch of sequences
// (the loss is the mean over the batch of each sequence's mean cross-entropy), clip the global gradient
// norm, AdamW at the schedule's learning rate. Plus held-out evaluation and the run-folder checkpoint
// (save_checkpoint / load_checkpoint, see checkpoint.hpp) that makes a resumed run bitwise identical to
// one never stopped. A sequence carrying documents (pack_documents, data.hpp) trains and is evaluated as
// packed documents: each document attended and positioned as if alone (nn::decoder's packed pass).

#include <algorithm>
#include <charconv>
#include <chrono>
#include <climits>
#include <cstdint>
#include <iterator>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include <nlohmann/json.hpp>

#include "longnet/io/safetensors.hpp"
#include "longnet/io/staged_file.hpp"
#include "longnet/io/strict_json.hpp"
#include "longnet/nn/bf16_attention.hpp"
#include "longnet/nn/decoder.hpp"
#include "longnet/training/adamw.hpp"
#include "longnet/training/checkpoint.hpp"
#include "longnet/training/data.hpp"
#include "longnet/training/parameters.hpp"
#include "longnet/training/precision.hpp"
#include "longnet/training/schedule.hpp"

namespace longnet::training {

struct trainer_options {
    adamw_options adamw;
    lr_schedule schedule;
    double clip_norm = 1.0;  // global L2 norm; <= 0: no clipping
    nn::train_options pass;  // grad mode, activation checkpointing, logit block
    // bf16: every Linear's GEMMs on bf16 copies of the float weights and the training pass's attention on
    // bf16 q/k/v, float master weights and AdamW (precision.hpp). The model's Linears compute so while this
    // trainer exists; float models only.
    training::precision precision = training::precision::float32;
};

struct step_stats {
    std::int64_t step = 0;  // 1-based: the step just taken
    double loss = 0;        // mean over the batch, before the update
    double grad_norm = 0;   // global L2 norm before clipping
    double lr = 0;
    double seconds = 0;
    std::int64_t tokens = 0;
};

namespace detail {

// Evaluation sums over rows of one sequence (all of it, or one rank's slice): the cross-entropies of the
// scored targets, how many of them are the logits' argmax, how many are scored. hidden: the final
// LayerNorm's output [n, D]; the logits exist row_block rows at a time.
struct score_sums {
    double loss = 0, correct = 0, scored = 0;
};
template <class T>
score_sums score_rows(const nn::decoder<T, T>& model, const nn::matrix<T>& hidden, const std::int64_t* targets,
                      index_t row_block) {
    score_sums r;
    const index_t seq = hidden.rows(), block = std::max<index_t>(1, row_block);
    for (index_t r0 = 0; r0 < seq; r0 += block) {
        const index_t n = std::min(block, seq - r0);
        const nn::matrix<T> logits = model.project(hidden.middleRows(r0, n));
        r.loss += nn::cross_entropy_forward<T>(logits, targets + r0);
        for (index_t i = 0; i < n; ++i) {
            if (targets[r0 + i] == nn::ignore_target) continue;
            Eigen::Index best = 0;
            logits.row(i).maxCoeff(&best);
            r.correct += best == targets[r0 + i];
            r.scored += 1;
        }
    }
    return r;
}

// trainer::step and distributed_trainer::step: compute_gradients, then apply, timed, tokens counted.
template <class Trainer>
step_stats timed_step(Trainer& t, const std::vector<sequence>& batch) {
    const auto t0 = std::chrono::steady_clock::now();
    const double loss = t.compute_gradients(batch);
    step_stats st = t.apply(loss);
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (const auto& s : batch) st.tokens += static_cast<std::int64_t>(s.inputs.size());
    return st;
}

}  // namespace detail

template <class T>
class trainer {
public:
    trainer(nn::decoder<T, T>& model, const trainer_options& opt)
        : model_(model), options_(opt), grad_(model.make_grad()) {
        opt.adamw.validate();
        opt.schedule.validate();
        params_ = named_parameters(model_);
        grads_ = named_gradients(grad_);
        optimizer_ = adamw<T>(params_, opt.adamw);
        if (opt.precision == precision::bf16) {
            if constexpr (!std::is_same_v<T, float>)
                throw std::invalid_argument("trainer: precision bf16 needs a float model (--dtype float)");
            refresh_bf16_weights();
        }
    }
    trainer(const trainer&) = delete;
    trainer& operator=(const trainer&) = delete;
    ~trainer() {
        if constexpr (std::is_same_v<T, float>)
            if (options_.precision == precision::bf16) set_bf16_products(model_, false);
    }

    std::int64_t steps_done() const noexcept { return optimizer_.steps(); }
    const trainer_options& options() const noexcept { return options_; }
    nn::decoder_grad<T>& gradients() noexcept { return grad_; }
    const std::vector<named_tensor<T>>& named_grads() const noexcept { return grads_; }
    const std::vector<named_tensor<T>>& named_params() const noexcept { return params_; }

    // Zero the gradients, then forward + backward over the batch; returns the batch loss. The gradients
    // (before clipping) stay in gradients() until apply().
    double compute_gradients(const std::vector<sequence>& batch) {
        if (batch.empty()) throw std::invalid_argument("trainer: empty batch");
        grad_.set_zero();
        double loss = 0;
        const double weight = 1.0 / static_cast<double>(batch.size());
        for (const auto& s : batch) {
            if (s.documents.empty() && options_.precision == precision::bf16) {  // the attention in bf16 too
                model_.check_targets(s.inputs, s.targets);
                const index_t scored = nn::scored_targets(s.targets.data(), static_cast<index_t>(s.targets.size()));
                loss += model_.forward_backward_sum(s.inputs, s.targets, scored, grad_, options_.pass, weight, &workspace_,
                                                    bf16_attention_) /
                        static_cast<double>(scored);
                continue;
            }
            loss += s.documents.empty()
                        ? model_.forward_backward(s.inputs, s.targets, grad_, options_.pass, weight, &workspace_)
                        : model_.forward_backward(s.inputs, s.targets, s.documents, grad_, options_.pass, weight, &workspace_);
        }
        return loss * weight;
    }
    // Clip and take the AdamW step with the gradients of compute_gradients.
    step_stats apply(double loss) {
        step_stats st;
        st.grad_norm = clip_grad_norm(grads_, options_.clip_norm);
        st.lr = options_.schedule.at(optimizer_.steps());
        optimizer_.step(params_, grads_, st.lr);
        refresh_bf16_weights();
        st.step = optimizer_.steps();
        st.loss = loss;
        return st;
    }
    step_stats step(const std::vector<sequence>& batch) { return detail::timed_step(*this, batch); }

    // Mean loss over sequences (forward only) and the fraction of scored targets predicted exactly (argmax).
    struct evaluation {
        double loss = 0, accuracy = 0;
    };
    evaluation evaluate(const std::vector<sequence>& batch) const {
        evaluation e;
        double scored = 0, correct = 0;
        for (const auto& s : batch) {
            model_.check_targets(s.inputs, s.targets);
            const nn::matrix<T> hidden =
                s.documents.empty() ? model_.forward_hidden(s.inputs) : model_.forward_hidden(s.inputs, s.documents);
            const detail::score_sums r = detail::score_rows(model_, hidden, s.targets.data(), options_.pass.loss_row_block);
            e.loss += r.loss / r.scored;
            correct += r.correct;
            scored += r.scored;
        }
        e.loss /= static_cast<double>(batch.size());
        e.accuracy = scored > 0 ? correct / scored : 0;
        return e;
    }

    // Checkpoint into the run folder `dir` (see checkpoint.hpp); `extra` goes into checkpoint.json.
    void save_checkpoint(const std::string& dir, const rng_state& rng, const nlohmann::json& extra = {}) {
        namespace fs = std::filesystem;
        const std::int64_t s = steps_done();
        const std::string state_name = "state-" + std::to_string(s) + ".safetensors";
        std::vector<tensor_record> records;
        for (const auto& p : params_) records.push_back(record_of(p, "param."));
        auto& m = optimizer_.exp_avg();
        auto& v = optimizer_.exp_avg_sq();
        for (std::size_t i = 0; i < params_.size(); ++i) {
            records.push_back({"exp_avg." + params_[i].name, params_[i].shape, m[i].data(), std::is_same_v<T, double>});
            records.push_back({"exp_avg_sq." + params_[i].name, params_[i].shape, v[i].data(), std::is_same_v<T, double>});
        }
        const save_dtype dt = std::is_same_v<T, double> ? save_dtype::float64 : save_dtype::float32;  // exact
        const std::map<std::string, std::string> meta{{"step", std::to_string(s)}, {"rng", std::to_string(rng.state)}};
        {
            io::staged_file f((fs::path(dir) / state_name).string(), safetensors_bytes(records, dt, meta));
            f.commit();
        }
        nlohmann::json j = extra.is_object() ? extra : nlohmann::json::object();
        j["step"] = s;
        j["state"] = state_name;
        j["rng"] = std::to_string(rng.state);
        j["dtype"] = std::is_same_v<T, double> ? "float64" : "float32";
        save_text((fs::path(dir) / "checkpoint.json").string(), j.dump(1) + "\n");  // the commit point
        save_model((fs::path(dir) / "model.safetensors").string(), model_);
        save_text((fs::path(dir) / "config.json").string(), model_.config.to_json().dump(1) + "\n");
        std::error_code ec;  // older state files are garbage now
        for (const auto& entry : fs::directory_iterator(dir, ec)) {
            const std::string name = entry.path().filename().string();
            if (name != state_name && name.rfind("state-", 0) == 0 && entry.path().extension() == ".safetensors")
                fs::remove(entry.path(), ec);
        }
    }

    // Restore parameters, moments, step and RNG from a run folder; returns checkpoint.json.
    // Throws std::runtime_error naming the file on anything missing or inconsistent: checkpoint.json
    // must be exactly one JSON object (strict: no trailing data, no duplicate keys) with step (an
    // integer in [0, 2^63)), rng (decimal digits of a 64-bit value), state (a plain file name inside
    // the run folder) and, when present, dtype (a string equal to this run's compute type).
    nlohmann::json load_checkpoint(const std::string& dir, rng_state& rng) {
        namespace fs = std::filesystem;
        const std::string meta_path = (fs::path(dir) / "checkpoint.json").string();
        std::ifstream in(meta_path, std::ios::binary);
        if (!in) throw std::runtime_error(meta_path + ": no checkpoint to resume from");
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        nlohmann::json j;
        try {
            j = io::parse_strict_json(text.data(), text.data() + text.size());
        } catch (const std::exception& e) {
            throw std::runtime_error(meta_path + ": not valid JSON: " + e.what());
        }
        auto fail = [&](const std::string& what) { throw std::runtime_error(meta_path + ": " + what); };
        if (!j.is_object()) fail("expected a JSON object");
        const auto step_it = j.find("step"), state_it = j.find("state"), rng_it = j.find("rng");
        if (step_it == j.end() || state_it == j.end() || rng_it == j.end()) fail("expected step, state and rng fields");
        if (!step_it->is_number_integer() ||
            (step_it->is_number_unsigned() && step_it->get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) ||
            (!step_it->is_number_unsigned() && step_it->get<std::int64_t>() < 0))
            fail("step must be an integer in [0, 2^63), got " + step_it->dump());
        const std::int64_t step = step_it->get<std::int64_t>();
        if (!rng_it->is_string()) fail("rng must be a string of decimal digits, got " + rng_it->dump());
        const std::string& rng_text = rng_it->get_ref<const std::string&>();
        std::uint64_t rng_value = 0;
        const auto [end_ptr, ec] = std::from_chars(rng_text.data(), rng_text.data() + rng_text.size(), rng_value);
        if (rng_text.empty() || ec != std::errc() || end_ptr != rng_text.data() + rng_text.size() || rng_text[0] == '-' ||
            rng_text[0] == '+')
            fail("rng must be the decimal digits of a 64-bit value, got " + rng_it->dump());
        if (!state_it->is_string()) fail("state must be a file name, got " + state_it->dump());
        const std::string& state_name = state_it->get_ref<const std::string&>();
        if (state_name.empty() || state_name == "." || state_name == ".." || state_name.find('/') != std::string::npos ||
            state_name.find('\\') != std::string::npos)
            fail("state must be a plain file name inside the run folder, got " + state_it->dump());
        const std::string want_dtype = std::is_same_v<T, double> ? "float64" : "float32";
        if (const auto d = j.find("dtype"); d != j.end()) {
            if (!d->is_string()) fail("dtype must be \"float32\" or \"float64\", got " + d->dump());
            if (d->get_ref<const std::string&>() != want_dtype)
                fail("the checkpoint was trained in " + d->get<std::string>() + ", this run computes in " + want_dtype + " (--dtype)");
        }
        const io::safetensors_file f((fs::path(dir) / state_name).string());
        auto& m = optimizer_.exp_avg();
        auto& v = optimizer_.exp_avg_sq();
        for (std::size_t i = 0; i < params_.size(); ++i) {
            const auto& p = params_[i];
            f.expect("param." + p.name, p.shape);
            f.read_into("param." + p.name, p.data, p.size());
            f.expect("exp_avg." + p.name, p.shape);
            f.read_into("exp_avg." + p.name, m[i].data(), p.size());
            f.expect("exp_avg_sq." + p.name, p.shape);
            f.read_into("exp_avg_sq." + p.name, v[i].data(), p.size());
        }
        if (f.size() != 3 * params_.size())
            throw std::runtime_error(f.path() + ": " + std::to_string(f.size()) + " tensors, expected " +
                                     std::to_string(3 * params_.size()) + " (parameters and both moments)");
        optimizer_.set_steps(step);
        rng.state = rng_value;
        refresh_bf16_weights();
        return j;
    }

private:
    // The bf16 copies of the Linear weights from the float weights (precision bf16 only).
    void refresh_bf16_weights() {
        if constexpr (std::is_same_v<T, float>)
            if (options_.precision == precision::bf16) set_bf16_products(model_, true);
    }

    nn::decoder<T, T>& model_;
    trainer_options options_;
    nn::decoder_grad<T> grad_;
    std::vector<named_tensor<T>> params_, grads_;
    adamw<T> optimizer_;
    nn::decoder_activations<T> workspace_;
    // precision bf16: the attention of the training pass (float models only; a placeholder otherwise)
    std::conditional_t<std::is_same_v<T, float>, nn::bf16_attention, nn::attention_backend<T>> bf16_attention_;
};

}  // namespace longnet::training
