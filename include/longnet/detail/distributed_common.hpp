// SPDX-License-Identifier: Apache-2.0
#pragma once
// Sequence parallelism, shared pieces: traffic counters, MPI helpers, and the precondition check that
// every rank agrees on before any collective that could block (SPEC §7).
//
// Layout: rank ρ of P owns positions [ρ·n, (ρ+1)·n) of a sequence of N = P·n. A branch (w, r) with
// effective segment length w' = min(w, N) is local when w' ≤ n (it runs on the chunk alone) and long
// otherwise: its segment s = ρ·n / w' spans the g = min(w'/n, P − s·w'/n) ranks of one group, and every
// rank holds exactly c = n / r selected rows of each head in that segment (residues align since the
// segment start and ρ·n are multiples of r).

#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "longnet/numeric.hpp"
#include "longnet/options.hpp"
#include "longnet/tensor.hpp"

namespace longnet::distributed {

// Communication of one call on one rank. Bytes are payload (K/V rows in the forward, K/V rows and
// dK/dV partial sums in the backward) this rank sends to and receives from OTHER ranks: a ring
// all-gather or all-to-all moves exactly this much per rank. The precondition agreement (a few small
// collectives over the whole communicator) is counted apart in control_bytes.
struct comm_stats {
    std::uint64_t bytes_sent = 0;
    std::uint64_t bytes_received = 0;
    std::uint64_t control_bytes = 0;   // precondition agreement and group set-up (payload of small collectives)
    int collectives = 0;               // payload collectives issued (all-gathers, all-to-alls)
    int local_branches = 0;            // branches that ran on the chunk alone
    int long_branches = 0;             // branches whose segment spans several ranks
    int communicators_created = 0;     // group communicators split in this call (0 once they are kept: the
                                       // first call on a communicator splits them, later calls reuse them)
    double seconds_total = 0;          // wall time of the call
    double seconds_communication = 0;  // time inside payload collectives (includes waiting for peers)
    // This thread's CPU time inside every collective of the call (payload, agreement, group set-up): what
    // a rank burns polling while it waits; the call's CPU time minus this is its compute.
    double cpu_seconds_communication = 0;
};

}  // namespace longnet::distributed

