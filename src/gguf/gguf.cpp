// GGUF v2/v3 reader: maps the file read-only (or reads it into memory), parses and validates the
// header, the metadata and the tensor table, and leaves tensor data where the bytes are.
//
// File layout (little-endian): "GGUF", u32 version, u64 n_tensors, u64 n_kv; n_kv entries of
// (string key, u32 value type, value); n_tensors infos of (string name, u32 n_dims, u64 ne[n_dims],
// u32 type, u64 offset); padding to general.alignment; the data section, where each tensor starts
// at data_start + offset. A string is a u64 length and that many bytes; an array is a u32 element
// type, a u64 count and the elements.
//
// Nothing in the file is trusted: every read is bounds-checked by Cursor, every count or length is
// compared with the bytes left before anything is allocated for it (a count of 2^60 in a 1 KB file
// fails at once instead of reserving memory), and every tensor's byte range is checked to lie
// inside the file and to overlap no other tensor's. All failures are one-line bitnet::Errors that
// start with the file's path.
#include "gguf/gguf.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <numeric>

#include "kernels/kernels.h"
#include "util/common.h"

namespace bitnet {

namespace {

constexpr size_t GGUF_DEFAULT_ALIGNMENT = 32;
constexpr uint32_t GGUF_MAX_DIMS = 4;

const char* value_type_name(GGUFValueType t) {
    switch (t) {
    case GGUFValueType::UINT8: return "UINT8";
    case GGUFValueType::INT8: return "INT8";
    case GGUFValueType::UINT16: return "UINT16";
    case GGUFValueType::INT16: return "INT16";
    case GGUFValueType::UINT32: return "UINT32";
    case GGUFValueType::INT32: return "INT32";
    case GGUFValueType::FLOAT32: return "FLOAT32";
    case GGUFValueType::BOOL: return "BOOL";
    case GGUFValueType::STRING: return "STRING";
    case GGUFValueType::ARRAY: return "ARRAY";
    case GGUFValueType::UINT64: return "UINT64";
    case GGUFValueType::INT64: return "INT64";
    case GGUFValueType::FLOAT64: return "FLOAT64";
    }
    return "?";
}

bool is_integer(GGUFValueType t) {
    switch (t) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::UINT16:
    case GGUFValueType::INT16: case GGUFValueType::UINT32: case GGUFValueType::INT32:
    case GGUFValueType::UINT64: case GGUFValueType::INT64:
        return true;
    default:
        return false;
    }
}

bool is_float(GGUFValueType t) {
    return t == GGUFValueType::FLOAT32 || t == GGUFValueType::FLOAT64;
}

// Bytes one element of a scalar type occupies in the file; 0 for STRING/ARRAY.
size_t scalar_size(GGUFValueType t) {
    switch (t) {
    case GGUFValueType::UINT8: case GGUFValueType::INT8: case GGUFValueType::BOOL: return 1;
    case GGUFValueType::UINT16: case GGUFValueType::INT16: return 2;
    case GGUFValueType::UINT32: case GGUFValueType::INT32: case GGUFValueType::FLOAT32: return 4;
    case GGUFValueType::UINT64: case GGUFValueType::INT64: case GGUFValueType::FLOAT64: return 8;
    default: return 0;
    }
}

// Bounds-checked little-endian reads over the mapped bytes. `ctx` names what is being read
// ("the value of key 'x'", "tensor info 3 ('blk.0.attn_q.weight')") for the error message.
class Cursor {
public:
    Cursor(const uint8_t* base, size_t size, const std::string& path)
        : base_(base), size_(size), path_(path) {}

    size_t pos() const { return pos_; }
    size_t left() const { return size_ - pos_; }
    std::string ctx;

    // Fails unless n more bytes are there.
    void need(uint64_t n) const {
        if (n > left())
            fail("%s: the file is truncated: %s needs %llu bytes at offset %zu but the file has "
                 "only %zu bytes — download or convert it again",
                 path_.c_str(), ctx.c_str(), (unsigned long long)n, pos_, size_);
    }

    template <typename T>
    T read() {
        need(sizeof(T));
        T v;
        std::memcpy(&v, base_ + pos_, sizeof(T));  // memcpy: the data is not aligned for T
        pos_ += sizeof(T);
        return v;
    }

