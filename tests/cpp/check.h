// Minimal assertion helpers: the tests must fail loudly in Release builds too, so no reliance on assert/NDEBUG.
#pragma once
#include <cstdio>
#include <cstdlib>

#define CHECK(cond)                                                             \
  do {                                                                          \
    if (!(cond)) {                                                              \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::exit(1);                                                             \
    }                                                                           \
  } while (0)

#define CHECK_THROWS(expr, type)        \
  do {                                  \
    bool thrown_ = false;               \
    try {                               \
      (void)(expr);                     \
    } catch (const type&) {             \
      thrown_ = true;                   \
    }                                   \
    CHECK(thrown_ && "expected " #type); \
  } while (0)