namespace longnet::detail::dist {

using clock = std::chrono::steady_clock;
inline double seconds_since(clock::time_point t0) {
    return std::chrono::duration<double>(clock::now() - t0).count();
}

// CPU time of the calling thread (POSIX; the process's elsewhere).
inline double thread_cpu_seconds() noexcept {
#if defined(CLOCK_THREAD_CPUTIME_ID)
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
#else
    return static_cast<double>(std::clock()) / CLOCKS_PER_SEC;
#endif
}
// Adds the thread CPU time of its scope to a counter.
class cpu_scope {
public:
    explicit cpu_scope(double& slot) noexcept : slot_(slot), t0_(thread_cpu_seconds()) {}
    ~cpu_scope() { slot_ += thread_cpu_seconds() - t0_; }
    cpu_scope(const cpu_scope&) = delete;
    cpu_scope& operator=(const cpu_scope&) = delete;

private:
    double& slot_;
    double t0_;
};

// An error message from a single-process check, prefixed with the distributed op's name.
inline std::string with_prefix(const std::string& prefix, const std::string& message) {
    if (message.rfind("longnet::distributed", 0) == 0) return message;
    return prefix + message;
}

// The backward's mode must be one of the two grad modes.
inline void check_grad_mode(grad_mode mode) {
    if (mode != grad_mode::exact && mode != grad_mode::stop_grad_weights)
        throw std::invalid_argument("unknown grad mode value " + std::to_string(static_cast<int>(mode)));
}

inline void mpi_check(int rc, const char* what) {
    if (rc != MPI_SUCCESS) {
        char text[MPI_MAX_ERROR_STRING];
        int len = 0;
        MPI_Error_string(rc, text, &len);
        throw std::runtime_error(std::string("longnet::distributed: ") + what + " failed: " + std::string(text, static_cast<std::size_t>(len)));
    }
}

// Owns an MPI datatype.
class mpi_type {
public:
    mpi_type() = default;
    explicit mpi_type(MPI_Datatype t) : type_(t) { mpi_check(MPI_Type_commit(&type_), "MPI_Type_commit"); }
    mpi_type(const mpi_type&) = delete;
    mpi_type& operator=(const mpi_type&) = delete;
    mpi_type(mpi_type&& o) noexcept : type_(o.type_) { o.type_ = MPI_DATATYPE_NULL; }
    ~mpi_type() {
        if (type_ != MPI_DATATYPE_NULL) MPI_Type_free(&type_);
    }
    MPI_Datatype get() const noexcept { return type_; }

private:
    MPI_Datatype type_ = MPI_DATATYPE_NULL;
};

// One row of `bytes` bytes.
inline mpi_type row_type(std::size_t bytes) {
    MPI_Datatype t;
    mpi_check(MPI_Type_contiguous(static_cast<int>(bytes), MPI_BYTE, &t), "MPI_Type_contiguous");
    return mpi_type(t);
}

// `blocks` blocks of `rows` rows, `stride_rows` apart, with extent `rows` rows: consecutive elements of
// this type interleave, so rank k's [blocks][rows] lands at row offset k·rows of [blocks][g·rows].
inline mpi_type strided_block_type(const mpi_type& row, std::size_t row_bytes, index_t blocks, index_t rows,
                                   index_t stride_rows) {
    MPI_Datatype vec, resized;
    mpi_check(MPI_Type_vector(static_cast<int>(blocks), static_cast<int>(rows), static_cast<int>(stride_rows), row.get(), &vec),
              "MPI_Type_vector");
    const int rc = MPI_Type_create_resized(vec, 0, static_cast<MPI_Aint>(rows) * static_cast<MPI_Aint>(row_bytes), &resized);
    MPI_Type_free(&vec);
    mpi_check(rc, "MPI_Type_create_resized");
    return mpi_type(resized);
}

// Owns a communicator made by MPI_Comm_split (or MPI_Comm_dup: the parent's group, its own matching space).
class sub_comm {
public:
    sub_comm() = default;
    sub_comm(MPI_Comm parent, int color, int key) {
        mpi_check(MPI_Comm_split(parent, color, key, &comm_), "MPI_Comm_split");
    }
    explicit sub_comm(MPI_Comm parent) { mpi_check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup"); }
    sub_comm(const sub_comm&) = delete;
    sub_comm& operator=(const sub_comm&) = delete;
    ~sub_comm() {
        if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
    }
    MPI_Comm get() const noexcept { return comm_; }

private:
    MPI_Comm comm_ = MPI_COMM_NULL;
};

// Every rank passes its local error ("" when fine). If any rank failed, every rank throws
// std::invalid_argument with the message of the lowest failing rank. Two small collectives, always
// reached by every rank: nobody blocks in a later collective while another rank has thrown.
inline void agree_on_errors(MPI_Comm comm, const std::string& local_error, std::uint64_t& control_bytes) {
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    const int mine = local_error.empty() ? size : rank;
    int first = size;
    mpi_check(MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm), "MPI_Allreduce (error flag)");
    control_bytes += sizeof(int);
    if (first == size) return;
    std::string message = rank == first ? local_error : std::string();
    long long length = static_cast<long long>(message.size());
    mpi_check(MPI_Bcast(&length, 1, MPI_LONG_LONG, first, comm), "MPI_Bcast (error length)");
    message.resize(static_cast<std::size_t>(length));
    mpi_check(MPI_Bcast(&message[0], static_cast<int>(length), MPI_CHAR, first, comm), "MPI_Bcast (error message)");
    throw std::invalid_argument(message + " [reported by rank " + std::to_string(first) + " of " + std::to_string(size) +
                                "]");
}

// A named integer every rank must pass with the same value.
struct fingerprint_field {
    const char* name;
    long long value;
};

inline long long hash_bits(const void* data, std::size_t bytes, std::uint64_t h = 1469598103934665603ull) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 1099511628211ull;  // FNV-1a
    return static_cast<long long>(h >> 1);
}

