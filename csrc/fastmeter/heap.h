// Hands the allocator's free memory back to the kernel. A long recording allocates and frees buffers of varying size
// from several threads (each flush's columns, Arrow batches); glibc keeps the freed space inside its arenas, where it
// counts in RSS although nothing uses it (a 16-channel 10 kHz trace: tens of MB more per ten minutes).
#pragma once

namespace fastmeter {

// malloc_trim(0) on glibc (it also returns whole free pages inside each arena, not just the top); false elsewhere
// or when nothing could be returned.
bool release_free_heap() noexcept;

}  // namespace fastmeter
