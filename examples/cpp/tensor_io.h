// Host-side helpers of the C++ classification example: a strict .npy reader (float32 only),
// the image-batch shape check, the labels file, softmax and top-k.
//
// Plain C++17, no TensorRT and no CUDA, so tests/test_cpp_example.py compiles and runs it (through
// tensor_io_check.cpp) on any machine with a C++ compiler. Every error is a TensorIoError whose
// what() is one line that names the file.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

// The payload is copied into host floats as it is: the file is little-endian ('<f4'), so the host
// must be too (x86-64 and aarch64 Linux are).
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "tensor_io.h copies little-endian float32 data as it is: a big-endian host would need a byte swap"
#endif

namespace transnext
{
namespace example
{

class TensorIoError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

struct FloatArray
{
    std::vector<int64_t> shape; // C order
    std::vector<float> data;    // product(shape) values
};

inline std::string shapeString(std::vector<int64_t> const& shape)
{
    std::string text = "[";
    for (size_t i = 0; i < shape.size(); ++i)
    {
        text += (i ? "," : "") + std::to_string(shape[i]);
    }
    return text + "]";
}

namespace detail
{

// Keeps a message on one line and short, whatever bytes a damaged header holds.
inline std::string printable(std::string const& text, size_t limit = 40)
{
    std::string out;
    for (char c : text.substr(0, limit))
    {
        out += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    return text.size() > limit ? out + "..." : out;
}

inline char const* dtypeName(std::string const& descr)
{
    static char const* const kNames[][2] = {{"<f8", "float64"}, {"<f2", "float16"}, {">f4", "big-endian float32"},
        {">f8", "big-endian float64"}, {"<i8", "int64"}, {"<i4", "int32"}, {"|u1", "uint8"}, {"|i1", "int8"},
        {"|b1", "bool"}, {"|O", "object (pickled Python objects)"}, {"<u2", "uint16"}, {"<c8", "complex64"}};
    for (auto const& entry : kNames)
    {
        if (descr == entry[0])
        {
            return entry[1];
        }
    }
    return nullptr;
}

// The header is a Python dict literal written by numpy.lib.format, e.g.
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3, 224, 224), }
// This parser accepts exactly that grammar: three known keys, each once, string / bool / tuple of
// non-negative integers, optional trailing commas, then only spaces up to the final newline.
class HeaderParser
{
public:
    HeaderParser(std::string text, std::string where)
        : mText(std::move(text))
        , mWhere(std::move(where))
    {
    }

    void parse(std::string& descr, bool& fortranOrder, std::vector<int64_t>& shape)
    {
        bool haveDescr = false, haveOrder = false, haveShape = false;
        skipSpace();
        expect('{');
        while (true)
        {
            skipSpace();
            if (peek() == '}')
            {
                ++mPos;
                break;
            }
            std::string const key = parseString("a key");
            skipSpace();
            expect(':');
            skipSpace();
            if (key == "descr")
            {
                if (peek() == '[')
                {
                    fail("has a structured dtype (a list of fields); expected plain float32 ('<f4')");
                }
                descr = parseString("the 'descr' value");
                once(haveDescr, key);
            }
            else if (key == "fortran_order")
            {
                fortranOrder = parseBool();
                once(haveOrder, key);
            }
            else if (key == "shape")
            {
                shape = parseTuple();
                once(haveShape, key);
            }
            else
            {
                fail("has an unknown header key '" + printable(key) + "'");
            }
            skipSpace();
            if (peek() == ',')
            {
                ++mPos;
            }
            else if (peek() != '}')
            {
                fail("has a malformed header (expected ',' or '}' at offset " + std::to_string(mPos) + ")");
            }
        }
        for (; mPos < mText.size(); ++mPos)
        {
            if (mText[mPos] != ' ' && mText[mPos] != '\n')
            {
                fail("has a malformed header (text after the closing '}')");
            }
        }
        if (!haveDescr || !haveOrder || !haveShape)
        {
            fail(std::string("has a header without '") + (!haveDescr ? "descr" : !haveOrder ? "fortran_order" : "shape")
                + "'");
        }
    }

private:
    [[noreturn]] void fail(std::string const& what) const
    {
        throw TensorIoError(mWhere + ": " + what);
    }

