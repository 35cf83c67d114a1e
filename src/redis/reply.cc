#include "redis/reply.h"

#include <hiredis/read.h>

#include <cstring>
#include <new>

namespace portico::redis {

std::string_view Reply::error_code() const {
  if (type != ReplyType::error) return {};
  size_t space = str.find(' ');
  return str.substr(0, space);
}

namespace {

// The Reply a task fills: its slot in the parent's elements (allocated with the array), or a new root.
Reply* slot_for(const redisReadTask* task) {
  if (task->parent != nullptr) {
    auto* parent = static_cast<Reply*>(task->parent->obj);
    return const_cast<Reply*>(&parent->elements[static_cast<size_t>(task->idx)]);
  }
  auto* parser = static_cast<ReplyParser*>(task->privdata);
  void* memory = parser->allocate(sizeof(Reply), alignof(Reply));
  return memory == nullptr ? nullptr : new (memory) Reply();
}

// A null return makes hiredis fail the reply (an out-of-memory error): the connection is dropped.
void* create_string(const redisReadTask* task, char* data, size_t len) {
  Reply* r = slot_for(task);
  if (r == nullptr) return nullptr;
  r->type = static_cast<ReplyType>(task->type);
  auto* parser = static_cast<ReplyParser*>(task->privdata);
  char* copy = static_cast<char*>(parser->allocate(len + 1, 1));
  if (copy == nullptr) return nullptr;
  std::memcpy(copy, data, len);
  copy[len] = '\0';
  r->str = std::string_view(copy, len);
  return r;
}

void* create_array(const redisReadTask* task, int elements) {
  if (elements > static_cast<int>(ReplyParser::kMaxElements)) return nullptr;
  Reply* r = slot_for(task);
  if (r == nullptr) return nullptr;
  r->type = ReplyType::array;
  if (elements > 0) {
    auto* parser = static_cast<ReplyParser*>(task->privdata);
    auto* children = static_cast<Reply*>(parser->allocate(sizeof(Reply) * elements, alignof(Reply)));
    if (children == nullptr) return nullptr;
    for (int i = 0; i < elements; ++i) new (&children[i]) Reply();
    r->elements = std::span<const Reply>(children, static_cast<size_t>(elements));
  }
  return r;
}

void* create_integer(const redisReadTask* task, long long value) {
  Reply* r = slot_for(task);
  if (r == nullptr) return nullptr;
  r->type = ReplyType::integer;
  r->integer = value;
  return r;
}

void* create_nil(const redisReadTask* task) {
  Reply* r = slot_for(task);
  if (r == nullptr) return nullptr;
  r->type = ReplyType::nil;
  return r;
}

void free_object(void*) {}  // the arena owns everything

redisReplyObjectFunctions functions = {create_string, create_array, create_integer, create_nil, free_object};

}  // namespace

ReplyParser::ReplyParser() {
  auto* reader = redisReaderCreateWithFunctions(&functions);
  if (reader == nullptr) throw std::bad_alloc();
  reader->privdata = this;
  reader_ = reader;
}

ReplyParser::~ReplyParser() {
  redisReaderFree(static_cast<redisReader*>(reader_));
}

bool ReplyParser::feed(const char* data, size_t size) {
  if (failed_) return false;
  auto* reader = static_cast<redisReader*>(reader_);
  if (redisReaderFeed(reader, data, size) != REDIS_OK) failed_ = true;
  // Bytes not parsed yet: a reply announced as larger than any this client asks for is a broken peer.
  if (reader->len - reader->pos > kMaxReplyBytes) failed_ = true;
  return !failed_;
}

const Reply* ReplyParser::next() {
  if (failed_) return nullptr;
  auto* reader = static_cast<redisReader*>(reader_);
  // A partly parsed reply keeps its elements in the arena across calls: rewind only between replies.
  if (reader->ridx == -1) rewind();
  void* reply = nullptr;
  if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
    failed_ = true;
    return nullptr;
  }
  return static_cast<const Reply*>(reply);
}

const char* ReplyParser::error() const {
  return static_cast<redisReader*>(reader_)->errstr;
}

void ReplyParser::reset() {
  redisReaderFree(static_cast<redisReader*>(reader_));
  reader_ = nullptr;
  auto* reader = redisReaderCreateWithFunctions(&functions);
  if (reader == nullptr) throw std::bad_alloc();
  reader->privdata = this;
  reader_ = reader;
  failed_ = false;
  rewind();
}

size_t ReplyParser::arena_capacity() const {
  size_t total = 0;
  for (const Chunk& c : chunks_) total += c.size;
  return total;
}

void ReplyParser::rewind() {
  chunk_ = 0;
  used_ = 0;
  reply_bytes_ = 0;
}

void* ReplyParser::allocate(size_t size, size_t align) {
  if (size > kMaxReplyBytes || reply_bytes_ + size > kMaxReplyBytes) return nullptr;
  reply_bytes_ += size;
  while (chunk_ < chunks_.size()) {
    size_t start = (used_ + align - 1) & ~(align - 1);
    if (start + size <= chunks_[chunk_].size) {
      used_ = start + size;
      return chunks_[chunk_].data.get() + start;
    }
    ++chunk_;
    used_ = 0;
  }
  size_t want = chunks_.empty() ? 4096 : chunks_.back().size * 2;
  if (want < size) want = size;
  chunks_.push_back({std::make_unique<std::byte[]>(want), want});
  chunk_ = chunks_.size() - 1;
  used_ = size;
  return chunks_.back().data.get();
}

}  // namespace portico::redis