    // A count of items that take at least `min_item` bytes each; rejected when even that many
    // minimal items could not fit in the bytes left, so the caller may then allocate for it.
    uint64_t read_count(size_t min_item, const char* what) {
        const uint64_t n = read<uint64_t>();
        if (n > left() / min_item)
            fail("%s: the %s of %s is %llu, more than the %zu bytes left in the file can hold: "
                 "the file is corrupt or truncated — download or convert it again",
                 path_.c_str(), what, ctx.c_str(), (unsigned long long)n, left());
        return n;
    }

    std::string read_str() {
        const uint64_t n = read_count(1, "string length");
        std::string s((const char*)base_ + pos_, (size_t)n);
        pos_ += (size_t)n;
        return s;
    }

private:
    const uint8_t* base_;
    size_t size_;
    const std::string& path_;
    size_t pos_ = 0;
};

int64_t read_int_scalar(Cursor& c, GGUFValueType t, uint64_t* as_unsigned) {
    int64_t v = 0;
    switch (t) {
    case GGUFValueType::UINT8: v = c.read<uint8_t>(); break;
    case GGUFValueType::INT8: v = c.read<int8_t>(); break;
    case GGUFValueType::UINT16: v = c.read<uint16_t>(); break;
    case GGUFValueType::INT16: v = c.read<int16_t>(); break;
    case GGUFValueType::UINT32: v = c.read<uint32_t>(); break;
    case GGUFValueType::INT32: v = c.read<int32_t>(); break;
    case GGUFValueType::INT64: v = c.read<int64_t>(); break;
    case GGUFValueType::BOOL: v = c.read<uint8_t>() != 0; break;
    case GGUFValueType::UINT64: {
        const uint64_t u = c.read<uint64_t>();
        *as_unsigned = u;
        return (int64_t)u;  // the caller decides whether values beyond INT64_MAX are acceptable
    }
    default: BITNET_ASSERT(false);
    }
    *as_unsigned = (uint64_t)v;
    return v;
}

double read_float_scalar(Cursor& c, GGUFValueType t) {
    if (t == GGUFValueType::FLOAT32) return c.read<float>();
    return c.read<double>();
}

bool is_known_type(uint32_t t) { return t <= (uint32_t)GGUFValueType::FLOAT64; }

void read_value(Cursor& c, GGUFValueType type, GGUFValue& v, const std::string& path) {
    v.type = type;
    if (is_integer(type) || type == GGUFValueType::BOOL) {
        v.i = read_int_scalar(c, type, &v.u);
    } else if (is_float(type)) {
        v.f = read_float_scalar(c, type);
    } else if (type == GGUFValueType::STRING) {
        v.s = c.read_str();
    } else {
        BITNET_ASSERT(type == GGUFValueType::ARRAY);
        const uint32_t et = c.read<uint32_t>();
        if (!is_known_type(et))
            fail("%s: %s is an array of unknown value type %u: the file is corrupt", path.c_str(),
                 c.ctx.c_str(), et);
        v.elem_type = (GGUFValueType)et;
        if (v.elem_type == GGUFValueType::ARRAY)
            fail("%s: %s is an array of arrays, which GGUF readers do not support", path.c_str(),
                 c.ctx.c_str());
        // a string element takes at least its 8-byte length
        const size_t min_item = v.elem_type == GGUFValueType::STRING ? 8 : scalar_size(v.elem_type);
        const uint64_t n = c.read_count(min_item, "array count");
        v.arr_len = (size_t)n;
        if (v.elem_type == GGUFValueType::STRING) {
            v.arr_s.reserve(v.arr_len);
            for (uint64_t j = 0; j < n; j++) v.arr_s.push_back(c.read_str());
        } else if (is_float(v.elem_type)) {
            v.arr_f.reserve(v.arr_len);
            for (uint64_t j = 0; j < n; j++) v.arr_f.push_back(read_float_scalar(c, v.elem_type));
        } else {
            v.arr_i.reserve(v.arr_len);
            for (uint64_t j = 0; j < n; j++) {
                uint64_t u;
                const int64_t x = read_int_scalar(c, v.elem_type, &u);
                if (v.elem_type == GGUFValueType::UINT64 && u > (uint64_t)INT64_MAX)
                    fail("%s: %s: element %llu is %llu, beyond the int64 range this reader keeps "
                         "arrays in",
                         path.c_str(), c.ctx.c_str(), (unsigned long long)j,
                         (unsigned long long)u);
                v.arr_i.push_back(x);
            }
        }
    }
}

}  // namespace

