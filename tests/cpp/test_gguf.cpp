// Tests of the GGUF reader and the tensor type table, driven by tests/test_gguf_reader.py.
//
//   test_gguf                 self-test of the type table and the fp16 conversions; prints "ok"
//   test_gguf dump FILE       opens FILE and prints its metadata and tensor table as JSON lines,
//                             which the Python side compares with what gguf_craft.py wrote; on a
//                             bitnet::Error prints "error: <message>" on stderr and exits 1
//   test_gguf fp16 IN OUT_H OUT_F
//                             IN holds float32 bit patterns; writes fp32_to_fp16 of each to OUT_H
//                             and fp16_to_fp32 of all 65536 halves to OUT_F, for a bit-exact
//                             comparison with numpy
//
// The Python driver also runs this binary built with AddressSanitizer on every handcrafted
// corrupt file, so "never a crash" is checked on the reader itself, independent of the engine.
#include <cinttypes>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

#include "gguf/gguf.h"
#include "kernels/kernels.h"
#include "util/common.h"

using namespace bitnet;

namespace {

int g_failures = 0;

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            std::fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            g_failures++;                                                            \
        }                                                                            \
    } while (0)

// Runs f and checks that it throws a bitnet::Error whose message contains `needle`.
template <typename F>
void check_throws(F f, const char* needle, int line) {
    try {
        f();
        std::fprintf(stderr, "%s:%d: expected an error containing '%s', got none\n", __FILE__, line,
                     needle);
        g_failures++;
    } catch (const Error& e) {
        if (!std::strstr(e.what(), needle)) {
            std::fprintf(stderr, "%s:%d: expected an error containing '%s', got '%s'\n", __FILE__,
                         line, needle, e.what());
            g_failures++;
        }
    }
}
#define CHECK_THROWS(expr, needle) check_throws([&] { (void)(expr); }, needle, __LINE__)

std::string json_str(const std::string& s) {
    std::string o = "\"";
    for (unsigned char ch : s) {
        if (ch == '"' || ch == '\\') {
            o += '\\';
            o += (char)ch;
        } else if (ch < 0x20) {
            o += strfmt("\\u%04x", ch);
        } else {
            o += (char)ch;  // UTF-8 passes through
        }
    }
    return o + "\"";
}

// Floats as strings in %.17g so the comparison is exact and inf/nan survive JSON.
std::string json_f(double f) { return "\"" + strfmt("%.17g", f) + "\""; }

std::string value_json(const GGUFValue& v) {
    switch (v.type) {
    case GGUFValueType::STRING: return json_str(v.s);
    case GGUFValueType::FLOAT32: case GGUFValueType::FLOAT64: return json_f(v.f);
    case GGUFValueType::BOOL: return v.i ? "true" : "false";
    case GGUFValueType::UINT64: return strfmt("%" PRIu64, v.u);
    case GGUFValueType::ARRAY: {
        std::string o = "[";
        for (size_t j = 0; j < v.arr_len; j++) {
            if (j) o += ",";
            if (v.elem_type == GGUFValueType::STRING) o += json_str(v.arr_s[j]);
            else if (v.elem_type == GGUFValueType::FLOAT32 || v.elem_type == GGUFValueType::FLOAT64)
                o += json_f(v.arr_f[j]);
            else if (v.elem_type == GGUFValueType::BOOL) o += v.arr_i[j] ? "true" : "false";
            else o += strfmt("%" PRId64, v.arr_i[j]);
        }
        return o + "]";
    }
    default: return strfmt("%" PRId64, v.i);
    }
}

