#include "fastmeter/heap.h"

#include <cstdlib>  // defines __GLIBC__ on glibc (through <features.h>), which the test below needs

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace fastmeter {

bool release_free_heap() noexcept {
#if defined(__GLIBC__)
  return malloc_trim(0) != 0;
#else
  return false;
#endif
}

}  // namespace fastmeter