    char peek() const
    {
        return mPos < mText.size() ? mText[mPos] : '\0';
    }

    void skipSpace()
    {
        while (mPos < mText.size() && (mText[mPos] == ' ' || mText[mPos] == '\n'))
        {
            ++mPos;
        }
    }

    void expect(char c)
    {
        if (peek() != c)
        {
            fail(std::string("has a malformed header (expected '") + c + "' at offset " + std::to_string(mPos) + ")");
        }
        ++mPos;
    }

    void once(bool& seen, std::string const& key) const
    {
        if (seen)
        {
            fail("has the header key '" + key + "' twice");
        }
        seen = true;
    }

    std::string parseString(char const* what)
    {
        char const quote = peek();
        if (quote != '\'' && quote != '"')
        {
            fail(std::string("has a malformed header (expected a quoted string for ") + what + ")");
        }
        size_t const end = mText.find(quote, mPos + 1);
        if (end == std::string::npos)
        {
            fail("has a malformed header (unterminated string)");
        }
        std::string value = mText.substr(mPos + 1, end - mPos - 1);
        mPos = end + 1;
        return value;
    }

    bool parseBool()
    {
        if (mText.compare(mPos, 4, "True") == 0)
        {
            mPos += 4;
            return true;
        }
        if (mText.compare(mPos, 5, "False") == 0)
        {
            mPos += 5;
            return false;
        }
        fail("has a malformed header ('fortran_order' is not True or False)");
    }

    std::vector<int64_t> parseTuple()
    {
        std::vector<int64_t> values;
        expect('(');
        while (true)
        {
            skipSpace();
            if (peek() == ')')
            {
                ++mPos;
                return values;
            }
            if (peek() < '0' || peek() > '9')
            {
                fail("has a malformed 'shape' (expected a non-negative integer at offset " + std::to_string(mPos) + ")");
            }
            int64_t value = 0;
            while (peek() >= '0' && peek() <= '9')
            {
                int const digit = peek() - '0';
                if (value > (std::numeric_limits<int64_t>::max() - digit) / 10)
                {
                    fail("has a 'shape' dimension that does not fit in 64 bits");
                }
                value = value * 10 + digit;
                ++mPos;
            }
            values.push_back(value);
            skipSpace();
            if (peek() == ',')
            {
                ++mPos;
            }
            else if (peek() != ')')
            {
                fail("has a malformed 'shape' (expected ',' or ')' at offset " + std::to_string(mPos) + ")");
            }
        }
    }

