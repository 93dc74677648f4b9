// SPDX-License-Identifier: Apache-2.0
// Fuzz target: the .npy reader (longnet/io/npy.hpp) on arbitrary bytes.
//
// Every input must either throw npy_error or give an array that keeps the header's promises, checked
// here against an independent reading of the bytes: the data is exactly the file's tail of
// product(shape) x itemsize bytes (no trailing bytes), each element's bytes are the file's (byte-swapped
// for '>' files, Fortran order transposed to C order), the rank is at most 64; and the array written
// back by npy_file_bytes reads back identical.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <longnet/io/npy.hpp>

#include "fuzz_check.hpp"

namespace {

using longnet::io::npy_array;

// The element of a C-order index `c` in a Fortran-order buffer of `shape`.
std::uint64_t fortran_offset(std::uint64_t c, const std::vector<std::int64_t>& shape) {
    std::uint64_t f = 0, stride = 1;
    std::vector<std::uint64_t> index(shape.size());
    for (std::size_t d = shape.size(); d-- > 0;) {  // C order: last index fastest
        const auto extent = static_cast<std::uint64_t>(shape[d]);
        index[d] = c % extent;
        c /= extent;
    }
    for (std::size_t d = 0; d < shape.size(); ++d) {  // Fortran order: first index fastest
        f += index[d] * stride;
        stride *= static_cast<std::uint64_t>(shape[d]);
    }
    return f;
}

void check_accepted(const std::uint8_t* data, std::size_t size, const npy_array& a) {
    FUZZ_CHECK(a.ndim() <= 64, "rank " + std::to_string(a.ndim()) + " above the limit 64");
    std::uint64_t count = 1;
    for (std::int64_t d : a.shape()) {
        FUZZ_CHECK(d >= 0, "negative dimension");
        count *= static_cast<std::uint64_t>(d);
    }
    FUZZ_CHECK(count == a.size(), "element count " + std::to_string(a.size()) + " != product of shape " +
                                      longnet::io::shape_string(a.shape()));
    const std::size_t item = a.itemsize();
    const std::size_t nbytes = a.size() * item;
    FUZZ_CHECK(nbytes == a.nbytes(), "nbytes");

    // Preamble and header, read independently of the reader.
    FUZZ_CHECK(size >= 10 && std::memcmp(data, "\x93NUMPY", 6) == 0, "accepted without the magic");
    const int major = data[6];
    FUZZ_CHECK((major == 1 || major == 2 || major == 3) && data[7] == 0, "accepted version " + std::to_string(major));
    const std::size_t preamble = major == 1 ? 10 : 12;
    std::size_t header_len = data[8] | (std::size_t(data[9]) << 8);
    if (major != 1) header_len |= (std::size_t(data[10]) << 16) | (std::size_t(data[11]) << 24);
    FUZZ_CHECK(preamble + header_len + nbytes == size,
               "header " + std::to_string(header_len) + " + data " + std::to_string(nbytes) + " bytes != file " +
                   std::to_string(size) + " bytes (trailing or missing bytes accepted)");
    const std::string header(reinterpret_cast<const char*>(data + preamble), header_len);
    // The strict header has exactly 'descr' (one of the supported dtypes), 'fortran_order' and 'shape':
    // "True" and '>' can only come from fortran_order and a big-endian descr.
    const bool fortran = header.find("True") != std::string::npos;
    const bool big_endian = header.find('>') != std::string::npos;
    const std::uint8_t* file_data = data + preamble + header_len;

    const auto* got = static_cast<const std::uint8_t*>(a.data());
    std::vector<std::uint8_t> element(item);
    for (std::uint64_t c = 0; c < count; ++c) {
        const std::uint64_t f = fortran && a.ndim() > 1 ? fortran_offset(c, a.shape()) : c;
        std::memcpy(element.data(), file_data + f * item, item);
        if (big_endian) std::reverse(element.begin(), element.end());  // this host is little-endian
        FUZZ_CHECK(std::memcmp(element.data(), got + c * item, item) == 0,
                   "element " + std::to_string(c) + " differs from the file's element " + std::to_string(f));
    }

    // Written back and read again: the same array.
    const std::string image = longnet::io::npy_file_bytes(a.dtype(), a.shape(), a.data(), a.size());
    const npy_array b = longnet::io::load_npy_bytes(image.data(), image.size(), "<round trip>");
    FUZZ_CHECK(b.dtype() == a.dtype() && b.shape() == a.shape(), "round trip changed dtype or shape");
    FUZZ_CHECK(nbytes == 0 || std::memcmp(a.data(), b.data(), nbytes) == 0, "round trip changed the data");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    npy_array a;
    try {
        a = longnet::io::load_npy_bytes(data, size, "<fuzz>");
    } catch (const longnet::io::npy_error& e) {
        FUZZ_CHECK(std::string(e.what()).rfind("npy: <fuzz>: ", 0) == 0, std::string("message does not name the file: ") + e.what());
        return 0;
    }
    check_accepted(data, size, a);
    return 0;
}
