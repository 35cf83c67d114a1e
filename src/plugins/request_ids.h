// Private to src/plugins. The id generators of the request-id plugin, as APISIX 3.x names them:
//   uuid      RFC 4122 version 4, 36 characters ("xxxxxxxx-xxxx-4xxx-[89ab]xxx-xxxxxxxxxxxx", lower-case hex)
//   nanoid    21 characters of the URL-safe alphabet A-Za-z0-9_- (nanoid's default)
//   range_id  `length` characters drawn uniformly from `char_set`
//   ksuid     27 base62 characters: a 4-byte timestamp (seconds since 2014-05-13, KSUID's epoch) and 16
//             random bytes, so ids sort by creation second
// The randomness is a per-thread xoshiro256** generator seeded from the OS (getrandom), one per worker, with
// no lock and no system call per id. Ids are unique with overwhelming probability; they are not secrets.
//
// Each appends to `out`; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace portico::plugins::ids {

uint64_t random64();  // the calling thread's generator

void uuid_v4(std::string& out);
void nanoid(std::string& out);
void range_id(std::string_view char_set, size_t length, std::string& out);
void ksuid(uint64_t unix_seconds, std::string& out);

}  // namespace portico::plugins::ids
