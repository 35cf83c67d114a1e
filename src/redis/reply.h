// Redis replies as views, and the parser that builds them.
//
// A Reply is a view of one RESP reply. It points into its connection's arena and is valid only while the
// completion it is handed to runs (redis::Call::complete): copy what you keep.
//
// ReplyParser wraps hiredis' redisReader with our own redisReplyObjectFunctions: elements and string bytes
// are carved out of a chunked arena that is rewound (not freed) before each reply, so parsing a reply
// allocates nothing once the arena has grown to the largest reply seen. One parser per connection; not
// thread-safe (it lives on its connection's worker).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace portico::redis {

enum class ReplyType : uint8_t { string = 1, array = 2, integer = 3, nil = 4, status = 5, error = 6 };

struct Reply {
  ReplyType type = ReplyType::nil;
  int64_t integer = 0;              // integer replies
  std::string_view str;             // string, status and error replies (an error's text without the '-')
  std::span<const Reply> elements;  // array replies (a nil array, "*-1", is type nil)

  bool is_error() const { return type == ReplyType::error; }
  // The error's first word ("MOVED", "NOSCRIPT", "ERR", ...); empty for other types.
  std::string_view error_code() const;
};

class ReplyParser {
 public:
  // Bounds of one reply (its bytes in the arena, and the elements of one array) and of the bytes buffered
  // before a reply completes: far above what Portico's commands get back, so only a broken or hostile peer
  // (a redis_host that is not Redis) reaches them, and it fails the connection instead of exhausting memory.
  static constexpr size_t kMaxReplyBytes = 16u << 20;
  static constexpr size_t kMaxElements = 1u << 20;

  ReplyParser();
  ~ReplyParser();
  ReplyParser(const ReplyParser&) = delete;
  ReplyParser& operator=(const ReplyParser&) = delete;

  // Appends received bytes. False on a protocol error (the connection must be dropped).
  bool feed(const char* data, size_t size);
  // The next complete reply, or null when more bytes are needed (or on a protocol error: see failed()).
  // The returned reply (and every reply returned before it) is invalidated by the next call to next().
  const Reply* next();
  bool failed() const { return failed_; }
  const char* error() const;
  // Drops buffered bytes and rewinds the arena (after a reconnect).
  void reset();

  // Bytes the arena holds (for tests: stays flat once warmed up).
  size_t arena_capacity() const;

  // Arena allocation, used by the hiredis callbacks (reply.cc).
  void* allocate(size_t size, size_t align);

 private:
  struct Chunk {
    std::unique_ptr<std::byte[]> data;
    size_t size = 0;
  };
  void rewind();

  void* reader_ = nullptr;  // redisReader*, kept out of this header
  std::vector<Chunk> chunks_;
  size_t chunk_ = 0;        // chunk being filled
  size_t used_ = 0;         // bytes used in it
  size_t reply_bytes_ = 0;  // arena bytes of the reply being parsed
  bool failed_ = false;
};

}  // namespace portico::redis
