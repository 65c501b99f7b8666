#include "models/hf/sentencepiece_proto.hpp"

#include <bit>
#include <fstream>
#include <iterator>

namespace aeg::models::hf {
namespace {

// Protobuf wire types; 3 and 4 (groups) are deprecated and no field of the model uses them.
enum class wire : std::uint32_t { varint = 0, fixed64 = 1, length = 2, fixed32 = 5 };

struct field_key {
  std::uint32_t number;
  wire type;
};

// Reads one message: `bytes` are the message's own bytes, which begin at `base` in the file.
// `where` names the message ("trainer_spec", "pieces[3]") in errors.
class reader {
public:
  reader(std::span<const std::byte> bytes, std::size_t base, std::string where,
         const std::string& file)
      : bytes_(bytes), base_(base), where_(std::move(where)), file_(file) {}

  bool done() const noexcept { return pos_ == bytes_.size(); }

  // A fault at the current position, worded for the user.
  tl::unexpected<error> fault(const std::string& what) const {
    return fail(errc::corrupt_data,
                file_ + " is not a valid SentencePiece model: " + what + " at byte " +
                    std::to_string(base_ + pos_) + (where_.empty() ? "" : " (in " + where_ + ")") +
                    "; the file is damaged or cut short: download the model's tokenizer.model "
                    "again");
  }

  result<std::uint64_t> varint() {
    std::uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) { // at most 10 bytes
      if (pos_ == bytes_.size())
        return fault("a varint is cut short by the end of its message");
      const auto b = static_cast<std::uint8_t>(bytes_[pos_++]);
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0)
        return v;
    }
    return fault("a varint runs over 10 bytes");
  }

  result<field_key> key() {
    AEG_TRY_ASSIGN(const auto k, varint());
    const auto type = static_cast<std::uint32_t>(k & 7);
    if (type != 0 && type != 1 && type != 2 && type != 5)
      return fault("wire type " + std::to_string(type) + " (of field " + std::to_string(k >> 3) +
                   ") is not one the model's fields use");
    if ((k >> 3) == 0 || (k >> 3) > 0x1fffffff)
      return fault("field number " + std::to_string(k >> 3) + " is out of range");
    return field_key{static_cast<std::uint32_t>(k >> 3), static_cast<wire>(type)};
  }

  // The bytes of a length-delimited field, checked against the end of this message.
  result<std::span<const std::byte>> delimited() {
    AEG_TRY_ASSIGN(const auto n, varint());
    if (n > bytes_.size() - pos_)
      return fault("a field of " + std::to_string(n) + " bytes runs past the end of its message (" +
                   std::to_string(bytes_.size() - pos_) + " bytes left)");
    const auto out = bytes_.subspan(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return out;
  }

  // The reader of an embedded message named `name`.
  result<reader> message(std::string name) {
    AEG_TRY_ASSIGN(const auto bytes, delimited());
    return reader(bytes, base_ + pos_ - bytes.size(), std::move(name), file_);
  }

  result<std::uint32_t> fixed32() {
    if (bytes_.size() - pos_ < 4)
      return fault("a 4-byte field is cut short by the end of its message");
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) // little-endian on the wire
      v = (v << 8) | static_cast<std::uint8_t>(bytes_[pos_ + static_cast<std::size_t>(i)]);
    pos_ += 4;
    return v;
  }

  // Skips the value of a field this runtime does not read.
  result<void> skip(wire type) {
    switch (type) {
    case wire::varint:
      return varint().map([](std::uint64_t) {});
    case wire::length:
      return delimited().map([](std::span<const std::byte>) {});
    case wire::fixed32:
      return fixed32().map([](std::uint32_t) {});
    case wire::fixed64:
      if (bytes_.size() - pos_ < 8)
        return fault("an 8-byte field is cut short by the end of its message");
      pos_ += 8;
      return {};
    }
    return {};
  }

  // Checks that a known field has the wire type its declaration gives it.
  result<void> expect(field_key k, wire want, const char* name) const {
    if (k.type == want)
      return {};
    return fault("field " + std::to_string(k.number) + " (" + name + ") has wire type " +
                 std::to_string(static_cast<std::uint32_t>(k.type)) + ", not " +
                 std::to_string(static_cast<std::uint32_t>(want)));
  }

  result<bool> boolean(field_key k, const char* name) {
    AEG_TRY(expect(k, wire::varint, name));
    AEG_TRY_ASSIGN(const auto v, varint());
    return v != 0;
  }

  // An int32 or enum: protobuf writes negative values as 10-byte varints and keeps the low bits.
  result<std::int32_t> int32(field_key k, const char* name) {
    AEG_TRY(expect(k, wire::varint, name));
    AEG_TRY_ASSIGN(const auto v, varint());
    return static_cast<std::int32_t>(static_cast<std::uint32_t>(v));
  }

  result<std::string> text(field_key k, const char* name) {
    AEG_TRY(expect(k, wire::length, name));
    AEG_TRY_ASSIGN(const auto b, delimited());
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
  }

private:
  std::span<const std::byte> bytes_;
  std::size_t base_;
  std::size_t pos_ = 0;
  std::string where_;
  const std::string& file_;
};

