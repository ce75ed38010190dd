// GGUF v2/v3 reader over the file's bytes: a read-only memory map of the file, or a private copy
// read into memory at open.
//
// Every count, length, offset and size read from the file is checked against the bytes that are
// actually there before it is used or allocated, so a truncated or corrupt file is a bitnet::Error
// naming the problem, never a crash. Tensor data stays where the bytes are: GGUFTensor::data points
// into the map or the copy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace bitnet {

enum class GGUFValueType : uint32_t {
    UINT8 = 0, INT8 = 1, UINT16 = 2, INT16 = 3, UINT32 = 4, INT32 = 5, FLOAT32 = 6,
    BOOL = 7, STRING = 8, ARRAY = 9, UINT64 = 10, INT64 = 11, FLOAT64 = 12,
};

// One metadata value. Scalars are widened into i64/u64/f64; arrays of scalars are kept as
// widened vectors, arrays of strings as strings. Nested arrays are rejected at load.
struct GGUFValue {
    GGUFValueType type = GGUFValueType::UINT8;
    GGUFValueType elem_type = GGUFValueType::UINT8;  // for ARRAY
    int64_t i = 0;       // every integer type and BOOL
    uint64_t u = 0;      // same value, unsigned view (for UINT64 beyond int64 range)
    double f = 0.0;      // FLOAT32 / FLOAT64
    std::string s;       // STRING
    std::vector<int64_t> arr_i;      // ARRAY of integers / bools
    std::vector<double> arr_f;       // ARRAY of floats
    std::vector<std::string> arr_s;  // ARRAY of strings
    size_t arr_len = 0;
};

struct GGUFKV {
    std::string key;
    GGUFValue value;
};

struct GGUFTensor {
    std::string name;
    uint32_t n_dims = 0;
    int64_t ne[4] = {1, 1, 1, 1};  // ne[0] is the contiguous (row) dimension, as in ggml
    uint32_t type = 0;             // ggml type id (0 F32, 1 F16, 8 Q8_0, 36 I2_S, ...)
    uint64_t offset = 0;           // relative to the start of the data section
    const uint8_t* data = nullptr; // into the mapping, or a copy (see GGUFFile::realign)
    size_t nbytes = 0;             // size in the file, from the type table
    int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class GGUFFile {
public:
    // Opens and validates `path`. Throws bitnet::Error with a one-line message on any problem:
    // missing file, wrong magic, unsupported version, truncation, a string or array longer than
    // the file, an unknown tensor type, tensor data past the end of the file, a key or tensor
    // name that appears twice, two tensors whose data ranges overlap.
    // use_mmap: map the file (a fast start; pages are read when first touched and shared with the
    // page cache, but the file must not change while it is open: a truncated file kills the
    // process with SIGBUS at the next touch of a page past its new end, rewritten bytes show
    // through). Otherwise the whole file is read into private page-aligned memory at open, so
    // tensors have the same alignment as in the map, and the file may then change or go away. A
    // file that shrinks while it is read is an error.
    static std::unique_ptr<GGUFFile> open(const std::string& path, bool use_mmap = true);
    ~GGUFFile();
    GGUFFile(const GGUFFile&) = delete;
    GGUFFile& operator=(const GGUFFile&) = delete;

    const std::string& path() const { return path_; }
    uint32_t version() const { return version_; }
    size_t alignment() const { return alignment_; }
    size_t file_size() const { return size_; }

    const std::vector<GGUFKV>& kvs() const { return kvs_; }
    const std::vector<GGUFTensor>& tensors() const { return tensors_; }

    // nullptr when absent. Hash lookups (O(1)), so binding a model's tensors is linear in their
    // number whatever the file declares.
    const GGUFValue* find(const std::string& key) const;
    const GGUFTensor* find_tensor(const std::string& name) const;

    // Typed getters: `required` ones throw a bitnet::Error naming the key and the file when the
    // key is missing or has an incompatible type; the others return `def`.
    std::string get_str(const std::string& key) const;
    std::string get_str(const std::string& key, const std::string& def) const;
    int64_t get_int(const std::string& key) const;
    int64_t get_int(const std::string& key, int64_t def) const;
    double get_float(const std::string& key) const;  // accepts integer values too
    double get_float(const std::string& key, double def) const;
    bool get_bool(const std::string& key, bool def) const;
    const std::vector<std::string>& get_str_array(const std::string& key) const;  // required
    // Integer or float array as int64 / double; empty vector when absent.
    std::vector<int64_t> get_int_array(const std::string& key) const;
    std::vector<double> get_float_array(const std::string& key) const;

private:
    GGUFFile() = default;
    void parse();
    void check_no_overlap() const;
    void realign();
    void read_all();

    std::string path_;
    int fd_ = -1;
    const uint8_t* base_ = nullptr;
    size_t size_ = 0;
    uint32_t version_ = 0;
    size_t alignment_ = 32;
    std::vector<GGUFKV> kvs_;
    std::vector<GGUFTensor> tensors_;
    std::unordered_map<std::string, size_t> kv_index_;      // key -> index in kvs_
    std::unordered_map<std::string, size_t> tensor_index_;  // name -> index in tensors_
    std::vector<std::vector<uint64_t>> realigned_;          // copies of misaligned tensors
};

}  // namespace bitnet
