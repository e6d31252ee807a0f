#include "models/torch_pickle.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/torch.h>

#include <cstring>
#include <map>
#include <memory>
#include <sstream>

namespace holo::models {
namespace {

/// A pickled object as far as this reader needs one.
struct Value {
  enum Kind { kNone, kBool, kInt, kFloat, kString, kTuple, kList, kDict, kGlobal, kStorage, kTensor };
  Kind kind = kNone;
  bool ordered = false;  ///< kDict: a collections.OrderedDict
  int64_t i = 0;         ///< kInt, kBool
  double f = 0;          ///< kFloat
  std::string s;         ///< kString; kGlobal: "module name"; kStorage: record key
  std::vector<std::shared_ptr<Value>> items;                                         ///< kTuple, kList
  std::vector<std::pair<std::shared_ptr<Value>, std::shared_ptr<Value>>> entries;  ///< kDict
  torch::Tensor tensor;  ///< kStorage (1-D, the whole storage), kTensor
};
using ValuePtr = std::shared_ptr<Value>;

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Value::kNone: return "None";
    case Value::kBool: return "bool";
    case Value::kInt: return "int";
    case Value::kFloat: return "float";
    case Value::kString: return "str";
    case Value::kTuple: return "tuple";
    case Value::kList: return "list";
    case Value::kDict: return "dict";
    case Value::kGlobal: return "global";
    case Value::kStorage: return "storage";
    case Value::kTensor: return "tensor";
  }
  return "?";
}

ValuePtr make(Value::Kind k) {
  auto v = std::make_shared<Value>();
  v->kind = k;
  return v;
}

/// The storage classes torch.save names, and their dtypes.
const std::map<std::string, torch::ScalarType>& storage_types() {
  static const std::map<std::string, torch::ScalarType> types = {
      {"torch FloatStorage", torch::kFloat},     {"torch DoubleStorage", torch::kDouble},
      {"torch HalfStorage", torch::kHalf},       {"torch BFloat16Storage", torch::kBFloat16},
      {"torch LongStorage", torch::kLong},       {"torch IntStorage", torch::kInt},
      {"torch ShortStorage", torch::kShort},     {"torch CharStorage", torch::kChar},
      {"torch ByteStorage", torch::kByte},       {"torch BoolStorage", torch::kBool}};
  return types;
}

constexpr const char* kOrderedDict = "collections OrderedDict";
constexpr const char* kRebuildTensor = "torch._utils _rebuild_tensor_v2";

class Unpickler {
 public:
  Unpickler(std::string path, caffe2::serialize::PyTorchStreamReader& reader, const char* data, size_t size)
      : path_(std::move(path)), reader_(reader), data_(data), size_(size) {}

