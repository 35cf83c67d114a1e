// Cost per call of the Redis client's codec: encoding a limit-count style EVALSHA and parsing its reply,
// ours (RESP writer into a reused buffer, hiredis' reader building replies on an arena) against hiredis'
// defaults (redisFormatCommandArgv, redisReader with malloc'd redisReply objects).
#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>

#include <string>
#include <vector>

#include "redis/reply.h"
#include "redis/resp.h"

namespace {

using namespace portico::redis;

const std::string_view kArgv[] = {"EVALSHA", "e0e1f9fabfc9d4800c877a703b823ac0578ff8db",
                                  "1",       "plugin-limit-count{route-1:127.0.0.1}",
                                  "100",     "60",
                                  "1"};

void BM_FormatOwn(benchmark::State& state) {
  std::string out;
  for (auto _ : state) {
    out.clear();
    append_command(out, kArgv);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_FormatOwn);

void BM_FormatHiredis(benchmark::State& state) {
  const char* argv[7];
  size_t lens[7];
  for (int i = 0; i < 7; ++i) {
    argv[i] = kArgv[i].data();
    lens[i] = kArgv[i].size();
  }
  for (auto _ : state) {
    char* cmd = nullptr;
    int n = redisFormatCommandArgv(&cmd, 7, argv, lens);
    benchmark::DoNotOptimize(n);
    free(cmd);
  }
}
BENCHMARK(BM_FormatHiredis);

// The limit-count script's reply: {remaining, reset}; and a plain integer (INCR).
const std::string kArrayReply = "*2\r\n:99\r\n:60\r\n";
const std::string kIntReply = ":42\r\n";

void BM_ParseArena(benchmark::State& state, const std::string& wire) {
  ReplyParser parser;
  for (auto _ : state) {
    parser.feed(wire.data(), wire.size());
    const Reply* r = parser.next();
    benchmark::DoNotOptimize(r);
  }
}
BENCHMARK_CAPTURE(BM_ParseArena, array2, kArrayReply);
BENCHMARK_CAPTURE(BM_ParseArena, integer, kIntReply);

void BM_ParseHiredisDefault(benchmark::State& state, const std::string& wire) {
  redisReader* reader = redisReaderCreate();
  for (auto _ : state) {
    redisReaderFeed(reader, wire.data(), wire.size());
    void* r = nullptr;
    redisReaderGetReply(reader, &r);
    benchmark::DoNotOptimize(r);
    freeReplyObject(r);
  }
  redisReaderFree(reader);
}
BENCHMARK_CAPTURE(BM_ParseHiredisDefault, array2, kArrayReply);
BENCHMARK_CAPTURE(BM_ParseHiredisDefault, integer, kIntReply);

// One call's codec work as the client does it: encode + parse.
void BM_CallCodecOwn(benchmark::State& state) {
  std::string out;
  ReplyParser parser;
  for (auto _ : state) {
    out.clear();
    append_command(out, kArgv);
    parser.feed(kArrayReply.data(), kArrayReply.size());
    benchmark::DoNotOptimize(parser.next());
  }
}
BENCHMARK(BM_CallCodecOwn);

void BM_CallCodecHiredisDefault(benchmark::State& state) {
  const char* argv[7];
  size_t lens[7];
  for (int i = 0; i < 7; ++i) {
    argv[i] = kArgv[i].data();
    lens[i] = kArgv[i].size();
  }
  redisReader* reader = redisReaderCreate();
  for (auto _ : state) {
    char* cmd = nullptr;
    benchmark::DoNotOptimize(redisFormatCommandArgv(&cmd, 7, argv, lens));
    free(cmd);
    redisReaderFeed(reader, kArrayReply.data(), kArrayReply.size());
    void* r = nullptr;
    redisReaderGetReply(reader, &r);
    freeReplyObject(r);
  }
  redisReaderFree(reader);
}
BENCHMARK(BM_CallCodecHiredisDefault);

}  // namespace

BENCHMARK_MAIN();