    std::string mText;
    std::string mWhere;
    size_t mPos = 0;
};

inline uint32_t littleEndian(unsigned char const* bytes, int count)
{
    uint32_t value = 0;
    for (int i = count - 1; i >= 0; --i)
    {
        value = (value << 8) | bytes[i];
    }
    return value;
}

} // namespace detail

// Reads a .npy file (format version 1.0 or 2.0) holding a float32 little-endian C-order array.
// Refuses anything else -- another dtype, Fortran order, a pickle, version 3.0 (UTF-8 header), a
// file shorter or longer than its header says -- with a one-line TensorIoError.
inline FloatArray readNpyFloat32(std::string const& path)
{
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
    {
        throw TensorIoError(path + ": " + (std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
    }
    uintmax_t const fileSize = std::filesystem::file_size(path, ec);
    std::ifstream in(path, std::ios::binary);
    if (ec || !in)
    {
        throw TensorIoError(path + ": cannot open for reading");
    }
    unsigned char prefix[12] = {};
    in.read(reinterpret_cast<char*>(prefix), 8);
    if (in.gcount() < 8 || std::memcmp(prefix, "\x93NUMPY", 6) != 0)
    {
        throw TensorIoError(path + ": not a .npy file (no \\x93NUMPY magic): save the tensor with numpy.save");
    }
    int const major = prefix[6];
    if (major != 1 && major != 2)
    {
        throw TensorIoError(path + ": .npy format version " + std::to_string(major) + "." + std::to_string(prefix[7])
            + " is not supported (only 1.0 and 2.0, what numpy.save writes for a float32 array)");
    }
    int const lengthBytes = major == 1 ? 2 : 4;
    in.read(reinterpret_cast<char*>(prefix + 8), lengthBytes);
    if (in.gcount() < lengthBytes)
    {
        throw TensorIoError(path + ": truncated .npy header");
    }
    uint64_t const headerLength = detail::littleEndian(prefix + 8, lengthBytes);
    uint64_t const dataOffset = 8 + static_cast<uint64_t>(lengthBytes) + headerLength;
    if (dataOffset > fileSize)
    {
        throw TensorIoError(path + ": truncated .npy header (" + std::to_string(headerLength) + " bytes announced, "
            + std::to_string(fileSize - 8 - lengthBytes) + " in the file)");
    }
    std::string header(static_cast<size_t>(headerLength), '\0');
    in.read(header.data(), static_cast<std::streamsize>(headerLength));
    if (static_cast<uint64_t>(in.gcount()) != headerLength)
    {
        throw TensorIoError(path + ": truncated .npy header");
    }

    std::string descr;
    bool fortranOrder = false;
    FloatArray array;
    detail::HeaderParser(header, path).parse(descr, fortranOrder, array.shape);
    if (descr != "<f4")
    {
        char const* name = detail::dtypeName(descr);
        std::string const known = name ? std::string(" (") + name + ")" : "";
        throw TensorIoError(path + ": dtype '" + detail::printable(descr) + "'" + known
            + ", expected float32 ('<f4'): save array.astype(numpy.float32)");
    }
    if (fortranOrder)
    {
        throw TensorIoError(path + ": array is in Fortran order, expected C order: save numpy.ascontiguousarray(array)");
    }
    uint64_t count = 1;
    for (int64_t dim : array.shape)
    {
        if (dim != 0 && count > std::numeric_limits<uint64_t>::max() / 4 / static_cast<uint64_t>(dim))
        {
            throw TensorIoError(path + ": shape " + shapeString(array.shape) + " is too large");
        }
        count *= static_cast<uint64_t>(dim);
    }
    uint64_t const dataBytes = count * 4;
    uint64_t const present = fileSize - dataOffset;
    if (present != dataBytes)
    {
        throw TensorIoError(path + ": " + (present < dataBytes ? "truncated" : "has trailing bytes") + ": shape "
            + shapeString(array.shape) + " needs " + std::to_string(dataBytes) + " bytes of float32 data, the file has "
            + std::to_string(present));
    }
    if (count > std::numeric_limits<size_t>::max() / 4)
    {
        throw TensorIoError(path + ": shape " + shapeString(array.shape) + " does not fit in memory here");
    }
    array.data.resize(static_cast<size_t>(count));
    in.read(reinterpret_cast<char*>(array.data.data()), static_cast<std::streamsize>(dataBytes));
    if (static_cast<uint64_t>(in.gcount()) != dataBytes)
    {
        throw TensorIoError(path + ": read error after " + std::to_string(in.gcount()) + " of " + std::to_string(dataBytes)
            + " data bytes");
    }
    return array;
}

// The model's input: a batch of preprocessed RGB images, NCHW [N, 3, H, W], every value finite.
inline void checkImageBatch(FloatArray const& array, std::string const& path)
{
    auto const& s = array.shape;
    if (s.size() != 4 || s[1] != 3)
    {
        throw TensorIoError(path + ": shape " + shapeString(s) + ", expected [N,3,H,W] (a batch of preprocessed RGB "
            "images, NCHW; one image is [1,3,H,W])");
    }
    if (s[0] < 1 || s[2] < 1 || s[3] < 1)
    {
        throw TensorIoError(path + ": shape " + shapeString(s) + " is empty");
    }
    for (size_t i = 0; i < array.data.size(); ++i)
    {
        if (!std::isfinite(array.data[i]))
        {
            throw TensorIoError(path + ": value at flat index " + std::to_string(i) + " is not finite (NaN or inf)");
        }
    }
}

// One class name per line, in class-index order. A final newline and Windows line ends are
// accepted; an empty line in the middle would shift every later name, so it is refused.
inline std::vector<std::string> readLabels(std::string const& path)
{
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
    {
        throw TensorIoError(path + ": " + (std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
    }
    std::ifstream in(path);
    if (!in)
    {
        throw TensorIoError(path + ": cannot open for reading");
    }
    std::vector<std::string> labels;
    std::string line;
    while (std::getline(in, line))
    {
        if (!line.empty() && line.back() == '\r')
        {
            line.pop_back();
        }
        labels.push_back(line);
    }
    while (!labels.empty() && labels.back().empty())
    {
        labels.pop_back();
    }
    if (labels.empty())
    {
        throw TensorIoError(path + ": no labels (expected one class name per line)");
    }
    for (size_t i = 0; i < labels.size(); ++i)
    {
        if (labels[i].empty())
        {
            throw TensorIoError(path + ": line " + std::to_string(i + 1) + " is empty (one class name per line, "
                "in class-index order)");
        }
    }
    return labels;
}

// Softmax of one row of logits, in double (subtracting the maximum, so large logits do not overflow).
inline std::vector<double> softmax(float const* logits, size_t count)
{
    std::vector<double> probabilities(count);
    if (count == 0)
    {
        return probabilities;
    }
    double const maximum = *std::max_element(logits, logits + count);
    double sum = 0.0;
    for (size_t i = 0; i < count; ++i)
    {
        probabilities[i] = std::exp(static_cast<double>(logits[i]) - maximum);
        sum += probabilities[i];
    }
    for (double& p : probabilities)
    {
        p /= sum;
    }
    return probabilities;
}

// The k largest values with their indices, largest first; equal values in index order.
inline std::vector<std::pair<size_t, double>> topK(std::vector<double> const& values, size_t k)
{
    std::vector<size_t> order(values.size());
    for (size_t i = 0; i < order.size(); ++i)
    {
        order[i] = i;
    }
    k = std::min(k, order.size());
    std::partial_sort(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(k), order.end(),
        [&values](size_t a, size_t b) { return values[a] > values[b] || (values[a] == values[b] && a < b); });
    std::vector<std::pair<size_t, double>> result;
    for (size_t i = 0; i < k; ++i)
    {
        result.emplace_back(order[i], values[order[i]]);
    }
    return result;
}

// Per row of a [rows, classes] logits matrix: the top-k classes by softmax probability. Refuses a
// row with a non-finite logit (a broken engine or input) instead of printing meaningless classes.
inline std::vector<std::vector<std::pair<size_t, double>>> classify(
    float const* logits, size_t rows, size_t classes, size_t k)
{
    std::vector<std::vector<std::pair<size_t, double>>> result;
    for (size_t r = 0; r < rows; ++r)
    {
        float const* row = logits + r * classes;
        for (size_t c = 0; c < classes; ++c)
        {
            if (!std::isfinite(row[c]))
            {
                throw TensorIoError("output row " + std::to_string(r) + " has a non-finite logit at class "
                    + std::to_string(c));
            }
        }
        result.push_back(topK(softmax(row, classes), k));
    }
    return result;
}

} // namespace example
} // namespace transnext
