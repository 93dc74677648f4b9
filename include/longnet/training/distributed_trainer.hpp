// SPDX-License-Identifier: Apache-2.0
#pragma once
// Distributed training over MPI (issue 13, SPEC §7 and §11): sequence parallelism, as the LongNet paper's
// trainer, plus data parallelism.
//
// Layout. The world's W ranks form K = data_parallel groups of P = W/K consecutive ranks; group k trains
// on its own sequences of the batch (sequence i goes to group i mod K), and rank ρ of a group holds
// tokens [ρ·n, (ρ+1)·n) of every one of them (n = T/P). Every layer except attention works on each token
// alone, so embedding, LayerNorms, projections, feed-forward, the output projection and the loss run on
// the chunk; XPos rotates and decays the chunk's rows at their global positions (the anchored form,
// nn/multihead_attention.hpp: no length limit), and the dilated attention is longnet::distributed's
// forward and backward over the group's communicator, once per group of branches sharing a segment
// length (only the long branches exchange their sparse keys and values). That is
// the only difference from the single process, and nn's one model pass takes it as its attention
// backend (sequence_parallel_attention below): this file adds the data and sequence split, the scored
// count and loss summed over the group, the gradient all-reduce and the checks.
// Loss: the mean over all ranks' scored positions of a sequence (the scored count is summed over the group
// first), averaged over the batch as the single-process trainer does. Gradients: each rank accumulates its
// chunks' contributions and they are summed over the whole world in place: by default during the rank's
// last pass, in buckets of about distributed_options::bucket_bytes (25 MiB) started as the backward
// finishes their tensors (MPI_Iallreduce, as PyTorch DDP; gradient_buckets below), waited for at the end;
// with bucket_bytes = 0 after the backward, one blocking MPI_Allreduce per fused buffer of up to 2^26
// elements (the model's gradients packed in parameter order; a small model is one call). Same sums.
// The result equals the single-process trainer on the same batch up to the summation order of those sums
// and of the XPos segment-length groups' merge (tests/mpi/test_distributed_training.cpp: ≤ 3e-6 relative
// in float, ≤ 1e-12 in double; also at 2^17 tokens, past the old centred form's float limit).
//
// Reading only a rank's part: compute_gradients_local and evaluate_local take this rank's chunks alone,
// as shard_dataset::sample_batch and heldout read them for share() (training/data.hpp): the same windows,
// the same chunks, so the same results as the whole batch passed to compute_gradients and evaluate.
// Same parameters everywhere: every rank applies the same clipped AdamW step to the same summed gradients.
// check_parameters() compares a checksum of every parameter's bytes across the world and throws when ranks
// differ; the trainer runs it after every step when verify_parameters is on (by default in builds without
// NDEBUG).
// Packed documents (sequence::documents, --pack-documents) are refused across ranks (an agreed error,
// std::invalid_argument's message): a document boundary inside a rank's chunk would need the varlen
// distributed attention and per-document XPos positions across ranks. Alone, the trainer is the
// single-process one and takes them.
//
// Errors: local checks (tokens, lengths, the attention's rank preconditions) run first on every rank and
// are agreed over the whole world before any blocking collective: when one rank's data is bad, every rank
// throws training::collective_error with the message of the lowest failing rank (and the rank number).
// Checkpoints: rank 0 writes (the single-process trainer's atomic run folder), every rank learns whether
// it succeeded. Everything else (a rank killed, out of memory) is for the launcher: a program should
// MPI_Abort on any other exception, as examples/longnet_train.cpp does.
//
// With MPI_COMM_NULL as the world the trainer is the single-process trainer (no MPI call is made): one
// program serves both. Needs <mpi.h>: link longnet::mpi.

#if defined(__has_include)
#if __has_include(<mpi.h>)
#define LONGNET_TRAINING_HAS_MPI_HEADER 1
#endif
#else
#define LONGNET_TRAINING_HAS_MPI_HEADER 1
#endif

#ifndef LONGNET_TRAINING_HAS_MPI_HEADER
namespace longnet::training {
template <class T>
class distributed_trainer {
    static_assert(sizeof(T) == 0, "longnet/training/distributed_trainer.hpp needs <mpi.h>: link longnet::mpi (MPI::MPI_CXX)");
};
}  // namespace longnet::training
#else

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "longnet/distributed.hpp"
#include "longnet/nn/decoder.hpp"
#include "longnet/training/parameters.hpp"
#include "longnet/training/trainer.hpp"

namespace longnet::training {

// An error every rank of the world throws together (the same message), after agreeing on it: a program
// may end cleanly (MPI_Finalize) instead of aborting the job.
class collective_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Traffic and time of one rank in one training step (or pass).
struct distributed_step_stats {
    std::uint64_t attention_bytes_sent = 0;      // K/V rows (forward), K/V and dK/dV partials (backward)
    std::uint64_t attention_bytes_received = 0;
    std::uint64_t gradient_bytes = 0;            // size of the gradient buffers all-reduced
    std::uint64_t gradient_bytes_sent = 0;       // a ring all-reduce's share: 2·(W−1)/W · gradient_bytes
    std::uint64_t control_bytes = 0;             // agreements, scored counts, losses, checksums
    double seconds_attention_communication = 0;  // inside the attention's collectives (includes waiting)
    double seconds_allreduce = 0;                // the gradient all-reduce's duration (includes waiting); bucketed
                                                 // (bucket_bytes > 0): from the first bucket's launch to the last's
                                                 // observed completion, overlapping the backward
    double seconds_allreduce_exposed = 0;        // the part of it the rank spent in the all-reduce's code instead
                                                 // of computing: blocking, all of it; bucketed, packing and
                                                 // polling in the backward, then the wait and unpacking at the end
    double seconds_allreduce_wait = 0;           // of that, the end: the last bucket, the wait, unpacking
    // The fraction of the all-reduce's duration hidden behind the backward (0 for the blocking path; an
    // upper bound when bucketed: a bucket's completion is observed only at the next layer's end, so the
    // duration counts compute too). What it saves is 1 − exposed / (the blocking run's seconds_allreduce):
    // bench/bench_allreduce_overlap.sh.
    double allreduce_hidden_fraction() const {
        return seconds_allreduce > 0 ? std::max(0.0, 1.0 - seconds_allreduce_exposed / seconds_allreduce) : 0.0;
    }
    double seconds_total = 0;
    // This rank's thread CPU time: in all, and inside collectives (polling while it waits for peers, which
    // on an oversubscribed machine includes other ranks' turns); the difference is its compute.
    double cpu_seconds_total = 0;
    double cpu_seconds_communication = 0;
    double cpu_seconds_compute() const { return cpu_seconds_total - cpu_seconds_communication; }
    // The largest over the world's ranks (compute_gradients fills them: one small all-reduce).
    double max_cpu_seconds_compute = 0;
    std::uint64_t max_attention_bytes_sent = 0;
    void add(const distributed::comm_stats& s) {
        attention_bytes_sent += s.bytes_sent;
        attention_bytes_received += s.bytes_received;
        control_bytes += s.control_bytes;
        seconds_attention_communication += s.seconds_communication;
        cpu_seconds_communication += s.cpu_seconds_communication;
    }
};

namespace detail {

template <class T>
MPI_Datatype mpi_datatype() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "distributed training computes in float or double");
    return std::is_same_v<T, float> ? MPI_FLOAT : MPI_DOUBLE;
}