// The fields of the shapes and options that must agree across ranks.
template <class T>
std::vector<fingerprint_field> fingerprint(index_t batch, index_t seq, index_t heads, index_t dim,
                                           const dilated_options& opt, long long extra) {
    long long type_id = static_cast<long long>(sizeof(T));
    if (std::is_same_v<T, bfloat16>) type_id += 100;
    if (std::is_same_v<T, half>) type_id += 200;
    std::uint64_t h = 1469598103934665603ull;
    for (const branch& br : opt.branches) {
        const long long wr[2] = {static_cast<long long>(br.segment_length), static_cast<long long>(br.dilation)};
        h = static_cast<std::uint64_t>(hash_bits(wr, sizeof wr, h));
    }
    long long scale_bits = 0;
    if (opt.scale) std::memcpy(&scale_bits, &*opt.scale, sizeof scale_bits);
    return {{"batch B", batch},
            {"local sequence length n", seq},
            {"heads H", heads},
            {"head dim D", dim},
            {"element type", type_id},
            {"number of branches", static_cast<long long>(opt.branches.size())},
            {"branch list (segment lengths, dilations)", static_cast<long long>(h)},
            {"causal flag", opt.causal ? 1 : 0},
            {"offset policy", static_cast<long long>(opt.offsets)},
            {"tail mode", static_cast<long long>(opt.tail)},
            {"scale given", opt.scale ? 1 : 0},
            {"scale", scale_bits},
            {"operation (forward 0, backward 1 + grad mode)", extra}};
}

// All ranks compare their fingerprints (one all-reduce of min and −max); on a difference every rank
// throws the same message naming the first field that differs and its range.
inline void agree_on_fingerprint(MPI_Comm comm, const char* op, const std::vector<fingerprint_field>& fields,
                                 std::uint64_t& control_bytes) {
    std::vector<long long> mine(2 * fields.size()), all(2 * fields.size());
    for (std::size_t i = 0; i < fields.size(); ++i) {
        mine[2 * i] = fields[i].value;
        mine[2 * i + 1] = fields[i].value == LLONG_MIN ? LLONG_MAX : -fields[i].value;
    }
    mpi_check(MPI_Allreduce(mine.data(), all.data(), static_cast<int>(all.size()), MPI_LONG_LONG, MPI_MIN, comm),
              "MPI_Allreduce (fingerprint)");
    control_bytes += all.size() * sizeof(long long);
    for (std::size_t i = 0; i < fields.size(); ++i) {
        const long long lo = all[2 * i], hi = -all[2 * i + 1];
        if (lo != hi)
            throw std::invalid_argument(std::string("longnet::distributed::") + op + ": ranks disagree on the " +
                                        fields[i].name + " (values range from " + std::to_string(lo) + " to " +
                                        std::to_string(hi) +
                                        "); every rank must pass the same local shape [B, n, H, D], element type and "
                                        "options");
    }
}

// Where one branch runs, from this rank's point of view.
struct branch_plan {
    bool is_long = false;
    index_t segment_length = 0;  // w' = min(w, N)
    index_t dilation = 1;
    index_t segment = 0;         // segment index of this rank (long branches)
    index_t group_first = 0;     // first rank of the group
    index_t group_size = 1;      // g
    index_t group_rank = 0;      // k: this rank's position in the group
    index_t rows_per_rank = 0;   // c = n / r selected rows per head on each rank
    index_t max_selected = 0;    // ceil(w' / r): selected rows of a full segment (zero_pad parity)
    index_t ranks_per_segment = 0;  // w' / n (long branches): what the group split depends on
};

// Checks that need the agreed sizes (identical on every rank, so every rank throws the same error
// without communicating) and the plan of every branch.
inline std::vector<branch_plan> plan_branches(const char* op, const dilated_options& opt, index_t n, int ranks,
                                              int rank) {
    const index_t N = n * ranks;
    std::vector<branch_plan> plans;
    const std::string who = std::string("longnet::distributed::") + op + ": ";
    for (std::size_t i = 0; i < opt.branches.size(); ++i) {
        const branch& br = opt.branches[i];
        branch_plan p;
        p.segment_length = std::min(br.segment_length, N);
        p.dilation = br.dilation;
        p.max_selected = (p.segment_length + br.dilation - 1) / br.dilation;
        const std::string name = "branch " + std::to_string(i) + " (w = " + std::to_string(br.segment_length) +
                                 ", r = " + std::to_string(br.dilation) + ")";
        if (p.segment_length <= n) {
            if (n % p.segment_length != 0)
                throw std::invalid_argument(who + name + " is local (w <= n = " + std::to_string(n) +
                                            ") but n is not a multiple of w: segments would straddle ranks. Choose n "
                                            "(the per-rank sequence length) as a multiple of every local w");
        } else {
            if (p.segment_length % n != 0)
                throw std::invalid_argument(who + name + " spans ranks (w > n = " + std::to_string(n) +
                                            ") but w is not a multiple of n: a segment must cover whole ranks");
            if (n % br.dilation != 0)
                throw std::invalid_argument(who + name + " spans ranks but n = " + std::to_string(n) +
                                            " is not a multiple of r: the selected rows would not align across ranks");
            p.is_long = true;
            const index_t span = p.segment_length / n;  // ranks per full segment
            p.segment = rank / span;
            p.ranks_per_segment = span;
            p.group_first = p.segment * span;
            p.group_size = std::min<index_t>(span, ranks - p.group_first);
            p.group_rank = rank - p.group_first;
            p.rows_per_rank = n / br.dilation;
        }
        plans.push_back(p);
    }
    return plans;
}