  ValuePtr run() {
    while (true) {
      const size_t at = pos_;
      const auto op = static_cast<unsigned char>(byte());
      switch (op) {
        case 0x80: {  // PROTO
          const int protocol = static_cast<unsigned char>(byte());
          if (protocol != 2) {
            throw UnsupportedPickleError(path_ + ": pickle protocol " + std::to_string(protocol) +
                                         " (only protocol 2, torch.save's default, is read)");
          }
          break;
        }
        case '.':  // STOP
          if (stack_.size() != 1) fail(at, "STOP with " + std::to_string(stack_.size()) + " objects on the stack");
          return stack_.back();
        case '(': marks_.push_back(stack_.size()); break;  // MARK
        case '}': stack_.push_back(make(Value::kDict)); break;   // EMPTY_DICT
        case ']': stack_.push_back(make(Value::kList)); break;   // EMPTY_LIST
        case ')': stack_.push_back(make(Value::kTuple)); break;  // EMPTY_TUPLE
        case 't': {  // TUPLE
          auto t = make(Value::kTuple);
          t->items = pop_to_mark(at);
          stack_.push_back(t);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1, TUPLE2, TUPLE3
          const size_t n = op - 0x84;
          if (stack_.size() < n) fail(at, "TUPLE" + std::to_string(n) + " on a short stack");
          auto t = make(Value::kTuple);
          t->items.assign(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
          stack_.resize(stack_.size() - n);
          stack_.push_back(t);
          break;
        }
        case 's': {  // SETITEM
          auto value = pop(at), key = pop(at);
          dict_below(at)->entries.emplace_back(key, value);
          break;
        }
        case 'u': {  // SETITEMS
          auto items = pop_to_mark(at);
          if (items.size() % 2 != 0) fail(at, "SETITEMS with an odd number of objects");
          auto d = dict_below(at);
          for (size_t k = 0; k < items.size(); k += 2) d->entries.emplace_back(items[k], items[k + 1]);
          break;
        }
        case 'a': {  // APPEND
          auto value = pop(at);
          list_below(at)->items.push_back(value);
          break;
        }
        case 'e': {  // APPENDS
          auto items = pop_to_mark(at);
          auto l = list_below(at);
          l->items.insert(l->items.end(), items.begin(), items.end());
          break;
        }
        case 'K': push_int(static_cast<unsigned char>(byte())); break;  // BININT1
        case 'M': push_int(static_cast<int64_t>(little_endian(2))); break;  // BININT2
        case 'J': push_int(static_cast<int32_t>(little_endian(4))); break;  // BININT
        case 0x8a: {  // LONG1
          const size_t n = static_cast<unsigned char>(byte());
          if (n > 8) fail(at, "LONG1 of " + std::to_string(n) + " bytes (more than 64 bits)");
          uint64_t u = n == 0 ? 0 : little_endian(n);
          if (n > 0 && n < 8 && (u >> (8 * n - 1)) & 1) u |= ~uint64_t{0} << (8 * n);  // sign-extend
          push_int(static_cast<int64_t>(u));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = (u << 8) | static_cast<unsigned char>(byte());
          auto v = make(Value::kFloat);
          std::memcpy(&v->f, &u, sizeof u);
          stack_.push_back(v);
          break;
        }
        case 'X': {  // BINUNICODE
          const size_t n = little_endian(4);
          auto v = make(Value::kString);
          v->s = bytes(n);
          stack_.push_back(v);
          break;
        }
        case 'N': stack_.push_back(make(Value::kNone)); break;  // NONE
        case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
          auto v = make(Value::kBool);
          v->i = op == 0x88;
          stack_.push_back(v);
          break;
        }
        case 'c': {  // GLOBAL
          const std::string module = line(), name = line();
          const std::string global = module + " " + name;
          if (global != kOrderedDict && global != kRebuildTensor && storage_types().count(global) == 0) {
            throw UnsupportedPickleError(path_ + ": pickle global '" + module + "." + name + "' at byte " +
                                         std::to_string(at) + " is not part of a state dict");
          }
          auto v = make(Value::kGlobal);
          v->s = global;
          stack_.push_back(v);
          break;
        }
        case 'R': {  // REDUCE
          auto args = pop(at), callable = pop(at);
          stack_.push_back(reduce(at, callable, args));
          break;
        }
        case 'b': {  // BUILD: only the OrderedDict's _metadata attribute
          auto state = pop(at);
          auto& obj = top(at);
          if (obj->kind != Value::kDict || !obj->ordered || state->kind != Value::kDict) {
            fail(at, std::string("BUILD of a ") + kind_name(obj->kind) + " with a " + kind_name(state->kind) +
                         " (only an OrderedDict's attributes are read)");
          }
          break;
        }
        case 'Q': {  // BINPERSID
          auto pid = pop(at);
          stack_.push_back(load_storage(at, pid));
          break;
        }
        case 'q': memo_put(static_cast<unsigned char>(byte()), at); break;  // BINPUT
        case 'r': memo_put(little_endian(4), at); break;                    // LONG_BINPUT
        case 'h': memo_get(static_cast<unsigned char>(byte()), at); break;  // BINGET
        case 'j': memo_get(little_endian(4), at); break;                    // LONG_BINGET
        default: {
          std::ostringstream o;
          o << path_ << ": pickle opcode 0x" << std::hex << static_cast<int>(op);
          if (op >= 0x20 && op < 0x7f) o << " ('" << static_cast<char>(op) << "')";
          o << std::dec << " at byte " << at << " is not part of a torch.save state dict";
          throw UnsupportedPickleError(o.str());
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(size_t at, const std::string& what) const {
    throw IoError(path_ + ": data.pkl at byte " + std::to_string(at) + ": " + what);
  }

  char byte() {
    if (pos_ >= size_) fail(pos_, "unexpected end of the pickle");
    return data_[pos_++];
  }
  uint64_t little_endian(size_t n) {
    uint64_t u = 0;
    for (size_t k = 0; k < n; ++k) u |= static_cast<uint64_t>(static_cast<unsigned char>(byte())) << (8 * k);
    return u;
  }
  std::string bytes(size_t n) {
    if (n > size_ - pos_) fail(pos_, "string of " + std::to_string(n) + " bytes past the end");
    std::string s(data_ + pos_, n);
    pos_ += n;
    return s;
  }
  std::string line() {
    std::string s;
    for (char c = byte(); c != '\n'; c = byte()) s += c;
    return s;
  }

  void push_int(int64_t x) {
    auto v = make(Value::kInt);
    v->i = x;
    stack_.push_back(v);
  }
  ValuePtr pop(size_t at) {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail(at, "pop from an empty stack");
    auto v = stack_.back();
    stack_.pop_back();
    return v;
  }
  ValuePtr& top(size_t at) {
    if (stack_.empty()) fail(at, "empty stack");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_to_mark(size_t at) {
    if (marks_.empty()) fail(at, "no MARK");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }
  ValuePtr dict_below(size_t at) {
    auto& d = top(at);
    if (d->kind != Value::kDict) fail(at, std::string("SETITEM(S) on a ") + kind_name(d->kind));
    return d;
  }
  ValuePtr list_below(size_t at) {
    auto& l = top(at);
    if (l->kind != Value::kList) fail(at, std::string("APPEND(S) on a ") + kind_name(l->kind));
    return l;
  }
  void memo_put(uint64_t index, size_t at) { memo_[index] = top(at); }
  void memo_get(uint64_t index, size_t at) {
    auto it = memo_.find(index);
    if (it == memo_.end()) fail(at, "memo " + std::to_string(index) + " read before it was written");
    stack_.push_back(it->second);
  }

  std::vector<int64_t> int_tuple(size_t at, const ValuePtr& v, const char* what) {
    if (v->kind != Value::kTuple) fail(at, std::string(what) + " is a " + kind_name(v->kind) + ", expected a tuple");
    std::vector<int64_t> out;
    for (const auto& x : v->items) {
      if (x->kind != Value::kInt || x->i < 0) fail(at, std::string(what) + " holds something else than sizes");
      out.push_back(x->i);
    }
    return out;
  }

  ValuePtr reduce(size_t at, const ValuePtr& callable, const ValuePtr& args) {
    if (callable->kind != Value::kGlobal || args->kind != Value::kTuple) {
      fail(at, std::string("REDUCE of a ") + kind_name(callable->kind) + " with a " + kind_name(args->kind));
    }
    if (callable->s == kOrderedDict) {
      if (!args->items.empty()) fail(at, "collections.OrderedDict called with arguments");
      auto d = make(Value::kDict);
      d->ordered = true;
      return d;
    }
    if (callable->s != kRebuildTensor) {
      throw UnsupportedPickleError(path_ + ": pickle global '" + callable->s + "' called at byte " +
                                   std::to_string(at) + " (only OrderedDict and _rebuild_tensor_v2 are)");
    }
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    const auto& a = args->items;
    if (a.size() != 6 && a.size() != 7) fail(at, "_rebuild_tensor_v2 with " + std::to_string(a.size()) + " arguments");
    if (a[0]->kind != Value::kStorage) fail(at, std::string("_rebuild_tensor_v2 of a ") + kind_name(a[0]->kind));
    if (a[1]->kind != Value::kInt || a[1]->i < 0) fail(at, "_rebuild_tensor_v2: storage offset is not an int >= 0");
    const auto sizes = int_tuple(at, a[2], "tensor size");
    const auto strides = int_tuple(at, a[3], "tensor stride");
    if (sizes.size() != strides.size()) fail(at, "tensor size and stride of different lengths");
    if (a[5]->kind != Value::kDict || !a[5]->entries.empty()) fail(at, "tensor with backward hooks");
    if (a.size() == 7 && !(a[6]->kind == Value::kNone || (a[6]->kind == Value::kDict && a[6]->entries.empty()))) {
      fail(at, "tensor with metadata");
    }
    const torch::Tensor& storage = a[0]->tensor;
    const int64_t offset = a[1]->i;
    int64_t last = offset, elements = 1;
    for (size_t d = 0; d < sizes.size(); ++d) {
      elements *= sizes[d];
      last += sizes[d] > 0 ? (sizes[d] - 1) * strides[d] : 0;
    }
    if (elements > 0 && last >= storage.numel()) {
      fail(at, "tensor of size " + c10::str(c10::IntArrayRef(sizes)) + ", stride " +
                   c10::str(c10::IntArrayRef(strides)) + " at offset " + std::to_string(offset) +
                   " reaches past its storage '" + a[0]->s + "' of " + std::to_string(storage.numel()) +
                   " elements");
    }
    auto t = make(Value::kTensor);
    t->tensor = elements > 0 ? storage.as_strided(sizes, strides, offset)
                             : torch::empty(sizes, storage.options());
    return t;
  }

  /// ('storage', torch.XStorage, key, location, numel) -> the record data/<key> as a tensor.
  ValuePtr load_storage(size_t at, const ValuePtr& pid) {
    const auto& p = pid->items;
    if (pid->kind != Value::kTuple || p.size() != 5 || p[0]->kind != Value::kString || p[0]->s != "storage" ||
        p[1]->kind != Value::kGlobal || p[2]->kind != Value::kString || p[3]->kind != Value::kString ||
        p[4]->kind != Value::kInt) {
      fail(at, "persistent id is not ('storage', type, key, location, numel)");
    }
    const auto type = storage_types().find(p[1]->s);
    if (type == storage_types().end()) fail(at, "persistent id with storage type '" + p[1]->s + "'");
    const std::string& key = p[2]->s;
    auto cached = storages_.find(key);
    if (cached != storages_.end()) return cached->second;
    const std::string record = "data/" + key;
    if (!reader_.hasRecord(record)) fail(at, "storage record '" + record + "' is missing");
    at::DataPtr data;
    size_t size = 0;
    std::tie(data, size) = reader_.getRecord(record);
    const int64_t numel = p[4]->i;
    const size_t expected = static_cast<size_t>(numel) * c10::elementSize(type->second);
    if (numel < 0 || size != expected) {
      fail(at, "storage record '" + record + "' has " + std::to_string(size) + " bytes, expected " +
                   std::to_string(expected) + " (" + std::to_string(numel) + " x " +
                   c10::toString(type->second) + ")");
    }
    auto v = make(Value::kStorage);
    v->s = key;
    v->tensor = torch::empty({numel}, torch::TensorOptions().dtype(type->second));
    if (size > 0) std::memcpy(v->tensor.data_ptr(), data.get(), size);  // records are little-endian, as x86
    storages_[key] = v;
    return v;
  }

  std::string path_;
  caffe2::serialize::PyTorchStreamReader& reader_;
  const char* data_;
  size_t size_;
  size_t pos_ = 0;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, ValuePtr> memo_;
  std::map<std::string, ValuePtr> storages_;
};

}  // namespace

std::vector<std::pair<std::string, torch::Tensor>> read_torch_save_state_dict(const std::string& path) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
  } catch (const c10::Error& e) {
    throw UnsupportedPickleError(path + ": not a torch.save zip archive (" + e.what_without_backtrace() + ")");
  }
  if (!reader->hasRecord("data.pkl")) throw UnsupportedPickleError(path + ": no data.pkl record");
  at::DataPtr pkl;
  size_t size = 0;
  std::tie(pkl, size) = reader->getRecord("data.pkl");
  const ValuePtr root = Unpickler(path, *reader, static_cast<const char*>(pkl.get()), size).run();
  if (root->kind != Value::kDict) {
    throw UnsupportedPickleError(path + std::string(": holds a ") + kind_name(root->kind) + ", not a state dict");
  }
  const Value* dict = root.get();
  for (const char* nested : {"state_dict", "model_state", "model"}) {
    bool found = false;
    for (const auto& kv : root->entries) {
      if (kv.first->kind == Value::kString && kv.first->s == nested && kv.second->kind == Value::kDict) {
        dict = kv.second.get();
        found = true;
        break;
      }
    }
    if (found) break;
  }
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& kv : dict->entries) {
    if (kv.first->kind != Value::kString) {
      throw IoError(path + std::string(": state dict key of type ") + kind_name(kv.first->kind));
    }
    if (kv.second->kind == Value::kTensor) out.emplace_back(kv.first->s, kv.second->tensor);
  }
  return out;
}

}  // namespace holo::models