std::unique_ptr<GGUFFile> GGUFFile::open(const std::string& path, bool use_mmap) {
    std::unique_ptr<GGUFFile> f(new GGUFFile());
    f->path_ = path;
    f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f->fd_ < 0) fail("cannot open model file '%s': %s", path.c_str(), std::strerror(errno));
    struct stat st;
    if (fstat(f->fd_, &st) != 0)
        fail("cannot stat model file '%s': %s", path.c_str(), std::strerror(errno));
    if (S_ISDIR(st.st_mode))
        fail("'%s' is a directory, not a GGUF file: pass the path of the .gguf file inside it",
             path.c_str());
    if (!S_ISREG(st.st_mode)) fail("'%s' is not a regular file, so not a GGUF file", path.c_str());
    if (st.st_size == 0) fail("%s: the file is empty (0 bytes), not a GGUF file", path.c_str());
    f->size_ = (size_t)st.st_size;
    if (use_mmap) {
        void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, f->fd_, 0);
        if (p == MAP_FAILED)
            fail("cannot map model file '%s' (%zu bytes) into memory: %s", path.c_str(), f->size_,
                 std::strerror(errno));
        f->base_ = (const uint8_t*)p;
    } else {
        f->read_all();
    }
    f->parse();
    return f;
}

// Anonymous memory rather than malloc: it starts on a page boundary like the map (every tensor
// then has the alignment it would have there), and goes back to the system whole at close. Read
// in chunks because one read(2) moves at most about 2 GiB on Linux; the pages are made read-only
// afterwards, so a stray write faults as it would in the map.
void GGUFFile::read_all() {
    constexpr size_t kChunk = size_t(64) << 20;
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        fail("cannot allocate %zu bytes to read model file '%s' into: %s (--mmap maps the file "
             "instead)",
             size_, path_.c_str(), std::strerror(errno));
    base_ = (const uint8_t*)p;  // the destructor unmaps it if a read fails
    for (size_t done = 0; done < size_;) {
        const ssize_t r = pread(fd_, (uint8_t*)p + done, std::min(kChunk, size_ - done), (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            fail("cannot read model file '%s' at byte %zu: %s", path_.c_str(), done,
                 std::strerror(errno));
        if (r == 0)
            fail("%s: the file shrank from %zu to %zu bytes while it was being read: it is being "
                 "written; load it again once it is complete",
                 path_.c_str(), size_, done);
        done += (size_t)r;
    }
    mprotect(p, size_, PROT_READ);
    // The copy needs the file no more: closed, a file deleted or replaced on disk frees its space.
    ::close(fd_);
    fd_ = -1;
}

GGUFFile::~GGUFFile() {
    if (base_) munmap((void*)base_, size_);
    if (fd_ >= 0) ::close(fd_);
}

void GGUFFile::parse() {
    const char* path = path_.c_str();
    Cursor c(base_, size_, path_);

    // ---- header -------------------------------------------------------------------------------
    c.ctx = "the header";
    if (size_ < 4 || std::memcmp(base_, "GGUF", 4) != 0) {
        std::string head;
        for (size_t i = 0; i < 4 && i < size_; i++)
            head += strfmt("%s%02x", i ? " " : "", base_[i]);
        fail("%s: not a GGUF file: it starts with bytes [%s] instead of the magic 'GGUF' (convert "
             "the checkpoint with utils/convert_hf_to_gguf.py)",
             path, head.c_str());
    }
    c.read<uint32_t>();  // the magic, checked above
    version_ = c.read<uint32_t>();
    if (version_ == 1)
        fail("%s: GGUF version 1 is not supported (only versions 2 and 3): convert the model "
             "again with a current converter",
             path);
    if (version_ != 2 && version_ != 3) {
        // A big-endian GGUF has its version byte-swapped: 3 reads as 0x03000000.
        const bool swapped = (version_ & 0xffff) == 0 && (version_ >> 24) <= 3;
        fail("%s: unsupported GGUF version %u (this engine reads versions 2 and 3)%s", path,
             version_,
             swapped ? ": this looks like a big-endian GGUF, convert it little-endian" : "");
    }
    const uint64_t n_tensors = c.read<uint64_t>();
    // the smallest metadata entry: 8-byte key length, 4-byte type, 1-byte value
    const uint64_t n_kv = c.read_count(8 + 4 + 1, "metadata count");
    // the smallest tensor info: name length, n_dims, one dim, type, offset
    const size_t min_tensor_info = 8 + 4 + 8 + 4 + 8;
    if (n_tensors > c.left() / min_tensor_info)
        fail("%s: the header declares %llu tensors, more than the %zu bytes left in the file can "
             "describe: the file is corrupt or truncated — download or convert it again",
             path, (unsigned long long)n_tensors, c.left());

    // ---- metadata -----------------------------------------------------------------------------
    kvs_.reserve((size_t)n_kv);
    kv_index_.reserve((size_t)n_kv);
    for (uint64_t k = 0; k < n_kv; k++) {
        c.ctx = strfmt("the key of metadata entry %llu", (unsigned long long)k);
        GGUFKV kv;
        kv.key = c.read_str();
        c.ctx = strfmt("the value of key '%s'", kv.key.c_str());
        if (!kv_index_.emplace(kv.key, kvs_.size()).second)
            fail("%s: metadata key '%s' appears twice: the file is corrupt", path, kv.key.c_str());
        const uint32_t t = c.read<uint32_t>();
        if (!is_known_type(t))
            fail("%s: metadata key '%s' has unknown value type %u: the file is corrupt", path,
                 kv.key.c_str(), t);
        read_value(c, (GGUFValueType)t, kv.value, path_);
        kvs_.push_back(std::move(kv));
    }

    if (const GGUFValue* a = find("general.alignment")) {
        if (!is_integer(a->type) || a->i <= 0 || (a->u & (a->u - 1)) != 0)
            fail("%s: general.alignment must be a power of two, found %s %s", path,
                 value_type_name(a->type),
                 is_integer(a->type) ? std::to_string(a->i).c_str() : "value");
        alignment_ = (size_t)a->u;
    } else {
        alignment_ = GGUF_DEFAULT_ALIGNMENT;
    }

    // ---- tensor infos -------------------------------------------------------------------------
    tensors_.reserve((size_t)n_tensors);
    tensor_index_.reserve((size_t)n_tensors);
    for (uint64_t ti = 0; ti < n_tensors; ti++) {
        c.ctx = strfmt("the name of tensor info %llu", (unsigned long long)ti);
        GGUFTensor t;
        t.name = c.read_str();
        const std::string what = strfmt("%s: tensor '%s'", path, t.name.c_str());
        c.ctx = strfmt("the info of tensor '%s'", t.name.c_str());
        if (!tensor_index_.emplace(t.name, tensors_.size()).second)
            fail("%s appears twice in the tensor table: the file is corrupt", what.c_str());
        t.n_dims = c.read<uint32_t>();
        if (t.n_dims < 1 || t.n_dims > GGUF_MAX_DIMS)
            fail("%s has %u dimensions (1 to %u supported): the file is corrupt", what.c_str(),
                 t.n_dims, GGUF_MAX_DIMS);
        int64_t n = 1;
        for (uint32_t d = 0; d < t.n_dims; d++) {
            const uint64_t ne = c.read<uint64_t>();
            if (ne == 0 || ne > (uint64_t)INT64_MAX)
                fail("%s has dimension %u of size %llu: the file is corrupt", what.c_str(), d,
                     (unsigned long long)ne);
            if (__builtin_mul_overflow(n, (int64_t)ne, &n))
                fail("%s has more elements than fit in 64 bits: the file is corrupt", what.c_str());
            t.ne[d] = (int64_t)ne;
        }
        t.type = c.read<uint32_t>();
        t.offset = c.read<uint64_t>();
        t.nbytes = type_nbytes(t.type, t.ne[0], n, what);
        if (t.offset % alignment_ != 0)
            fail("%s has data offset %llu, not a multiple of the file's alignment %zu: the file "
                 "is corrupt",
                 what.c_str(), (unsigned long long)t.offset, alignment_);
        tensors_.push_back(std::move(t));
    }

    // ---- data section -------------------------------------------------------------------------
    // Starts at the header's end rounded up to the alignment; a tensor's data may only be used
    // once its whole byte range is known to lie inside the file.
    const size_t header_end = c.pos();
    const uint64_t data_start = ((uint64_t)header_end + alignment_ - 1) / alignment_ * alignment_;
    for (GGUFTensor& t : tensors_) {
        const uint64_t room = data_start < size_ ? size_ - data_start : 0;
        if (t.offset > room || (uint64_t)t.nbytes > room - t.offset) {
            // a corrupt offset near 2^64 must not wrap around into the file, nor the message
            uint64_t end;
            const bool wraps = __builtin_add_overflow(data_start, t.offset, &end) ||
                               __builtin_add_overflow(end, (uint64_t)t.nbytes, &end);
            const std::string at = wraps ? std::string("beyond 2^64")
                                         : strfmt("%llu", (unsigned long long)end);
            fail("%s: tensor '%s' data ends at byte %s but the file has only %zu bytes: the "
                 "file is truncated — download or convert it again",
                 path, t.name.c_str(), at.c_str(), size_);
        }
        const uint64_t begin = data_start + t.offset;  // checked above: begin + nbytes <= size_
        t.data = base_ + begin;
    }
    check_no_overlap();
    realign();
}

// The kernels read F32 data as float and the fp16 fields of F16, BF16 and the block types as
// uint16_t, which needs data at a multiple of 4 (2) bytes; I2_S and TL are read as bytes (their
// float trailer with memcpy). general.alignment may legally be 1, so a tensor can start at any
// byte: such a tensor is copied once into memory of its own (8-byte aligned) rather than every
// kernel and every reader of norm vectors and scales paying for unaligned loads. Files with the
// default alignment (32) never need a copy.
void GGUFFile::realign() {
    for (GGUFTensor& t : tensors_) {
        const bool bytes = t.type == TYPE_I2_S || t.type == TYPE_TL1 || t.type == TYPE_TL2;
        const uintptr_t need = t.type == TYPE_F32 ? 4 : bytes ? 1 : 2;
        if ((uintptr_t)t.data % need == 0) continue;
        realigned_.emplace_back((t.nbytes + 7) / 8);
        std::memcpy(realigned_.back().data(), t.data, t.nbytes);
        t.data = (const uint8_t*)realigned_.back().data();
    }
}

// Every tensor must own its bytes: a table whose entries alias one range would let a small file
// stand for a model many times its size (and no converter writes one). Sorted by offset, each
// range must start at or after the furthest end seen so far; O(n log n).
void GGUFFile::check_no_overlap() const {
    std::vector<size_t> order(tensors_.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
        return tensors_[a].offset < tensors_[b].offset ||
               (tensors_[a].offset == tensors_[b].offset && a < b);
    });
    size_t prev = 0;  // the tensor with the furthest end so far
    for (size_t j = 1; j < order.size(); ++j) {
        const GGUFTensor& p = tensors_[order[prev]];
        const GGUFTensor& t = tensors_[order[j]];
        const uint64_t p_end = p.offset + p.nbytes;  // both inside the file: no overflow
        if (t.offset < p_end)
            fail("%s: tensors '%s' (data bytes %llu..%llu) and '%s' (bytes %llu..%llu) overlap: "
                 "each tensor needs its own data; the file is corrupt",
                 path_.c_str(), p.name.c_str(), (unsigned long long)p.offset,
                 (unsigned long long)p_end, t.name.c_str(), (unsigned long long)t.offset,
                 (unsigned long long)(t.offset + t.nbytes));
        if (t.offset + t.nbytes > p_end) prev = j;
    }
}

// ---- lookups and typed getters ------------------------------------------------------------------

const GGUFValue* GGUFFile::find(const std::string& key) const {
    const auto it = kv_index_.find(key);
    return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const GGUFTensor* GGUFFile::find_tensor(const std::string& name) const {
    const auto it = tensor_index_.find(name);
    return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {

const GGUFValue& require(const GGUFFile& f, const std::string& key, const char* expected) {
    const GGUFValue* v = f.find(key);
    if (!v)
        fail("%s: metadata key '%s' (%s) is missing: the file was written by an incomplete "
             "converter, convert the model again",
             f.path().c_str(), key.c_str(), expected);
    return *v;
}

[[noreturn]] void wrong_type(const GGUFFile& f, const std::string& key, const GGUFValue& v,
                             const char* expected) {
    std::string found = value_type_name(v.type);
    if (v.type == GGUFValueType::ARRAY) found += strfmt(" of %s", value_type_name(v.elem_type));
    fail("%s: metadata key '%s' is %s, expected %s", f.path().c_str(), key.c_str(), found.c_str(),
         expected);
}

std::string as_str(const GGUFFile& f, const std::string& key, const GGUFValue& v) {
    if (v.type != GGUFValueType::STRING) wrong_type(f, key, v, "a string");
    return v.s;
}

int64_t as_int(const GGUFFile& f, const std::string& key, const GGUFValue& v) {
    if (!is_integer(v.type)) wrong_type(f, key, v, "an integer");
    if (v.type == GGUFValueType::UINT64 && v.u > (uint64_t)INT64_MAX)
        fail("%s: metadata key '%s' is %llu, beyond the int64 range", f.path().c_str(),
             key.c_str(), (unsigned long long)v.u);
    return v.i;
}

double as_float(const GGUFFile& f, const std::string& key, const GGUFValue& v) {
    if (is_float(v.type)) return v.f;
    if (v.type == GGUFValueType::UINT64) return (double)v.u;
    if (is_integer(v.type)) return (double)v.i;
    wrong_type(f, key, v, "a number");
}

}  // namespace

// The optional getters return `def` only when the key is absent: a key that is present with the
// wrong type is a broken file and fails like the required getters.

std::string GGUFFile::get_str(const std::string& key) const {
    return as_str(*this, key, require(*this, key, "a string"));
}

std::string GGUFFile::get_str(const std::string& key, const std::string& def) const {
    const GGUFValue* v = find(key);
    return v ? as_str(*this, key, *v) : def;
}

int64_t GGUFFile::get_int(const std::string& key) const {
    return as_int(*this, key, require(*this, key, "an integer"));
}

int64_t GGUFFile::get_int(const std::string& key, int64_t def) const {
    const GGUFValue* v = find(key);
    return v ? as_int(*this, key, *v) : def;
}

double GGUFFile::get_float(const std::string& key) const {
    return as_float(*this, key, require(*this, key, "a number"));
}

double GGUFFile::get_float(const std::string& key, double def) const {
    const GGUFValue* v = find(key);
    return v ? as_float(*this, key, *v) : def;
}

bool GGUFFile::get_bool(const std::string& key, bool def) const {
    const GGUFValue* v = find(key);
    if (!v) return def;
    if (v->type != GGUFValueType::BOOL) wrong_type(*this, key, *v, "a bool");
    return v->i != 0;
}

const std::vector<std::string>& GGUFFile::get_str_array(const std::string& key) const {
    const GGUFValue& v = require(*this, key, "an array of strings");
    if (v.type != GGUFValueType::ARRAY || v.elem_type != GGUFValueType::STRING)
        wrong_type(*this, key, v, "an array of strings");
    return v.arr_s;
}

std::vector<int64_t> GGUFFile::get_int_array(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return {};
    if (v->type != GGUFValueType::ARRAY ||
        !(is_integer(v->elem_type) || v->elem_type == GGUFValueType::BOOL))
        wrong_type(*this, key, *v, "an array of integers");
    return v->arr_i;
}

std::vector<double> GGUFFile::get_float_array(const std::string& key) const {
    const GGUFValue* v = find(key);
    if (!v) return {};
    if (v->type != GGUFValueType::ARRAY) wrong_type(*this, key, *v, "an array of numbers");
    if (is_float(v->elem_type)) return v->arr_f;
    if (is_integer(v->elem_type)) return std::vector<double>(v->arr_i.begin(), v->arr_i.end());
    wrong_type(*this, key, *v, "an array of numbers");
}

}  // namespace bitnet