inline void mpi_ok(int rc, const char* what) { longnet::detail::dist::mpi_check(rc, what); }

// Every rank passes its local error ("" when fine); returns the lowest failing rank's message (with its
// rank) on every rank, or "" when none failed. Always two or three small collectives, reached by all.
inline std::string agree(MPI_Comm comm, const std::string& local_error) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    const int mine = local_error.empty() ? size : rank;
    int first = size;
    mpi_ok(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce (error flag)");
    if (first == size) return {};
    std::string message = rank == first ? local_error : std::string();
    long long length = static_cast<long long>(message.size());
    mpi_ok(MPI_Bcast(&length, 1, MPI_LONG_LONG, first, comm), "MPI_Bcast (error length)");
    message.resize(static_cast<std::size_t>(length));
    if (length > 0) mpi_ok(MPI_Bcast(&message[0], static_cast<int>(length), MPI_CHAR, first, comm), "MPI_Bcast (error message)");
    return message + " [rank " + std::to_string(first) + " of " + std::to_string(size) + "]";
}
inline void agree_or_throw(MPI_Comm comm, const std::string& local_error) {
    const std::string message = agree(comm, local_error);
    if (!message.empty()) throw collective_error(message);
}

// The checks of one rank's chunk that need no communication; "" when fine.
template <class T>
std::string check_chunk(const nn::decoder<T, T>& model, const std::vector<std::int64_t>& inputs,
                        const std::vector<std::int64_t>& targets, int seq_rank, int seq_size) {
    try {
        if (model.options.attention != nn::attention_kind::dilated)
            throw std::invalid_argument("sequence-parallel training needs dilated attention (dense attention sees every "
                                        "earlier token)");
        if (inputs.empty() || inputs.size() != targets.size())
            throw std::invalid_argument(std::to_string(inputs.size()) + " input tokens and " + std::to_string(targets.size()) +
                                        " targets on this rank; they must be equally many and not none");
        nn::detail::check_tokens(inputs, model.vocab_size());
        nn::detail::check_targets(targets.data(), static_cast<index_t>(targets.size()), model.vocab_size());
        if (!model.layers.empty()) {
            const auto& attn = model.layers.front().self_attn;
            const index_t n = static_cast<index_t>(inputs.size());
            longnet::detail::dist::plan_branches("dilated_attention", attn.config.dilated, n, seq_size, seq_rank);
            // the anchored XPos of a sequence split across ranks (every rank the same verdict, before any
            // collective): a segment longer than the anchor's limit runs as blocks that must divide the
            // segment and sequence lengths (nn/multihead_attention.hpp, check_slice)
            if (seq_size > 1) {
                attn.check_slice(n * seq_size);
                dilated_options pieces = attn.config.dilated;
                pieces.branches = attn.slice_block_branches(n * seq_size);
                if (!pieces.branches.empty())
                    longnet::detail::dist::plan_branches("dilated_attention (XPos blocks)", pieces, n, seq_size, seq_rank);
            }
        }
    } catch (const std::exception& e) {
        return std::string("longnet::training (sequence rank ") + std::to_string(seq_rank) + "): " + e.what();
    }
    return {};
}

}  // namespace detail

// The attention backend of sequence parallelism (nn/attention_backend.hpp): this rank holds rows
// [ρ·n, (ρ+1)·n) of a sequence spread over the P ranks of comm (ρ, P: rank and size of comm) and their
// dilated attention is longnet::distributed's over comm (bitwise those rows of the single-process op),
// its traffic added to stats. The nn pass runs on it unchanged (decoder::forward_backward_sum).
template <class T>
class sequence_parallel_attention final : public nn::attention_backend<T> {
public:
    using A = accum_t<T>;
    sequence_parallel_attention(MPI_Comm comm, distributed_step_stats& stats) : comm_(comm), stats_(stats) {
        MPI_Comm_rank(comm, &rank_);
        MPI_Comm_size(comm, &size_);
    }
    nn::row_slice slice(index_t rows) const override { return {rows * rank_, rows * size_}; }
    void forward(nn::attention_kind kind, const dilated_options& opt, tensor_view<const T> q, tensor_view<const T> k,
                 tensor_view<const T> v, tensor_view<T> out, lse_view<A> lse) override {
        require_dilated(kind);
        distributed::comm_stats cs;
        distributed::dilated_attention(q, k, v, out, opt, comm_, lse, &cs);
        stats_.add(cs);
    }
    void backward(nn::attention_kind kind, const dilated_options& opt, tensor_view<const T> q, tensor_view<const T> k,
                  tensor_view<const T> v, tensor_view<const T> out, lse_view<const A> lse, tensor_view<const T> dout,
                  tensor_view<T> dq, tensor_view<T> dk, tensor_view<T> dv, grad_mode mode) override {
        require_dilated(kind);
        distributed::comm_stats cs;
        distributed::dilated_attention_backward(q, k, v, out, lse, dout, dq, dk, dv, opt, comm_, mode, &cs);
        stats_.add(cs);
    }