// FNV-1a over the tensor's bytes: checks that data and nbytes point at what was written.
uint64_t fnv1a(const uint8_t* p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

int dump(const char* path) {
    try {
        auto f = GGUFFile::open(path);
        std::printf("{\"version\":%u,\"alignment\":%zu,\"n_kv\":%zu,\"n_tensors\":%zu}\n",
                    f->version(), f->alignment(), f->kvs().size(), f->tensors().size());
        for (const GGUFKV& kv : f->kvs()) {
            std::printf("{\"key\":%s,\"type\":%u,", json_str(kv.key).c_str(),
                        (unsigned)kv.value.type);
            if (kv.value.type == GGUFValueType::ARRAY)
                std::printf("\"elem\":%u,", (unsigned)kv.value.elem_type);
            std::printf("\"value\":%s}\n", value_json(kv.value).c_str());
        }
        for (const GGUFTensor& t : f->tensors()) {
            std::printf("{\"tensor\":%s,\"type\":%u,\"ne\":[", json_str(t.name).c_str(), t.type);
            for (uint32_t d = 0; d < t.n_dims; d++)
                std::printf(d ? ",%" PRId64 : "%" PRId64, t.ne[d]);
            std::printf("],\"offset\":%" PRIu64 ",\"nbytes\":%zu,\"fnv\":\"%016" PRIx64 "\"",
                        t.offset, t.nbytes, fnv1a(t.data, t.nbytes));
            if ((t.type == TYPE_F32 || t.type == TYPE_F16 || t.type == TYPE_BF16) &&
                t.ne[0] <= 4096) {
                // the last row through dequantize_row: checks the row addressing too
                const int64_t rows = t.n_elements() / t.ne[0];
                std::vector<float> row((size_t)t.ne[0]);
                dequantize_row(t.type, t.data, t.ne[0], rows - 1, row.data());
                std::printf(",\"last_row\":[");
                for (size_t i = 0; i < row.size(); i++)
                    std::printf("%s%s", i ? "," : "", json_f(row[i]).c_str());
                std::printf("]");
            }
            std::printf("}\n");
        }
        return 0;
    } catch (const Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

std::vector<uint8_t> read_all(const char* path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

int fp16(const char* in_path, const char* out_h, const char* out_f) {
    const std::vector<uint8_t> in = read_all(in_path);
    std::vector<uint16_t> h(in.size() / 4);
    for (size_t i = 0; i < h.size(); i++) {
        float f;
        std::memcpy(&f, in.data() + 4 * i, 4);
        h[i] = fp32_to_fp16(f);
    }
    std::vector<float> f(65536);
    for (uint32_t i = 0; i < 65536; i++) f[i] = fp16_to_fp32((uint16_t)i);
    std::ofstream(out_h, std::ios::binary).write((const char*)h.data(), h.size() * 2);
    std::ofstream(out_f, std::ios::binary).write((const char*)f.data(), f.size() * 4);
    return 0;
}

// A little-endian GGUF byte builder, just enough for the getter checks below (the file-format
// tests proper use gguf_craft.py).
struct Bytes {
    std::string b;
    template <typename T>
    Bytes& put(T v) {
        b.append((const char*)&v, sizeof v);
        return *this;
    }
    Bytes& str(const std::string& s) {
        put<uint64_t>(s.size());
        b += s;
        return *this;
    }
    Bytes& key(const std::string& k, GGUFValueType t) {
        str(k);
        return put<uint32_t>((uint32_t)t);
    }
};

void check_getters() {
    using T = GGUFValueType;
    Bytes kv;
    kv.key("u32", T::UINT32).put<uint32_t>(4000000000u);
    kv.key("i8", T::INT8).put<int8_t>(-5);
    kv.key("u64.big", T::UINT64).put<uint64_t>(UINT64_MAX);
    kv.key("f32", T::FLOAT32).put<float>(0.25f);
    kv.key("flag", T::BOOL).put<uint8_t>(1);
    kv.key("name", T::STRING).str("tiny");
    kv.key("toks", T::ARRAY).put<uint32_t>((uint32_t)T::STRING).put<uint64_t>(2).str("a").str("b");
    kv.key("ints", T::ARRAY).put<uint32_t>((uint32_t)T::INT16).put<uint64_t>(2);
    kv.put<int16_t>(-1).put<int16_t>(7);
    kv.key("floats", T::ARRAY).put<uint32_t>((uint32_t)T::FLOAT64).put<uint64_t>(1);
    kv.put<double>(1.5);
    Bytes file;
    file.put<uint32_t>(0x46554747).put<uint32_t>(3).put<uint64_t>(0).put<uint64_t>(9);
    file.b += kv.b;
    const char* tmp = std::getenv("TMPDIR");
    // the pid keeps concurrent runs apart
    const std::string path = strfmt("%s/test_gguf_getters.%d.gguf", tmp && *tmp ? tmp : "/tmp",
                                    (int)getpid());
    std::ofstream(path, std::ios::binary).write(file.b.data(), (std::streamsize)file.b.size());

    auto f = GGUFFile::open(path);
    std::remove(path.c_str());  // the mapping stays valid
    CHECK(f->version() == 3 && f->alignment() == 32 && f->kvs().size() == 9);
    CHECK(f->get_int("u32") == 4000000000LL);
    CHECK(f->get_int("i8") == -5);
    CHECK(f->get_int("absent", 42) == 42);
    CHECK(f->get_float("f32") == 0.25);
    CHECK(f->get_float("u32") == 4e9);  // integers are accepted as floats
    CHECK(f->get_float("absent", 2.5) == 2.5);
    CHECK(f->get_bool("flag", false) == true);
    CHECK(f->get_bool("absent", true) == true);
    CHECK(f->get_str("name") == "tiny");
    CHECK(f->get_str("absent", "def") == "def");
    CHECK(f->get_str_array("toks") == std::vector<std::string>({"a", "b"}));
    CHECK(f->get_int_array("ints") == std::vector<int64_t>({-1, 7}));
    CHECK(f->get_int_array("absent").empty());
    CHECK(f->get_float_array("floats") == std::vector<double>({1.5}));
    CHECK(f->get_float_array("ints") == std::vector<double>({-1.0, 7.0}));
    CHECK(f->find("name") && f->find("name")->type == T::STRING);
    CHECK(f->find("absent") == nullptr && f->find_tensor("absent") == nullptr);
    // errors name the key and the file; a present key of the wrong type is an error even for
    // the getters that have a default
    CHECK_THROWS(f->get_int("absent"), ".gguf: metadata key 'absent'");
    CHECK_THROWS(f->get_str("u32"), "metadata key 'u32' is UINT32, expected a string");
    CHECK_THROWS(f->get_int("f32", 1), "metadata key 'f32' is FLOAT32, expected an integer");
    CHECK_THROWS(f->get_int("u64.big"), "beyond the int64 range");
    CHECK_THROWS(f->get_bool("u32", false), "expected a bool");
    CHECK_THROWS(f->get_str_array("ints"), "is ARRAY of INT16, expected an array of strings");
    CHECK_THROWS(f->get_int_array("floats"), "expected an array of integers");
    CHECK_THROWS(f->get_float_array("toks"), "expected an array of numbers");
    CHECK_THROWS(f->get_float("name"), "expected a number");
}

int selftest() {
    check_getters();

    // The table: ids, names and sizes as llama.cpp / bitnet.cpp write them.
    CHECK(type_traits(TYPE_I2_S) && type_traits(TYPE_I2_S)->block_size == 128);
    CHECK(type_traits(37) == nullptr);  // I8_S: activations only, never in files
    CHECK(type_name(TYPE_TQ2_0) == "TQ2_0");
    CHECK(type_name(77) == "type 77");
    CHECK(type_nbytes(TYPE_F32, 3, 6, "t") == 24);
    CHECK(type_nbytes(TYPE_BF16, 5, 5, "t") == 10);
    CHECK(type_nbytes(TYPE_Q8_0, 64, 128, "t") == 4 * 34);
    CHECK(type_nbytes(TYPE_Q4_0, 32, 32, "t") == 18);
    CHECK(type_nbytes(TYPE_Q6_K, 256, 512, "t") == 2 * 210);
    CHECK(type_nbytes(TYPE_TQ1_0, 256, 256, "t") == 54);
    CHECK(type_nbytes(TYPE_TQ2_0, 512, 1024, "t") == 4 * 66);
    CHECK(type_nbytes(TYPE_I2_S, 2560, 2560 * 6912, "t") == 2560 * 6912 / 4 + 32);
    // I2_S rows of any length are padded to whole 128-value blocks.
    CHECK(type_nbytes(TYPE_I2_S, 8640, 8640 * 2, "t") == 2 * (8704 / 4) + 32);
    CHECK_THROWS(type_nbytes(TYPE_TQ2_0, 8640, 8640 * 2, "tensor 'blk.0.ffn_down.weight'"),
                 "tensor 'blk.0.ffn_down.weight': row length 8640 is not a multiple of 256, "
                 "which TQ2_0 requires");
    CHECK_THROWS(type_nbytes(77, 4, 4, "tensor 'x'"),
                 "tensor 'x' has unknown type id 77 (this build knows: F32, F16");
    CHECK_THROWS(type_nbytes(TYPE_F32, INT64_MAX, INT64_MAX, "t"), "do not fit");

    // fp16 corner cases (numpy compares the whole range from the Python side).
    CHECK(fp32_to_fp16(65504.0f) == 0x7bff);
    CHECK(fp32_to_fp16(65519.996f) == 0x7bff);
    CHECK(fp32_to_fp16(65520.0f) == 0x7c00);
    CHECK(fp32_to_fp16(-INFINITY) == 0xfc00);
    CHECK((fp32_to_fp16(NAN) & 0x7fff) > 0x7c00);
    CHECK(fp32_to_fp16(0x1p-24f) == 0x0001);
    CHECK(fp32_to_fp16(0x1p-25f) == 0x0000);            // tie, to even
    CHECK(fp32_to_fp16(0x1.8p-24f) == 0x0002);          // tie, to even
    CHECK(fp32_to_fp16(-0.0f) == 0x8000);
    CHECK(fp32_to_fp16(1.0f + 0x1p-11f) == 0x3c00);     // tie, to even
    CHECK(fp32_to_fp16(1.0f + 0x1.8p-11f) == 0x3c01);     // 0.75 ulp, up
    CHECK(fp32_to_fp16(1.0f + 0x1.8p-10f) == 0x3c02);     // tie at 1.5 ulp, to even
    CHECK(fp16_to_fp32(0x0001) == 0x1p-24f);
    CHECK(fp16_to_fp32(0x3c00) == 1.0f);
    CHECK(std::isnan(fp16_to_fp32(0x7e00)));
    // Every non-NaN half survives the round trip.
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = fp16_to_fp32((uint16_t)h);
        if (!std::isnan(f) && fp32_to_fp16(f) != h) bad++;
    }
    CHECK(bad == 0);

    // dequantize_row on the float types, and its refusal of the others.
    const uint16_t f16[4] = {0x3c00, 0xc000, 0x3800, 0x0001};
    const uint16_t bf16[2] = {0x3f80, 0xc040};
    float out[2];
    dequantize_row(TYPE_F16, f16, 2, 1, out);
    CHECK(out[0] == 0.5f && out[1] == 0x1p-24f);
    dequantize_row(TYPE_BF16, bf16, 2, 0, out);
    CHECK(out[0] == 1.0f && out[1] == -3.0f);
    CHECK_THROWS(dequantize_row(TYPE_I2_S, f16, 128, 0, out), "I2_S");

    CHECK_THROWS(GGUFFile::open("/nonexistent/model.gguf"),
                 "cannot open model file '/nonexistent/model.gguf'");
    CHECK_THROWS(GGUFFile::open("/"), "is a directory");

    if (g_failures) {
        std::fprintf(stderr, "%d check(s) failed\n", g_failures);
        return 1;
    }
    std::printf("ok\n");
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 1) {
        try {
            return selftest();
        } catch (const Error& e) {
            std::fprintf(stderr, "unexpected error: %s\n", e.what());
            return 1;
        }
    }
    const std::string cmd = argv[1];
    if (cmd == "dump" && argc == 3) return dump(argv[2]);
    if (cmd == "fp16" && argc == 5) return fp16(argv[2], argv[3], argv[4]);
    std::fprintf(stderr, "usage: %s [dump FILE | fp16 IN OUT_H OUT_F]\n", argv[0]);
    return 2;
}
