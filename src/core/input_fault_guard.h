// What happens when a mapped input shrinks under us. Reading a page of a mapping past the end of
// its file (another process truncated or rewrote it after we mapped it) raises SIGBUS, which
// would kill the process with no word and leave half-written outputs. The guard knows every live
// mapping and every unfinished staging output: on SIGBUS inside a mapping it prints one line
// naming the file, removes the staging outputs and exits with status 1. A SIGBUS anywhere else goes
// to the handler installed before the guard's, else the default action (a bug, not bad input).
#pragma once

#include <cstddef>
#include <string>

namespace escale::fault_guard {

// MappedFile registers each mapping for its lifetime; the first registration installs the handler.
void AddMapping(const void* begin, size_t size, const std::string& path);
void RemoveMapping(const void* begin);

// StagingDir and AtomicFile register their temporary names until they commit or are destroyed.
void AddStaging(const std::string& path);
void RemoveStaging(const std::string& path);

}  // namespace escale::fault_guard