    // The XPos blocks of a long segment (nn/multihead_attention.hpp): rows shifted along the sequence
    // between the ranks holding them (one MPI_Alltoallv of whole rows each way; counted as traffic).
    void shifted_rows(const nn::matrix<T>& x, index_t shift, nn::matrix<T>& y) override {
        y.setZero(x.rows(), x.cols());
        move_rows(x.data(), y.data(), x.rows(), x.cols(), shift, false);
    }
    void add_shifted_back(const nn::matrix<T>& y, index_t shift, nn::matrix<T>& x) override {
        nn::matrix<T> back = nn::matrix<T>::Zero(y.rows(), y.cols());
        move_rows(y.data(), back.data(), y.rows(), y.cols(), shift, true);
        x += back;
    }

private:
    // forward: to[i] = from row (first + i − shift) of the sequence (held by its rank); backward: the
    // transpose (each row of `from` goes to the holder of its row − shift). Equal chunks of n rows.
    void move_rows(const T* from, T* to, index_t n, index_t cols, index_t shift, bool backward) {
        const index_t mine = n * rank_;
        std::vector<int> counts_need(static_cast<std::size_t>(size_)), at_need(counts_need.size()),
            counts_give(counts_need.size()), at_give(counts_need.size());
        for (int other = 0; other < size_; ++other) {
            const index_t theirs = n * other;
            // rows I need from `other`: sources [mine − shift, mine + n − shift) ∩ [theirs, theirs + n)
            const index_t lo = std::max(mine - shift, theirs), hi = std::min(mine + n - shift, theirs + n);
            counts_need[static_cast<std::size_t>(other)] = static_cast<int>(std::max<index_t>(hi - lo, 0));
            at_need[static_cast<std::size_t>(other)] = static_cast<int>(hi > lo ? lo + shift - mine : 0);
            // rows `other` needs from me: sources [theirs − shift, theirs + n − shift) ∩ [mine, mine + n)
            const index_t glo = std::max(theirs - shift, mine), ghi = std::min(theirs + n - shift, mine + n);
            counts_give[static_cast<std::size_t>(other)] = static_cast<int>(std::max<index_t>(ghi - glo, 0));
            at_give[static_cast<std::size_t>(other)] = static_cast<int>(ghi > glo ? glo - mine : 0);
        }
        MPI_Datatype row;
        detail::mpi_ok(MPI_Type_contiguous(static_cast<int>(cols), detail::mpi_datatype<T>(), &row), "MPI_Type_contiguous (rows)");
        detail::mpi_ok(MPI_Type_commit(&row), "MPI_Type_commit (rows)");
        const int rc = backward ? MPI_Alltoallv(from, counts_need.data(), at_need.data(), row, to, counts_give.data(),
                                                at_give.data(), row, comm_)
                                : MPI_Alltoallv(from, counts_give.data(), at_give.data(), row, to, counts_need.data(),
                                                at_need.data(), row, comm_);
        MPI_Type_free(&row);
        detail::mpi_ok(rc, "MPI_Alltoallv (XPos block rows)");
        index_t sent = 0, received = 0;
        for (int other = 0; other < size_; ++other)
            if (other != rank_) {
                sent += (backward ? counts_need : counts_give)[static_cast<std::size_t>(other)];
                received += (backward ? counts_give : counts_need)[static_cast<std::size_t>(other)];
            }
        stats_.attention_bytes_sent += static_cast<std::uint64_t>(sent * cols) * sizeof(T);
        stats_.attention_bytes_received += static_cast<std::uint64_t>(received * cols) * sizeof(T);
    }

    static void require_dilated(nn::attention_kind kind) {
        if (kind != nn::attention_kind::dilated)
            throw std::invalid_argument("longnet::training::sequence_parallel_attention: " + std::string(nn::to_string(kind)) +
                                        " attention sees every earlier token; sequence parallelism needs dilated attention");
    }
    MPI_Comm comm_;
    distributed_step_stats& stats_;
    int rank_ = 0, size_ = 1;
};

// One sequence-parallel training pass of one sequence: this rank holds inputs and targets at positions
// [ρ·n, (ρ+1)·n) of a sequence of N = P·n (ρ, P: rank and size of comm; every rank of comm passes the
// same n and calls this together). Returns the sequence's loss (the mean over the scored targets of all
// ranks; the same on every rank) and adds loss_weight · ∂loss/∂parameter restricted to this rank's
// positions to grad: summed over the ranks of comm it is the single-process forward_backward's gradient.
// Errors in the chunk are agreed over comm (collective_error on every rank).
template <class T>
double sequence_parallel_forward_backward(const nn::decoder<T, T>& model, const std::vector<std::int64_t>& inputs,
                                          const std::vector<std::int64_t>& targets, nn::decoder_grad<T>& grad,
                                          MPI_Comm comm, const nn::train_options& opt = {}, double loss_weight = 1.0,
                                          nn::decoder_activations<T>* workspace = nullptr,
                                          distributed_step_stats* stats = nullptr) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    distributed_step_stats local_stats;
    distributed_step_stats& st = stats ? *stats : local_stats;
    {
        longnet::detail::dist::cpu_scope cpu(st.cpu_seconds_communication);
        detail::agree_or_throw(comm, detail::check_chunk(model, inputs, targets, rank, size));
    }
    // the loss divides by the sequence's scored targets, on all ranks
    const index_t n = static_cast<index_t>(inputs.size());
    long long scored_local = static_cast<long long>(nn::scored_targets(targets.data(), n)), scored = 0;
    {
        longnet::detail::dist::cpu_scope cpu(st.cpu_seconds_communication);
        detail::mpi_ok(MPI_Allreduce(&scored_local, &scored, 1, MPI_LONG_LONG, MPI_SUM, comm), "MPI_Allreduce (scored targets)");
    }
    st.control_bytes += sizeof(long long);
    if (scored == 0)
        throw collective_error("longnet::training: every target of the sequence is ignore_target (-1); nothing to score");
    sequence_parallel_attention<T> attention(comm, st);
    const double loss_local = model.forward_backward_sum(inputs, targets, static_cast<index_t>(scored), grad, opt,
                                                         loss_weight, workspace, attention);
    double loss = 0;
    {
        longnet::detail::dist::cpu_scope cpu(st.cpu_seconds_communication);
        detail::mpi_ok(MPI_Allreduce(&loss_local, &loss, 1, MPI_DOUBLE, MPI_SUM, comm), "MPI_Allreduce (loss)");
    }
    st.control_bytes += sizeof(double);
    return loss / static_cast<double>(scored);
}