// Sub-communicators kept across calls, cached on the parent communicator with MPI's attribute caching
// (MPI_Comm_set_attr): the first call on a communicator splits (or duplicates) it, later calls find the
// result. MPI_Comm_split and MPI_Comm_dup are collective over the parent; every rank looks the same key up
// in the same order, so every rank hits or misses together (a key names what the split depends on: the
// ranks per segment group, the same on every rank; colour and key follow from it and the rank).
// Lifetime: freed when the parent is freed (the attribute's delete callback), and at MPI_Finalize for
// communicators still alive (MPI_COMM_WORLD among them) through an attribute on MPI_COMM_SELF, whose
// delete callback MPI runs first in MPI_Finalize. MPI_Comm_dup of a parent starts with an empty cache
// (MPI_COMM_NULL_COPY_FN). Calls on one parent are collective and ordered, as MPI requires; a mutex guards
// the process-wide bookkeeping (never held across a collective) for calls on different communicators from
// different threads.
class comm_cache {
public:
    // The sub-communicator for key `key` (>= 0: a split by `color`/`rank_key`; -1: a duplicate).
    static MPI_Comm get(MPI_Comm parent, long long key, int color, int rank_key, bool& created) {
        created = false;
        entry* e = nullptr;
        {
            std::lock_guard<std::mutex> lock(mutex());
            const int keyval = keyval_locked();
            int found = 0;
            mpi_check(MPI_Comm_get_attr(parent, keyval, &e, &found), "MPI_Comm_get_attr");
            if (!found) {
                e = new entry;
                e->parent = parent;
                e->order = next_order()++;
                const int rc = MPI_Comm_set_attr(parent, keyval, e);
                if (rc != MPI_SUCCESS) {
                    delete e;
                    mpi_check(rc, "MPI_Comm_set_attr");
                }
                registry().emplace(e->order, e);
            }
            auto it = e->subs.find(key);
            if (it != e->subs.end()) return it->second;
        }
        // The collective runs without the lock: threads of one process working on different parents
        // (MPI_THREAD_MULTIPLE) must not wait for each other's peers. Calls on one parent are ordered by
        // the caller (MPI's rule for collectives), so nobody else adds this key meanwhile.
        MPI_Comm sub = MPI_COMM_NULL;
        if (key < 0)
            mpi_check(MPI_Comm_dup(parent, &sub), "MPI_Comm_dup");
        else
            mpi_check(MPI_Comm_split(parent, color, rank_key, &sub), "MPI_Comm_split");
        std::lock_guard<std::mutex> lock(mutex());
        e->subs.emplace(key, sub);
        ++live_count();
        created = true;
        return sub;
    }
    // Sub-communicators alive in the cache (all parents): for tests.
    static long long live() {
        std::lock_guard<std::mutex> lock(mutex());
        return live_count();
    }

private:
    struct entry {
        MPI_Comm parent = MPI_COMM_NULL;
        std::uint64_t order = 0;  // creation order: the same on every rank (first calls are collective)
        std::map<long long, MPI_Comm> subs;
    };
    static std::mutex& mutex() {
        static std::mutex m;
        return m;
    }
    static long long& live_count() {
        static long long n = 0;
        return n;
    }
    // live caches by creation order, so MPI_Finalize frees them in the same order on every rank
    // (MPI_Comm_free is collective)
    static std::map<std::uint64_t, entry*>& registry() {
        static std::map<std::uint64_t, entry*> r;
        return r;
    }
    static std::uint64_t& next_order() {
        static std::uint64_t n = 0;
        return n;
    }
    static int& keyval_slot() {
        static int k = MPI_KEYVAL_INVALID;
        return k;
    }
    static void free_entry(entry* e) {  // called with the mutex held
        for (auto& kv : e->subs) {
            MPI_Comm_free(&kv.second);
            --live_count();
        }
        registry().erase(e->order);
        delete e;
    }
    static int delete_fn(MPI_Comm, int, void* value, void*) {
        std::lock_guard<std::mutex> lock(mutex());
        free_entry(static_cast<entry*>(value));
        return MPI_SUCCESS;
    }
    // MPI_Finalize deletes MPI_COMM_SELF's attributes first: delete the caches still alive (each
    // MPI_Comm_delete_attr runs delete_fn), then the keyval.
    static int finalize_fn(MPI_Comm, int, void*, void*) {
        for (;;) {
            MPI_Comm parent = MPI_COMM_NULL;
            {
                std::lock_guard<std::mutex> lock(mutex());
                if (registry().empty()) break;
                parent = registry().begin()->second->parent;
            }
            if (MPI_Comm_delete_attr(parent, keyval_slot()) != MPI_SUCCESS) {
                std::lock_guard<std::mutex> lock(mutex());  // cannot happen for a live parent; never loop
                if (!registry().empty()) free_entry(registry().begin()->second);
            }
        }
        int& k = keyval_slot();
        if (k != MPI_KEYVAL_INVALID) MPI_Comm_free_keyval(&k);
        return MPI_SUCCESS;
    }
    static int keyval_locked() {
        int& k = keyval_slot();
        if (k == MPI_KEYVAL_INVALID) {
            mpi_check(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, &comm_cache::delete_fn, &k, nullptr),
                      "MPI_Comm_create_keyval");
            int self_key = MPI_KEYVAL_INVALID;
            mpi_check(MPI_Comm_create_keyval(MPI_COMM_NULL_COPY_FN, &comm_cache::finalize_fn, &self_key, nullptr),
                      "MPI_Comm_create_keyval");
            mpi_check(MPI_Comm_set_attr(MPI_COMM_SELF, self_key, nullptr), "MPI_Comm_set_attr");
            MPI_Comm_free_keyval(&self_key);  // the attribute stays until MPI_COMM_SELF is freed
        }
        return k;
    }
};

