#include "io/tokenizer_bpe.h"

#include <algorithm>

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

void MergeTable::Grow() { Reserve(std::max<size_t>(size_ + 1, slots_.size())); }

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

void BpeModel::Tokenize(std::string_view bytes, Scratch& s, std::vector<int32_t>& out) const {
  if (bytes.empty()) return;
  if (bytes.size() == 1) {
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
  // Bytes without a vocab entry are dropped, as tokenizers does for a BPE without unk_token.
  for (unsigned char c : bytes) {
    const int32_t id = byte_id[c];
    if (id < 0) continue;
    const auto n = static_cast<int32_t>(syms.size());
    syms.push_back({id, n - 1, -1, 1});
    if (n > 0) syms[n - 1].next = n;
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