// Sum every gradient over comm, in place, packed into fused buffers of at most max_elements each.
template <class T>
void allreduce_gradients(const std::vector<named_tensor<T>>& grads, MPI_Comm comm, distributed_step_stats* stats = nullptr,
                         std::int64_t max_elements = std::int64_t(1) << 26) {
    int size = 1;
    MPI_Comm_size(comm, &size);
    if (size == 1) return;
    const auto t0 = std::chrono::steady_clock::now();
    std::int64_t total = 0;
    for (const auto& g : grads) total += g.size();
    const std::int64_t capacity = std::max<std::int64_t>(1, std::min<std::int64_t>(std::min<std::int64_t>(total, max_elements), INT_MAX));
    std::vector<T> buffer(static_cast<std::size_t>(capacity));
    std::size_t tensor = 0;
    std::int64_t offset = 0;  // inside grads[tensor]
    while (tensor < grads.size()) {
        // pack: whole tensors (or a piece of one larger than the buffer) until the buffer is full
        std::int64_t used = 0;
        const std::size_t first_tensor = tensor;
        const std::int64_t first_offset = offset;
        while (tensor < grads.size() && used < capacity) {
            const std::int64_t take = std::min(grads[tensor].size() - offset, capacity - used);
            std::memcpy(buffer.data() + used, grads[tensor].data + offset, static_cast<std::size_t>(take) * sizeof(T));
            used += take;
            offset += take;
            if (offset == grads[tensor].size()) ++tensor, offset = 0;
        }
        {
            double unused = 0;
            longnet::detail::dist::cpu_scope cpu(stats ? stats->cpu_seconds_communication : unused);
            detail::mpi_ok(MPI_Allreduce(MPI_IN_PLACE, buffer.data(), static_cast<int>(used), detail::mpi_datatype<T>(), MPI_SUM, comm),
                           "MPI_Allreduce (gradients)");
        }
        // unpack the same pieces
        std::int64_t pos = 0;
        std::size_t t = first_tensor;
        std::int64_t o = first_offset;
        while (pos < used) {
            const std::int64_t take = std::min(grads[t].size() - o, used - pos);
            std::memcpy(grads[t].data + o, buffer.data() + pos, static_cast<std::size_t>(take) * sizeof(T));
            pos += take;
            o += take;
            if (o == grads[t].size()) ++t, o = 0;
        }
        if (stats) {
            stats->gradient_bytes += static_cast<std::uint64_t>(used) * sizeof(T);
            stats->gradient_bytes_sent += static_cast<std::uint64_t>(2.0 * (size - 1) / size * static_cast<double>(used) * sizeof(T));
        }
    }
    if (stats) {
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        stats->seconds_allreduce += seconds;
        stats->seconds_allreduce_exposed += seconds;  // nothing runs meanwhile
        stats->seconds_allreduce_wait += seconds;
    }
}

// The gradient all-reduce overlapped with the backward, in buckets as PyTorch DDP's: the gradient tensors
// (named_gradients order) grouped in the order the backward finishes them (output projection and final
// LayerNorm, layers L−1 … 0, embedding: nn::train_options::gradients_ready), into buckets of about
// bucket_bytes (a tensor is never split, except at 2^31 − 1 elements: MPI's int counts; a tensor larger
// than bucket_bytes is a bucket alone). During the last pass of a step, gradients_ready → ready(): once
// every tensor of the next bucket is final it is packed and its in-place MPI_Iallreduce (SUM) starts on
// comm, buckets always in the same order on every rank (the same model gives the same buckets), and every
// call polls (MPI_Test) the buckets in flight, unpacking those done. After the passes, start_pending()
// starts any bucket but the last not started yet (a rank with no sequence in the batch); finish() runs
// the last bucket (the embedding's, final only at the end) as a blocking MPI_Allreduce, waits for the
// others and unpacks. The trainer sums the loss between the two, so that a rank waiting there for a
// slower one (load imbalance) does so as with the blocking path, while the buckets in flight progress. The same data and the
// same op as allreduce_gradients, so the same sums up to MPI's own order of summation (the algorithm may
// depend on the message size: bitwise at 2 ranks, as any sum of two). Buffers are kept across steps.
template <class T>
class gradient_buckets {
public:
    // grads: the trainer's named_gradients of a decoder of `layers` layers (names decide the groups).
    gradient_buckets(const std::vector<named_tensor<T>>& grads, index_t layers, std::int64_t bucket_bytes,
                     std::int64_t max_elements = INT_MAX)
        : grads_(grads), groups_(static_cast<std::size_t>(layers) + 2) {
        if (bucket_bytes < 1) throw std::invalid_argument("longnet::training::gradient_buckets: bucket_bytes must be >= 1");
        // group of each tensor: 0 head, 1 + (L−1−l) layer l, L + 1 embedding (the backward's order)
        std::vector<std::pair<std::size_t, std::size_t>> order;  // (group, tensor)
        for (std::size_t i = grads.size(); i-- > 0;) order.push_back({group_of(grads[i].name, layers), i});
        std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
        const std::int64_t cap_elements = std::max<std::int64_t>(1, (bucket_bytes + std::int64_t(sizeof(T)) - 1) / std::int64_t(sizeof(T)));
        max_elements = std::max<std::int64_t>(1, std::min<std::int64_t>(max_elements, INT_MAX));
        for (const auto& [group, tensor] : order) {
            for (std::int64_t offset = 0, n = grads[tensor].size(); offset < n;) {
                if (buckets_.empty() || buckets_.back().closed) buckets_.emplace_back();
                bucket& b = buckets_.back();
                const std::int64_t take = std::min(n - offset, max_elements - b.elements);
                b.pieces.push_back({tensor, offset, take});
                b.elements += take;
                b.last_group = group;
                offset += take;
                b.closed = b.elements >= cap_elements || b.elements >= max_elements;
            }
        }
        if (!buckets_.empty()) buckets_.back().closed = true;
    }

