// ESCALE_CHECK: for invariants a correct program always holds. Never use it on input from a
// user or a file (return a Status instead). Active in every build type, unlike assert().
#pragma once

#include <cstdio>
#include <cstdlib>

#define ESCALE_CHECK(cond)                                                                    \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "escale: internal error: %s:%d: check failed: %s\n", __FILE__,      \
                   __LINE__, #cond);                                                          \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)
