// Private to src/store: encoding and decoding of the etcd JSON gateway's wire format.
//
// The gateway is grpc-gateway's proto3 JSON mapping: bytes fields are base64, int64/uint64 fields are JSON
// strings ("revision":"12"), fields holding their default value (0, false, empty) are left out, enums are
// names ("MOD", "DELETE"). Every reader here therefore treats a missing field as its default, and accepts
// numbers as well as strings for integers.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "store/etcd_client.h"

namespace portico::store::detail {

using Json = nlohmann::json;

std::string base64_encode(std::string_view in);
// False on a character outside the standard alphabet or a bad length; `out` is then unspecified.
bool base64_decode(std::string_view in, std::string& out);

// Integer fields: absent = 0; "12" and 12 both read as 12; anything else reads as 0.
int64_t get_i64(const Json& obj, const char* name);
uint64_t get_u64(const Json& obj, const char* name);
bool get_bool(const Json& obj, const char* name);
std::string get_string(const Json& obj, const char* name);
// A base64 bytes field; false if present and not valid base64.
bool get_bytes(const Json& obj, const char* name, std::string& out);

// obj["header"], or an all-zero header if absent.
ResponseHeader parse_header(const Json& obj);
// False on invalid base64.
bool parse_kv(const Json& obj, KeyValue& out);
bool parse_kvs(const Json& array, std::vector<KeyValue>& out);

// The int64 encoding the gateway accepts without loss of precision.
inline std::string i64_string(int64_t v) {
  return std::to_string(v);
}

}  // namespace portico::store::detail