    std::size_t bucket_count() const noexcept { return buckets_.size(); }
    std::int64_t bucket_elements(std::size_t b) const noexcept { return buckets_[b].elements; }

    // Before a step's passes, on every rank of comm (each then calls start_pending() and finish()).
    void begin(MPI_Comm comm, distributed_step_stats* stats) {
        comm_ = comm;
        MPI_Comm_size(comm, &size_);
        stats_ = stats ? stats : &unused_stats_;
        ready_.assign(groups_, false);
        next_ = 0;
        in_flight_.clear();
        started_ = false;
    }
    // nn::train_options::gradients_ready of the step's last pass: `which` (head_gradients, a layer index,
    // embedding_gradients) is final.
    void ready(index_t which) {
        const auto t0 = std::chrono::steady_clock::now();
        const index_t layers = static_cast<index_t>(groups_) - 2;
        std::size_t group = 0;
        if (which == nn::train_options::head_gradients) group = 0;
        else if (which == nn::train_options::embedding_gradients) group = groups_ - 1;
        else if (which >= 0 && which < layers) group = static_cast<std::size_t>(layers - which);
        else throw std::logic_error("longnet::training::gradient_buckets: gradients_ready(" + std::to_string(which) + ") of a model of " +
                                    std::to_string(layers) + " layers");
        ready_[group] = true;
        while (next_ + 1 < buckets_.size() && ready_through(buckets_[next_].last_group)) launch(next_++);
        poll();
        stats_->seconds_allreduce_exposed += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    // After the step's passes: starts every bucket but the last not started yet (a rank with no sequence
    // in the batch starts them all here). Every rank calls it before its next collective on comm.
    void start_pending() {
        const auto t0 = std::chrono::steady_clock::now();
        while (next_ + 1 < buckets_.size()) launch(next_++);
        poll();
        stats_->seconds_allreduce_exposed += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    // Then (other collectives on comm may come between): the last bucket, blocking, and the wait for
    // every other; unpacked, the gradients are the sums over comm.
    void finish() {
        const auto t0 = std::chrono::steady_clock::now();
        while (next_ < buckets_.size()) launch(next_++);
        for (std::size_t b : in_flight_) {
            {
                longnet::detail::dist::cpu_scope cpu(stats_->cpu_seconds_communication);
                detail::mpi_ok(MPI_Wait(&buckets_[b].request, MPI_STATUS_IGNORE), "MPI_Wait (gradient bucket)");
            }
            last_done_ = std::chrono::steady_clock::now();
            unpack(b);
        }
        in_flight_.clear();
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        stats_->seconds_allreduce_exposed += seconds;
        stats_->seconds_allreduce_wait += seconds;
        if (started_) stats_->seconds_allreduce += std::chrono::duration<double>(last_done_ - first_launch_).count();
    }

private:
    struct piece {
        std::size_t tensor;
        std::int64_t offset, count;
    };
    struct bucket {
        std::vector<piece> pieces;
        std::int64_t elements = 0;
        std::size_t last_group = 0;
        bool closed = false;
        std::vector<T> buffer;
        MPI_Request request = MPI_REQUEST_NULL;
    };

    static std::size_t group_of(const std::string& name, index_t layers) {
        if (name.rfind("embed_tokens.", 0) == 0) return static_cast<std::size_t>(layers) + 1;
        if (name.rfind("layers.", 0) == 0) {
            const std::size_t dot = name.find('.', 7);
            const index_t l = static_cast<index_t>(std::stoll(name.substr(7, dot - 7)));
            if (l < 0 || l >= layers)
                throw std::invalid_argument("longnet::training::gradient_buckets: " + name + " in a model of " + std::to_string(layers) + " layers");
            return static_cast<std::size_t>(layers - l);
        }
        return 0;  // layer_norm.*, output_projection.*
    }
    bool ready_through(std::size_t group) const {
        for (std::size_t g = 0; g <= group; ++g)
            if (!ready_[g]) return false;
        return true;
    }
    void launch(std::size_t b) {
        bucket& k = buckets_[b];
        k.buffer.resize(static_cast<std::size_t>(k.elements));
        std::int64_t at = 0;
        for (const piece& p : k.pieces) {
            std::memcpy(k.buffer.data() + at, grads_[p.tensor].data + p.offset, static_cast<std::size_t>(p.count) * sizeof(T));
            at += p.count;
        }
        if (!started_) first_launch_ = std::chrono::steady_clock::now(), started_ = true;
        if (b + 1 == buckets_.size()) {
            // the last bucket (the embedding's) is final only when the backward is over: nothing is left to
            // overlap it with, and the blocking all-reduce is the faster algorithm (Open MPI 4.1 over shared
            // memory, 2 ranks: 1.3× faster than MPI_Iallreduce + MPI_Wait at 13 MB, 1.9× at 1 MiB). One
            // bucket: the blocking path.
            {
                longnet::detail::dist::cpu_scope cpu(stats_->cpu_seconds_communication);
                detail::mpi_ok(MPI_Allreduce(MPI_IN_PLACE, k.buffer.data(), static_cast<int>(k.elements), detail::mpi_datatype<T>(),
                                             MPI_SUM, comm_),
                               "MPI_Allreduce (last gradient bucket)");
            }
            last_done_ = std::chrono::steady_clock::now();
            unpack(b);
        } else {
            longnet::detail::dist::cpu_scope cpu(stats_->cpu_seconds_communication);
            detail::mpi_ok(MPI_Iallreduce(MPI_IN_PLACE, k.buffer.data(), static_cast<int>(k.elements), detail::mpi_datatype<T>(),
                                          MPI_SUM, comm_, &k.request),
                           "MPI_Iallreduce (gradient bucket)");
            in_flight_.push_back(b);
        }
        stats_->gradient_bytes += static_cast<std::uint64_t>(k.elements) * sizeof(T);
        stats_->gradient_bytes_sent +=
            static_cast<std::uint64_t>(2.0 * (size_ - 1) / size_ * static_cast<double>(k.elements) * sizeof(T));
    }
    // MPI_Test on every bucket in flight (this is what moves them on: MPI progresses inside MPI calls).
    void poll() {
        std::size_t kept = 0;
        for (std::size_t b : in_flight_) {
            int done = 0;
            {
                longnet::detail::dist::cpu_scope cpu(stats_->cpu_seconds_communication);
                detail::mpi_ok(MPI_Test(&buckets_[b].request, &done, MPI_STATUS_IGNORE), "MPI_Test (gradient bucket)");
            }
            if (done) {
                last_done_ = std::chrono::steady_clock::now();
                unpack(b);
            } else {
                in_flight_[kept++] = b;
            }
        }
        in_flight_.resize(kept);
    }
    void unpack(std::size_t b) {
        const bucket& k = buckets_[b];
        std::int64_t at = 0;
        for (const piece& p : k.pieces) {
            std::memcpy(grads_[p.tensor].data + p.offset, k.buffer.data() + at, static_cast<std::size_t>(p.count) * sizeof(T));
            at += p.count;
        }
    }

    std::vector<named_tensor<T>> grads_;
    std::size_t groups_;
    std::vector<bucket> buckets_;
    std::vector<bool> ready_;
    std::vector<std::size_t> in_flight_;
    std::size_t next_ = 0;
    MPI_Comm comm_ = MPI_COMM_NULL;
    int size_ = 1;
    distributed_step_stats* stats_ = nullptr;
    distributed_step_stats unused_stats_;
    bool started_ = false;
    std::chrono::steady_clock::time_point first_launch_, last_done_;
};

// A 64-bit checksum (FNV-1a) of every parameter's bytes.
template <class T>
std::uint64_t parameter_checksum(const std::vector<named_tensor<T>>& params) {
    std::uint64_t h = 1469598103934665603ull;
    for (const auto& p : params) {
        const auto* bytes = reinterpret_cast<const unsigned char*>(p.data);
        const std::size_t count = static_cast<std::size_t>(p.size()) * sizeof(T);
        for (std::size_t i = 0; i < count; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
    }
    return h;
}

struct distributed_options {
    int data_parallel = 1;  // K groups of W/K ranks
    // The gradient all-reduce over the world: 0 runs it after the whole backward (allreduce_gradients,
    // blocking); > 0 overlaps it with the step's last backward pass in buckets of about this many bytes
    // (gradient_buckets, PyTorch DDP's scheme and default size). Same sums either way.
    std::int64_t bucket_bytes = std::int64_t(25) << 20;
#ifdef NDEBUG
    bool verify_parameters = false;  // checksum of the parameters across ranks after every step
#else
    bool verify_parameters = true;
#endif
};

// The trainer (trainer.hpp) over a world of MPI ranks; see the header comment. The batch passed to
// compute_gradients / step / evaluate is the whole batch of whole sequences (the same on every rank);
// each rank takes its group's sequences and its chunk of them. With world = MPI_COMM_NULL it is the
// single-process trainer.
template <class T>
class distributed_trainer {
public:
    // Collective over world (splits it into the sequence groups).
    distributed_trainer(nn::decoder<T, T>& model, const trainer_options& opt, MPI_Comm world,
                        const distributed_options& dopt = {})
        : model_(model), base_(model, opt), world_(world), dopt_(dopt) {
        if (dopt.bucket_bytes < 0)
            throw std::invalid_argument("longnet::training::distributed_trainer: bucket_bytes " + std::to_string(dopt.bucket_bytes) +
                                        " is negative (0: the blocking all-reduce after the backward)");
        if (world_ == MPI_COMM_NULL) {
            if (dopt.data_parallel != 1)
                throw std::invalid_argument("longnet::training::distributed_trainer: data parallelism " +
                                            std::to_string(dopt.data_parallel) + " needs an MPI communicator");
            return;
        }
        MPI_Comm_rank(world_, &world_rank_);
        MPI_Comm_size(world_, &world_size_);
        if (dopt.data_parallel < 1 || world_size_ % dopt.data_parallel != 0)
            throw std::invalid_argument("longnet::training::distributed_trainer: " + std::to_string(world_size_) +
                                        " ranks do not split into " + std::to_string(dopt.data_parallel) +
                                        " data-parallel groups of equal size");
        seq_size_ = world_size_ / dopt.data_parallel;
        group_ = world_rank_ / seq_size_;
        seq_rank_ = world_rank_ % seq_size_;
        sequence_comm_ = std::make_unique<longnet::detail::dist::sub_comm>(world_, group_, seq_rank_);
        if (world_size_ > 1 && dopt.bucket_bytes > 0)
            buckets_ = std::make_unique<gradient_buckets<T>>(base_.named_grads(), static_cast<index_t>(model_.layers.size()),
                                                             dopt.bucket_bytes);
        if (dopt_.verify_parameters) check_parameters();
    }
    distributed_trainer(const distributed_trainer&) = delete;
    distributed_trainer& operator=(const distributed_trainer&) = delete;

    bool distributed() const noexcept { return world_ != MPI_COMM_NULL; }
    bool is_root() const noexcept { return world_rank_ == 0; }
    int world_rank() const noexcept { return world_rank_; }
    int world_size() const noexcept { return world_size_; }
    int data_parallel() const noexcept { return dopt_.data_parallel; }
    int group() const noexcept { return group_; }
    int sequence_rank() const noexcept { return seq_rank_; }
    int sequence_ranks() const noexcept { return seq_size_; }
    std::int64_t bucket_bytes() const noexcept { return dopt_.bucket_bytes; }
    // Buckets of the overlapped gradient all-reduce (0: blocking, or one rank).
    std::size_t gradient_bucket_count() const noexcept { return buckets_ ? buckets_->bucket_count() : 0; }
    MPI_Comm world() const noexcept { return world_; }
    MPI_Comm sequence_comm() const noexcept { return sequence_comm_ ? sequence_comm_->get() : MPI_COMM_NULL; }

    std::int64_t steps_done() const noexcept { return base_.steps_done(); }
    const trainer_options& options() const noexcept { return base_.options(); }
    nn::decoder_grad<T>& gradients() noexcept { return base_.gradients(); }
    const std::vector<named_tensor<T>>& named_grads() const noexcept { return base_.named_grads(); }
    const std::vector<named_tensor<T>>& named_params() const noexcept { return base_.named_params(); }
    const distributed_step_stats& last_stats() const noexcept { return stats_; }

    // This rank's chunk [ρ·n, (ρ+1)·n) of a whole sequence (T must be a multiple of P).
    sequence chunk(const sequence& s) const {
        if (!s.documents.empty())
            throw std::invalid_argument("longnet::training::distributed_trainer: packed documents (pack_documents, "
                                        "--pack-documents) are not supported across MPI ranks; train them in one process");
        const std::size_t total = s.inputs.size(), ranks = static_cast<std::size_t>(seq_size_);
        if (total % ranks != 0 || total != s.targets.size())
            throw std::invalid_argument("longnet::training::distributed_trainer: a sequence of " + std::to_string(total) +
                                        " tokens does not split into " + std::to_string(ranks) +
                                        " equal chunks (the sequence length must be a multiple of the ranks per sequence)");
        const std::size_t n = total / ranks, first = n * static_cast<std::size_t>(seq_rank_);
        sequence c;
        c.inputs.assign(s.inputs.begin() + static_cast<std::ptrdiff_t>(first), s.inputs.begin() + static_cast<std::ptrdiff_t>(first + n));
        c.targets.assign(s.targets.begin() + static_cast<std::ptrdiff_t>(first), s.targets.begin() + static_cast<std::ptrdiff_t>(first + n));
        return c;
    }

    // Zero the gradients, forward + backward of this rank's share of the batch, sum over the world;
    // returns the batch loss (every rank the same). Collective over the world.
    double compute_gradients(const std::vector<sequence>& batch) {
        if (!distributed()) return base_.compute_gradients(batch);
        const auto t0 = std::chrono::steady_clock::now();
        stats_ = {};
        const double cpu0 = longnet::detail::dist::thread_cpu_seconds();
        std::string error;
        const std::vector<sequence> mine = my_chunks(batch, "empty batch", error);
        agree_on_chunks(mine, error);
        return run_local(mine, static_cast<double>(batch.size()), t0, cpu0);
    }

    // As compute_gradients, from this rank's chunks of its group's sequences only (batch_size: the global
    // batch size, the loss weight is 1/batch_size). For sequences too long to hold on one rank.
    double compute_gradients_local(const std::vector<sequence>& chunks, std::int64_t batch_size) {
        if (!distributed()) throw std::logic_error("compute_gradients_local needs an MPI communicator");
        const auto t0 = std::chrono::steady_clock::now();
        stats_ = {};
        const double cpu0 = longnet::detail::dist::thread_cpu_seconds();
        agree_on_chunks(chunks, {});
        return run_local(chunks, static_cast<double>(batch_size), t0, cpu0);
    }

    step_stats apply(double loss) {
        step_stats st = base_.apply(loss);
        if (distributed() && dopt_.verify_parameters) check_parameters();
        return st;
    }
    step_stats step(const std::vector<sequence>& batch) { return detail::timed_step(*this, batch); }

    // Throws collective_error on every rank unless every parameter is bitwise the same on all ranks.
    void check_parameters() {
        if (!distributed()) return;
        const std::uint64_t h = parameter_checksum(base_.named_params());
        const long long v = static_cast<long long>(h >> 1);
        long long mine[2] = {v, -v}, all[2] = {0, 0};
        detail::mpi_ok(MPI_Allreduce(mine, all, 2, MPI_LONG_LONG, MPI_MIN, world_), "MPI_Allreduce (parameter checksum)");
        stats_.control_bytes += sizeof all;
        if (all[0] != -all[1])
            throw collective_error("longnet::training::distributed_trainer: the parameters differ between ranks after step " +
                                   std::to_string(steps_done()) + " (checksums differ)");
    }

    // Held-out loss and accuracy (forward only), as trainer::evaluate; every rank gets the same numbers.
    typename trainer<T>::evaluation evaluate(const std::vector<sequence>& batch) {
        if (!distributed()) return base_.evaluate(batch);
        std::string error;
        const std::vector<sequence> mine = my_chunks(batch, "empty evaluation batch", error);
        agree_on_chunks(mine, error);
        return evaluate_mine(mine, batch.size());
    }
    // As evaluate, from this rank's chunks of its group's sequences only (batch_size: the global count of
    // sequences), as compute_gradients_local; e.g. shard_dataset::heldout with this rank's data_share.
    typename trainer<T>::evaluation evaluate_local(const std::vector<sequence>& chunks, std::int64_t batch_size) {
        if (!distributed()) throw std::logic_error("evaluate_local needs an MPI communicator");
        agree_on_chunks(chunks, batch_size < 1 ? std::string("longnet::training: empty evaluation batch") : std::string());
        return evaluate_mine(chunks, static_cast<std::size_t>(batch_size));
    }
    // This rank's share of the batches: its data-parallel group's sequences and its chunk of each (the
    // share shard_dataset::sample_batch and heldout read).
    data_share share() const noexcept {
        return {static_cast<std::size_t>(group_), static_cast<std::size_t>(dopt_.data_parallel), static_cast<std::size_t>(seq_rank_),
                static_cast<std::size_t>(seq_size_)};
    }

    // Rank 0 writes the run folder (trainer::save_checkpoint: atomic); every rank learns the outcome
    // (collective_error on every rank when the write failed).
    void save_checkpoint(const std::string& dir, const rng_state& rng, const nlohmann::json& extra = {}) {
        if (!distributed()) return base_.save_checkpoint(dir, rng, extra);
        std::string error;
        if (is_root()) {
            try {
                base_.save_checkpoint(dir, rng, extra);
            } catch (const std::exception& e) {
                error = e.what();
            }
        }
        detail::agree_or_throw(world_, error);
    }
    // Every rank reads the run folder (a shared file system) and the ranks check they agree.
    nlohmann::json load_checkpoint(const std::string& dir, rng_state& rng) {
        if (!distributed()) return base_.load_checkpoint(dir, rng);
        nlohmann::json j;
        std::string error;
        try {
            j = base_.load_checkpoint(dir, rng);
        } catch (const std::exception& e) {
            error = e.what();
        }
        detail::agree_or_throw(world_, error);
        check_parameters();
        return j;
    }

private:
    // evaluate's forward over this rank's chunks; the loss is the mean over batch_size sequences.
    typename trainer<T>::evaluation evaluate_mine(const std::vector<sequence>& mine, std::size_t batch_size) {
        const MPI_Comm comm = sequence_comm();
        sequence_parallel_attention<T> attention(comm, stats_);
        double sums[3] = {0, 0, 0};  // Σ sequence losses, correct, scored (group totals, counted on ρ = 0)
        for (const auto& c : mine) {
            nn::matrix<T> x;  // the training forward on this rank's rows, keeping one layer's activations
            nn::embedding_forward(model_.embed_tokens, c.inputs, model_.config.embed_scale(), x);
            nn::decoder_layer_activations<T> act;
            for (const auto& layer : model_.layers) layer.forward_train(x, act, attention);
            model_.final_norm.forward(x, x);
            const detail::score_sums r = detail::score_rows(model_, x, c.targets.data(), options().pass.loss_row_block);
            double local[3] = {r.loss, r.correct, r.scored};
            double group_sum[3];
            detail::mpi_ok(MPI_Allreduce(local, group_sum, 3, MPI_DOUBLE, MPI_SUM, comm), "MPI_Allreduce (evaluation)");
            if (seq_rank_ == 0) {
                sums[0] += group_sum[2] > 0 ? group_sum[0] / group_sum[2] : 0;
                sums[1] += group_sum[1];
                sums[2] += group_sum[2];
            }
        }
        double all[3];
        detail::mpi_ok(MPI_Allreduce(sums, all, 3, MPI_DOUBLE, MPI_SUM, world_), "MPI_Allreduce (evaluation)");
        typename trainer<T>::evaluation e;
        e.loss = all[0] / static_cast<double>(batch_size);
        e.accuracy = all[2] > 0 ? all[1] / all[2] : 0;
        return e;
    }
    // This rank's chunks of its group's sequences of batch; a failure goes to error.
    std::vector<sequence> my_chunks(const std::vector<sequence>& batch, const char* empty_message, std::string& error) const {
        std::vector<sequence> mine;
        try {
            if (batch.empty()) throw std::invalid_argument(empty_message);
            for (std::size_t i = static_cast<std::size_t>(group_); i < batch.size(); i += static_cast<std::size_t>(dopt_.data_parallel))
                mine.push_back(chunk(batch[i]));
        } catch (const std::exception& e) {
            error = std::string("longnet::training: ") + e.what();
        }
        return mine;
    }
    // Checks the chunks (unless error already says what failed) and agrees over the world: every rank
    // throws collective_error when any failed, so nobody enters a blocking collective while another failed.
    void agree_on_chunks(const std::vector<sequence>& chunks, std::string error) {
        for (const auto& c : chunks)
            if (error.empty()) error = detail::check_chunk(model_, c.inputs, c.targets, seq_rank_, seq_size_);
        longnet::detail::dist::cpu_scope cpu(stats_.cpu_seconds_communication);
        detail::agree_or_throw(world_, error);
    }
    double run_local(const std::vector<sequence>& chunks, double batch_size, std::chrono::steady_clock::time_point t0,
                     double cpu0) {
        base_.gradients().set_zero();
        const double weight = 1.0 / batch_size;
        double loss = 0;
        // bucketed all-reduce: the last pass tells the buckets which gradients are final (the earlier
        // passes still add to every buffer)
        gradient_buckets<T>* const buckets = buckets_.get();
        nn::train_options last_pass = options().pass;
        if (buckets) {
            buckets->begin(world_, &stats_);
            last_pass.gradients_ready = [buckets](index_t which) { buckets->ready(which); };
        }
        for (std::size_t i = 0; i < chunks.size(); ++i)
            loss += sequence_parallel_forward_backward(model_, chunks[i].inputs, chunks[i].targets, base_.gradients(),
                                                       sequence_comm(), i + 1 == chunks.size() ? last_pass : options().pass,
                                                       weight, &workspace_, &stats_);
        if (buckets) buckets->start_pending();  // those not started (no chunk here), except the last
        // each sequence's loss is known to all P ranks of its group: count it once
        double mine = seq_rank_ == 0 ? loss * weight : 0.0, total = 0;
        {
            longnet::detail::dist::cpu_scope cpu(stats_.cpu_seconds_communication);
            detail::mpi_ok(MPI_Allreduce(&mine, &total, 1, MPI_DOUBLE, MPI_SUM, world_), "MPI_Allreduce (batch loss)");
        }
        stats_.control_bytes += sizeof(double);
        if (buckets) buckets->finish();  // the last bucket, the wait, unpacking
        else allreduce_gradients(base_.named_grads(), world_, &stats_);
        stats_.seconds_total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        stats_.cpu_seconds_total = longnet::detail::dist::thread_cpu_seconds() - cpu0;
        double local_max[2] = {stats_.cpu_seconds_compute(), static_cast<double>(stats_.attention_bytes_sent)}, world_max[2];
        detail::mpi_ok(MPI_Allreduce(local_max, world_max, 2, MPI_DOUBLE, MPI_MAX, world_), "MPI_Allreduce (step statistics)");
        stats_.control_bytes += sizeof local_max;
        stats_.max_cpu_seconds_compute = world_max[0];
        stats_.max_attention_bytes_sent = static_cast<std::uint64_t>(world_max[1]);
        return total;
    }

    nn::decoder<T, T>& model_;
    trainer<T> base_;
    MPI_Comm world_ = MPI_COMM_NULL;
    distributed_options dopt_;
    int world_rank_ = 0, world_size_ = 1, group_ = 0, seq_rank_ = 0, seq_size_ = 1;
    std::unique_ptr<longnet::detail::dist::sub_comm> sequence_comm_;
    std::unique_ptr<gradient_buckets<T>> buckets_;  // bucket_bytes > 0 and more than one rank
    nn::decoder_activations<T> workspace_;
    distributed_step_stats stats_;
};

}  // namespace longnet::training

#endif  // LONGNET_TRAINING_HAS_MPI_HEADER