result<void> read_piece(reader r, sentencepiece_proto::piece& p) {
  while (!r.done()) {
    AEG_TRY_ASSIGN(const auto k, r.key());
    if (k.number == 1) {
      AEG_TRY_ASSIGN(p.text, r.text(k, "piece"));
    } else if (k.number == 2) {
      AEG_TRY(r.expect(k, wire::fixed32, "score"));
      AEG_TRY_ASSIGN(const auto bits, r.fixed32());
      p.score = std::bit_cast<float>(bits);
    } else if (k.number == 3) {
      AEG_TRY_ASSIGN(p.type, r.int32(k, "type"));
      if (p.type < 1 || p.type > 6)
        return r.fault("piece type " + std::to_string(p.type) + " is not a SentencePiece type");
    } else {
      AEG_TRY(r.skip(k.type));
    }
  }
  return {};
}

result<void> read_trainer_spec(reader r, sentencepiece_proto& m) {
  while (!r.done()) {
    AEG_TRY_ASSIGN(const auto k, r.key());
    switch (k.number) {
    case 3: {
      AEG_TRY_ASSIGN(const auto t, r.int32(k, "model_type"));
      m.model_type = static_cast<sentencepiece_proto::model_kind>(t);
      if (t < 1 || t > 4)
        return r.fault("model_type " + std::to_string(t) + " is not a SentencePiece model type");
      break;
    }
    case 24: {
      AEG_TRY_ASSIGN(m.treat_whitespace_as_suffix, r.boolean(k, "treat_whitespace_as_suffix"));
      break;
    }
    case 35: {
      AEG_TRY_ASSIGN(m.byte_fallback, r.boolean(k, "byte_fallback"));
      break;
    }
    case 40: {
      AEG_TRY_ASSIGN(m.unk_id, r.int32(k, "unk_id"));
      break;
    }
    case 41: {
      AEG_TRY_ASSIGN(m.bos_id, r.int32(k, "bos_id"));
      break;
    }
    case 42: {
      AEG_TRY_ASSIGN(m.eos_id, r.int32(k, "eos_id"));
      break;
    }
    case 43: {
      AEG_TRY_ASSIGN(m.pad_id, r.int32(k, "pad_id"));
      break;
    }
    default:
      AEG_TRY(r.skip(k.type));
    }
  }
  return {};
}

result<void> read_normalizer_spec(reader r, sentencepiece_proto& m) {
  while (!r.done()) {
    AEG_TRY_ASSIGN(const auto k, r.key());
    switch (k.number) {
    case 1: {
      AEG_TRY_ASSIGN(m.normalizer_name, r.text(k, "name"));
      break;
    }
    case 2: {
      AEG_TRY(r.expect(k, wire::length, "precompiled_charsmap"));
      AEG_TRY_ASSIGN(const auto map, r.delimited());
      m.precompiled_charsmap_bytes = map.size();
      break;
    }
    case 3: {
      AEG_TRY_ASSIGN(m.add_dummy_prefix, r.boolean(k, "add_dummy_prefix"));
      break;
    }
    case 4: {
      AEG_TRY_ASSIGN(m.remove_extra_whitespaces, r.boolean(k, "remove_extra_whitespaces"));
      break;
    }
    case 5: {
      AEG_TRY_ASSIGN(m.escape_whitespaces, r.boolean(k, "escape_whitespaces"));
      break;
    }
    default:
      AEG_TRY(r.skip(k.type));
    }
  }
  return {};
}

} // namespace

result<sentencepiece_proto> sentencepiece_proto::parse(std::span<const std::byte> bytes,
                                                       const std::string& name) {
  sentencepiece_proto m;
  reader r(bytes, 0, "", name);
  while (!r.done()) {
    AEG_TRY_ASSIGN(const auto k, r.key());
    if (k.number == 1) {
      AEG_TRY(r.expect(k, wire::length, "pieces"));
      AEG_TRY_ASSIGN(auto sub, r.message("pieces[" + std::to_string(m.pieces.size()) + "]"));
      AEG_TRY(read_piece(std::move(sub), m.pieces.emplace_back()));
    } else if (k.number == 2) {
      AEG_TRY(r.expect(k, wire::length, "trainer_spec"));
      AEG_TRY_ASSIGN(auto sub, r.message("trainer_spec"));
      AEG_TRY(read_trainer_spec(std::move(sub), m));
    } else if (k.number == 3) {
      AEG_TRY(r.expect(k, wire::length, "normalizer_spec"));
      AEG_TRY_ASSIGN(auto sub, r.message("normalizer_spec"));
      AEG_TRY(read_normalizer_spec(std::move(sub), m));
    } else {
      AEG_TRY(r.skip(k.type));
    }
  }
  if (m.pieces.empty())
    return r.fault("no vocabulary pieces were found");
  return m;
}

result<sentencepiece_proto> sentencepiece_proto::read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return fail(errc::not_found, "cannot read '" + path + "'");
  const std::string bytes((std::istreambuf_iterator<char>(in)), {});
  return parse(std::as_bytes(std::span(bytes.data(), bytes.size())), path);
}

std::string sentencepiece_proto::kind_name(model_kind kind) {
  switch (kind) {
  case model_kind::unigram:
    return "unigram";
  case model_kind::bpe:
    return "bpe";
  case model_kind::word:
    return "word";
  case model_kind::character:
    return "char";
  }
  return "model type " + std::to_string(static_cast<std::int32_t>(kind));
}

} // namespace aeg::models::hf
