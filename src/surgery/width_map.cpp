#include "surgery/width_map.h"

#include <algorithm>

#include "core/check.h"
#include "core/rng.h"

namespace escale::surgery {

std::string_view MapKindName(MapKind k) { return k == MapKind::kCircular ? "circular" : "random"; }

bool DimMap::identity() const {
  if (n_src != n_dst || pooled()) return false;
  for (int64_t i = 0; i < n_dst; ++i)
    if (src[static_cast<size_t>(i)] != i) return false;
  return true;
}

bool DimMap::uniform_counts() const {
  return std::all_of(count.begin(), count.end(), [&](int64_t c) { return c == count.front(); });
}

bool DimMap::any_fresh() const {
  return std::any_of(fresh.begin(), fresh.end(), [](uint8_t f) { return f != 0; });
}

static void FillCounts(DimMap& m) {
  m.count.assign(static_cast<size_t>(m.n_src), 0);
  for (int64_t s : m.src) ++m.count[static_cast<size_t>(s)];
}

DimMap IdentityMap(int64_t n) { return MakeWidthMap(n, n, MapKind::kCircular, 0, ""); }

DimMap MakeWidthMap(int64_t n, int64_t n2, MapKind kind, uint64_t seed, const std::string& stream) {
  ESCALE_CHECK(n > 0 && n2 >= n);
  DimMap m;
  m.n_src = n;
  m.n_dst = n2;
  m.src.resize(static_cast<size_t>(n2));
  m.fresh.assign(static_cast<size_t>(n2), 0);
  Rng rng = Rng::Stream(seed, "width-map/" + stream);
  for (int64_t i = 0; i < n2; ++i) {
    if (i < n) {
      m.src[static_cast<size_t>(i)] = i;
      continue;
    }
    m.fresh[static_cast<size_t>(i)] = 1;
    m.src[static_cast<size_t>(i)] =
        kind == MapKind::kCircular ? i % n : static_cast<int64_t>(rng.NextBelow(static_cast<uint64_t>(n)));
  }
  FillCounts(m);
  return m;
}

DimMap ExpandUnits(const DimMap& units, int64_t size) {
  DimMap m;
  m.n_src = units.n_src * size;
  m.n_dst = units.n_dst * size;
  m.src.resize(static_cast<size_t>(m.n_dst));
  m.fresh.resize(static_cast<size_t>(m.n_dst));
  if (units.pooled()) m.pool.resize(static_cast<size_t>(m.n_dst));
  for (int64_t u = 0; u < units.n_dst; ++u) {
    for (int64_t e = 0; e < size; ++e) {
      const auto i = static_cast<size_t>(u * size + e);
      m.src[i] = units.src[static_cast<size_t>(u)] * size + e;
      m.fresh[i] = units.fresh[static_cast<size_t>(u)];
      if (units.pooled())
        for (int64_t s : units.pool[static_cast<size_t>(u)]) m.pool[i].push_back(s * size + e);
    }
  }
  m.count.resize(static_cast<size_t>(m.n_src));
  for (int64_t j = 0; j < m.n_src; ++j) m.count[static_cast<size_t>(j)] = units.count[static_cast<size_t>(j / size)];
  return m;
}

Result<HeadMaps> MakeHeadMaps(int64_t h1, int64_t g1, int64_t h2, int64_t g2, MapKind kind, uint64_t seed) {
  if (h2 < h1) return InvalidArgument("--heads " + std::to_string(h2) + " is fewer than the source's " + std::to_string(h1) + " query heads; heads can only grow");
  if (h2 % g2 != 0)
    return InvalidArgument("--heads " + std::to_string(h2) + " is not divisible by --kv-heads " + std::to_string(g2));
  if (g2 >= g1 ? g2 % g1 != 0 : g1 % g2 != 0)
    return InvalidArgument("--kv-heads " + std::to_string(g2) + " must be a multiple or a divisor of the source's " +
                           std::to_string(g1) + " KV heads");
  const int64_t q1 = h1 / g1, q2 = h2 / g2;
  HeadMaps out;
  DimMap& q = out.q;
  DimMap& kv = out.kv;
  q.n_src = h1;
  q.n_dst = h2;
  kv.n_src = g1;
  kv.n_dst = g2;
  // Within one target group: the first `pool_heads` indices are the original query heads of the
  // source group(s) feeding it, later ones are new and copy one of them.
  auto within = [&](int64_t c, int64_t n, Rng& rng) -> int64_t {
    if (c < n) return c;
    return kind == MapKind::kCircular ? c % n : static_cast<int64_t>(rng.NextBelow(static_cast<uint64_t>(n)));
  };
  if (g2 >= g1) {
    const int64_t m = g2 / g1;
    for (int64_t r2 = 0; r2 < g2; ++r2) {
      kv.src.push_back(r2 / m);
      kv.fresh.push_back(r2 % m != 0 ? 1 : 0);
    }
    for (int64_t r = 0; r < g1; ++r) {
      // The m target groups of source group r hold m*q2 query heads, indexed c = (r2 % m)*q2 + j2.
      Rng rng = Rng::Stream(seed, "head-map/group/" + std::to_string(r));
      for (int64_t c = 0; c < m * q2; ++c) {
        q.src.push_back(r * q1 + within(c, q1, rng));
        q.fresh.push_back(c >= q1 ? 1 : 0);
      }
    }
  } else {
    const int64_t m = g1 / g2;
    kv.pool.resize(static_cast<size_t>(g2));
    for (int64_t r2 = 0; r2 < g2; ++r2) {
      for (int64_t u = 0; u < m; ++u) kv.pool[static_cast<size_t>(r2)].push_back(r2 * m + u);
      kv.src.push_back(r2 * m);
      kv.fresh.push_back(0);
      // The source query heads of the pooled groups are consecutive: r2*m*q1 + c, c < m*q1.
      Rng rng = Rng::Stream(seed, "head-map/group/" + std::to_string(r2));
      for (int64_t j = 0; j < q2; ++j) {
        q.src.push_back(r2 * m * q1 + within(j, m * q1, rng));
        q.fresh.push_back(j >= m * q1 ? 1 : 0);
      }
    }
  }
  FillCounts(q);
  FillCounts(kv);
  return out;
}

std::string DescribeMap(const DimMap& m, int64_t max_items) {
  if (m.identity()) return "identity (" + std::to_string(m.n_dst) + ")";
  std::string s = std::to_string(m.n_src) + "->" + std::to_string(m.n_dst);
  if (m.pooled()) return s + " (mean-pooled runs of " + std::to_string(m.pool.front().size()) + ")";
  s += " g = [";
  const int64_t shown = std::min<int64_t>(m.n_dst, max_items);
  for (int64_t i = 0; i < shown; ++i) {
    if (i) s += ',';
    s += std::to_string(m.src[static_cast<size_t>(i)]);
  }
  if (shown < m.n_dst) s += ",...";
  s += "]";
  if (m.uniform_counts()) s += " C = " + std::to_string(m.count.front()) + " each";
  else {
    const auto [lo, hi] = std::minmax_element(m.count.begin(), m.count.end());
    s += " C in [" + std::to_string(*lo) + "," + std::to_string(*hi) + "]";
  }
  return s;
}

}  // namespace escale::surgery
