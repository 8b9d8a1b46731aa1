// Width maps (docs/method.md §2.1): how each unit of a grown dimension is made from units of the
// source.
//
// A map g: {0..n'-1} -> {0..n-1} with g(i) = i for i < n; C(j) = |{i : g(i) = j}| counts the copies
// of source unit j, the original included. Output expansion copies rows (W'[i,:] = W[g(i),:]);
// input expansion copies and divides columns (W'[:,i] = W[:,g(i)] / C(g(i))). `fresh` marks the
// units AKI takes from the next layer. A pooled map (K/V heads when groups shrink) averages several
// source units into one target unit; it can only be used for output expansion.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale::surgery {

enum class MapKind { kCircular, kRandom };
std::string_view MapKindName(MapKind k);

struct DimMap {
  int64_t n_src = 0;
  int64_t n_dst = 0;
  std::vector<int64_t> src;      // g(i), size n_dst
  std::vector<uint8_t> fresh;    // 1 for new units, size n_dst
  std::vector<int64_t> count;    // C(j), size n_src
  // Pooled maps only: target unit i is the mean of source units pool[i] (src[i] = pool[i][0]).
  std::vector<std::vector<int64_t>> pool;

  bool pooled() const { return !pool.empty(); }
  bool identity() const;          // n_src == n_dst and g(i) = i
  bool uniform_counts() const;    // every C(j) equal (exact RMSNorm when this is the hidden map)
  bool any_fresh() const;
};
using DimMapPtr = std::shared_ptr<const DimMap>;

DimMap IdentityMap(int64_t n);
// n -> n2 >= n. `stream` names the random stream (seed, stream) for MapKind::kRandom.
DimMap MakeWidthMap(int64_t n, int64_t n2, MapKind kind, uint64_t seed, const std::string& stream);
// Every unit of `units` becomes `size` consecutive elements (heads -> rows of q_proj).
DimMap ExpandUnits(const DimMap& units, int64_t size);

// Query and key/value head maps for GQA-aware head growth (docs/method.md §2.1, "Heads and GQA").
// Query heads grow inside each KV group; g2 = m*g1 duplicates each KV head m times (consecutive
// target groups r'*m..r'*m+m-1 come from source group r'); g2 < g1 mean-pools each run of
// m = g1/g2 consecutive K/V heads, and the new group's query heads are taken from the pooled groups'.
struct HeadMaps {
  DimMap q;   // over query heads, h1 -> h2
  DimMap kv;  // over KV heads, g1 -> g2 (pooled when g2 < g1)
};
Result<HeadMaps> MakeHeadMaps(int64_t h1, int64_t g1, int64_t h2, int64_t g2, MapKind kind,
                              uint64_t seed);

// A short human-readable form: "identity", "circular 8->12 (C = 2,2,2,2,1,1,1,1)", ...
std::string DescribeMap(const DimMap& m, int64_t max_items = 16);

}  // namespace escale::surgery
