// SPDX-License-Identifier: Apache-2.0
#pragma once
// Learning-rate schedule: linear warm-up over `warmup` steps (lr·(s+1)/warmup at 0-based step s), then
// constant, or cosine decay from lr to min_lr at step total_steps − 1 (min_lr afterwards).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace longnet::training {

enum class schedule_kind { constant, cosine };

inline schedule_kind parse_schedule(const std::string& s) {
    if (s == "constant") return schedule_kind::constant;
    if (s == "cosine") return schedule_kind::cosine;
    throw std::invalid_argument("unknown schedule '" + s + "' (expected cosine or constant)");
}
inline const char* to_string(schedule_kind k) noexcept { return k == schedule_kind::constant ? "constant" : "cosine"; }

struct lr_schedule {
    schedule_kind kind = schedule_kind::cosine;
    double lr = 3e-4;
    double min_lr = 0;
    std::int64_t warmup = 0;
    std::int64_t total_steps = 1;

    void validate() const {
        if (!(lr >= 0) || !std::isfinite(lr)) throw std::invalid_argument("schedule: lr must be >= 0, got " + std::to_string(lr));
        if (!(min_lr >= 0) || min_lr > lr)
            throw std::invalid_argument("schedule: min lr must be in [0, lr = " + std::to_string(lr) + "], got " + std::to_string(min_lr));
        if (warmup < 0) throw std::invalid_argument("schedule: warmup must be >= 0, got " + std::to_string(warmup));
        if (total_steps < 1) throw std::invalid_argument("schedule: total steps must be >= 1, got " + std::to_string(total_steps));
    }

    // The learning rate of 0-based step s.
    double at(std::int64_t s) const {
        if (s < warmup) return lr * static_cast<double>(s + 1) / static_cast<double>(warmup);
        if (kind == schedule_kind::constant) return lr;
        const std::int64_t span = std::max<std::int64_t>(1, total_steps - 1 - warmup);
        const double progress = std::min(1.0, static_cast<double>(s - warmup) / static_cast<double>(span));
        return min_lr + 0.5 * (lr - min_lr) * (1 + std::cos(3.14159265358979323846 * progress));
    }
};

}  // namespace longnet::training
