// SPDX-License-Identifier: Apache-2.0
#pragma once
// Token embedding (torchscale embed_tokens): x[t] = scale · E[token t], E [vocab, D].
// Backward: dE[token t] += scale · dx[t] (a scatter-add, serial over t: a fixed summation order).

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "longnet/nn/common.hpp"

namespace longnet::nn {

namespace detail {
inline void check_tokens(const std::vector<std::int64_t>& tokens, index_t vocab) {
    for (std::size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i] < 0 || tokens[i] >= vocab)
            throw std::out_of_range("longnet::nn::embedding: token " + std::to_string(tokens[i]) + " at position " +
                                    std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}
}  // namespace detail

// x [T, D] = scale · table[tokens]. W is the table's storage type.
template <class T, class W>
void embedding_forward(const matrix<W>& table, const std::vector<std::int64_t>& tokens, double scale, matrix<T>& x) {
    detail::check_tokens(tokens, table.rows());
    const index_t seq = static_cast<index_t>(tokens.size());
    x.resize(seq, table.cols());
    const T s = static_cast<T>(scale);
    LONGNET_NN_PARALLEL_FOR
    for (index_t i = 0; i < seq; ++i)
        x.row(i) = table.row(static_cast<index_t>(tokens[static_cast<std::size_t>(i)])).template cast<T>() * s;
}

// d_table [vocab, D] += scale · dx scattered to the tokens' rows.
template <class T>
void embedding_backward(const std::vector<std::int64_t>& tokens, double scale, const_matrix_ref<T> dx,
                        matrix<T>& d_table) {
    detail::check_tokens(tokens, d_table.rows());
    if (dx.rows() != static_cast<index_t>(tokens.size()) || dx.cols() != d_table.cols())
        throw std::invalid_argument("longnet::nn::embedding_backward: dx [" + std::to_string(dx.rows()) + ", " +
                                    std::to_string(dx.cols()) + "] does not fit " + std::to_string(tokens.size()) +
                                    " tokens and the table [" + std::to_string(d_table.rows()) + ", " +
                                    std::to_string(d_table.cols()) + "]");
    const T s = static_cast<T>(scale);
    for (index_t i = 0; i < dx.rows(); ++i) d_table.row(static_cast<index_t>(tokens[static_cast<std::size_t>(i)])) += s * dx.row(i);
}

}  // namespace longnet::nn
