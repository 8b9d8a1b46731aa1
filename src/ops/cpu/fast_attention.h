// Causal grouped-query attention for the fp32 training path. The forward keeps only the per-row
// log-sum-exp of the scores; the backward recomputes the probabilities block by block from it, so
// no T x T matrix is stored (each thread has one [64, T] score block of scratch). Score and value
// products are single-threaded sgemms inside one OpenMP task per (sequence, head), so BLAS must be
// single-threaded (UseSingleThreadedBlas). Query head h reads KV head h / (heads / kv_heads);
// scale 1/sqrt(hd).
#pragma once

#include <cstdint>

namespace escale::ops::fast {

struct AttentionShape {
  int64_t batch = 0, seq_len = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int64_t q_ld = 0;    // row stride of q and dq
  int64_t kv_ld = 0;   // row stride of k, v, dk and dv
  int64_t o_ld = 0;    // row stride of out and dout
  int threads = 1;     // OpenMP threads; the scratch holds this many slices
};

// Scratch floats per thread for both passes.
int64_t AttentionScratchPerThread(int64_t seq_len);

// Rows are token b*seq_len + t. out [rows, heads*hd] (stride o_ld), lse [batch, heads, seq_len].
void CausalAttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                            float* lse, float* scratch);

// Writes dq, dk, dv (every element of their heads) from dout. out and lse from the forward.
void CausalAttentionBackward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                             const float* lse, const float* dout, float* dq, float* dk, float* dv, float* scratch);

// Decoding with a key/value cache: `rows` new queries at positions pos..pos+rows-1, row m attending
// to cached positions 0..pos+m (its own key and value must already be in the cache). k_cache and
// v_cache hold one row of stride kv_ld per position; s.batch and s.seq_len are unused. scratch:
// CachedAttentionScratch(pos + rows, s.threads) floats.
int64_t CachedAttentionScratch(int64_t positions, int threads);
void CachedAttentionForward(const AttentionShape& s, int64_t pos, int64_t rows, const float* q,
                            const float* k_cache, const float* v_cache, float* out, float* scratch);

}  // namespace escale::ops::fast