// The group communicator of a long branch, one per distinct group size (w' / n), from comm_cache: split
// by the first call on a communicator and kept across calls (control_bytes counts a split only when one
// is made).
inline MPI_Comm group_communicator(MPI_Comm parent, const branch_plan& p, distributed::comm_stats& st) {
    cpu_scope cpu(st.cpu_seconds_communication);
    int rank = 0;
    MPI_Comm_rank(parent, &rank);
    bool created = false;
    // the split depends on the ranks per full segment (w' / n), the same on every rank
    MPI_Comm c = comm_cache::get(parent, static_cast<long long>(p.ranks_per_segment), static_cast<int>(p.segment), rank,
                                 created);
    if (created) {
        st.control_bytes += 2 * sizeof(int);
        ++st.communicators_created;
    }
    return c;
}

// A duplicate of `parent` (its own point-to-point matching space), made once per communicator.
inline MPI_Comm cached_dup(MPI_Comm parent) {
    bool created = false;
    return comm_cache::get(parent, -1, 0, 0, created);
}

// The checks every distributed entry runs first, on every rank, before any blocking collective.
template <class T>
std::vector<branch_plan> agree_and_plan(MPI_Comm comm, const char* op, const std::string& local_error, index_t batch,
                                        index_t seq, index_t heads, index_t dim, const dilated_options& opt,
                                        long long extra, std::uint64_t& control_bytes) {
    agree_on_errors(comm, local_error, control_bytes);
    agree_on_fingerprint(comm, op, fingerprint<T>(batch, seq, heads, dim, opt, extra), control_bytes);
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    if (seq < 1 && size > 1)
        throw std::invalid_argument(std::string("longnet::distributed::") + op +
                                    ": the local sequence length n must be >= 1 with several ranks");
    if (seq < 1) return {};
    std::vector<branch_plan> plans = plan_branches(op, opt, seq, size, rank);
    for (const branch_plan& p : plans)
        if (p.is_long && (batch * heads > INT_MAX / 2 || p.group_size * p.rows_per_rank > INT_MAX / 2 ||
                          static_cast<long long>(dim) * 8 > INT_MAX))
            throw std::invalid_argument(std::string("longnet::distributed::") + op +
                                        ": sizes exceed MPI's int counts (B·H, rows of a segment or D too large)");
    return plans;
}

}  // namespace longnet::detail::dist
