// RESP request encoding (our own writer: see README.md for why not redisFormatCommandArgv) and Redis
// Cluster key slots. Pure functions, any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace portico::redis {

// Appends argv as a RESP array of bulk strings to `out` (which keeps its capacity between calls).
void append_command(std::string& out, std::span<const std::string_view> argv);
// Appends the header of a RESP array of `count` elements, then single bulk strings.
void append_array_header(std::string& out, size_t count);
void append_bulk(std::string& out, std::string_view arg);

// CRC16-CCITT (XModem) as Redis Cluster uses it: crc16("123456789") == 0x31C3.
uint16_t crc16(std::string_view data);
// The hash slot of `key` (0..16383), honouring {hash tags}.
int key_slot(std::string_view key);

}  // namespace portico::redis
