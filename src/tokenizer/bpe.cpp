#include "tokenizer/bpe.h"

#include <algorithm>

#include "tokenizer/byte_level.h"

namespace escale::tok {

namespace {
// std heap functions build a max-heap; "greater" = later rank, then later position.
struct CandAfter {
  bool operator()(const BpeModel::Scratch::Cand& a, const BpeModel::Scratch::Cand& b) const {
    return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
  }
};
}  // namespace

void MergeTable::Reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  if (cap <= slots_.size()) return;
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(cap, Slot());
  mask_ = cap - 1;
  size_ = 0;
  for (const Slot& s : old) {
    if (s.key != kEmpty) InsertOrAssign(s.key, s.v);
  }
}

void MergeTable::Grow() {
  Reserve(std::max<size_t>(size_ + 1, slots_.size()));
}

void MergeTable::InsertOrAssign(uint64_t key, MergeInfo v) {
  if ((size_ + 1) * 2 > slots_.size()) Grow();
  for (size_t i = Hash(key) & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key == key) {
      s.v = v;
      return;
    }
    if (s.key == kEmpty) {
      s.key = key;
      s.v = v;
      ++size_;
      return;
    }
  }
}

void BpeModel::InitBytes(std::string_view bytes, Scratch& s) const {
  // Bytes without a vocab entry are dropped, as tokenizers does for a BPE without unk_token.
  for (unsigned char c : bytes) {
    const int32_t id = byte_id[c];
    if (id < 0) continue;
    const auto n = static_cast<int32_t>(s.syms.size());
    s.syms.push_back({id, n - 1, -1, 1});
    if (n > 0) s.syms[n - 1].next = n;
  }
}

bool BpeModel::HasFallback(std::string_view ch) const {
  for (unsigned char c : ch) {
    if (fallback_id[c] < 0) return false;
  }
  return true;
}

void BpeModel::InitChars(std::string_view text, Scratch& s) const {
  auto add = [&](int32_t id, uint32_t len) {
    const auto n = static_cast<int32_t>(s.syms.size());
    s.syms.push_back({id, n - 1, -1, len});
    if (n > 0) s.syms[n - 1].next = n;
  };
  uint32_t pending_unk = 0;  // bytes covered by the unk not yet added
  for (size_t i = 0; i < text.size();) {
    const auto c = static_cast<unsigned char>(text[i]);
    size_t len = c < 0x80 ? 1 : Utf8SequenceLength(text, i);
    if (len == 0) len = 1;  // an invalid byte stands alone
    int32_t id = c < 0x80 ? byte_id[c] : IdOfBytes(text.substr(i, len));
    if (id >= 0) {
      if (pending_unk > 0) add(unk_id, pending_unk);
      pending_unk = 0;
      add(id, static_cast<uint32_t>(len));
    } else if (byte_fallback && HasFallback(text.substr(i, len))) {
      // As tokenizers does, the byte tokens go in without first flushing a pending unk (reachable
      // only when the vocabulary lacks some <0xNN> tokens).
      for (size_t k = 0; k < len; ++k) add(fallback_id[static_cast<unsigned char>(text[i + k])], 1);
    } else if (unk_id >= 0) {
      if (pending_unk > 0 && !fuse_unk) {
        add(unk_id, pending_unk);
        pending_unk = 0;
      }
      pending_unk += static_cast<uint32_t>(len);
    }
    i += len;
  }
  if (pending_unk > 0) add(unk_id, pending_unk);
}

void BpeModel::Tokenize(std::string_view bytes, Scratch& s, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  if (!literal && bytes.size() == 1) {
    const int32_t id = byte_id[static_cast<unsigned char>(bytes[0])];
    if (id >= 0) out.push_back(id);
    return;
  }
  if (ignore_merges) {
    const int32_t whole = IdOfBytes(bytes);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  auto& syms = s.syms;
  auto& heap = s.heap;
  syms.clear();
  heap.clear();
  if (literal) {
    InitChars(bytes, s);
  } else {
    InitBytes(bytes, s);
  }
  const auto count = static_cast<int32_t>(syms.size());
  for (int32_t i = 0; i + 1 < count; ++i) {
    if (const MergeInfo* m = FindMerge(syms[i].id, syms[i + 1].id)) {
      heap.push_back({m->rank, i, m->new_id});
    }
  }
  std::make_heap(heap.begin(), heap.end(), CandAfter());
  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), CandAfter());
    const Scratch::Cand top = heap.back();
    heap.pop_back();
    Scratch::Sym& left = syms[top.pos];
    if (left.len == 0 || left.next < 0) continue;
    Scratch::Sym& right = syms[left.next];
    const MergeInfo* cur = FindMerge(left.id, right.id);
    if (cur == nullptr || cur->new_id != top.new_id) continue;  // stale entry
    left.id = top.new_id;
    left.len += right.len;
    right.len = 0;
    left.next = right.next;
    if (right.next >= 0) syms[right.next].prev = top.pos;
    if (left.prev >= 0) {
      if (const MergeInfo* m = FindMerge(syms[left.prev].id, left.id)) {
        heap.push_back({m->rank, left.prev, m->new_id});
        std::push_heap(heap.begin(), heap.end(), CandAfter());
      }
    }
    if (left.next >= 0) {
      if (const MergeInfo* m = FindMerge(left.id, syms[left.next].id)) {
        heap.push_back({m->rank, top.pos, m->new_id});
        std::push_heap(heap.begin(), heap.end(), CandAfter());
      }
    }
  }
  for (int32_t i = 0; i >= 0 && i < count; i = syms[i].next) out.push_back(syms[i].id);
}

}  // namespace escale::tok
