#include "sync/s3_client.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "base/log.h"
#include "sync/cp_http.h"

namespace portico::sync {
namespace {

std::once_flag g_curl_once;

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

std::string object_path(const std::string& key) {
  std::string path = "/";
  path += detail::url_escape(key, true);
  return path;
}

// The text of the first <tag>...</tag> in `xml` at or after `from`, entities decoded; `end` (optional) gets
// the position after the closing tag. Empty when missing.
std::string xml_text(std::string_view xml, std::string_view tag, size_t from = 0, size_t* end = nullptr) {
  std::string open = "<";
  open += tag;
  open += '>';
  std::string close = "</";
  close += tag;
  close += '>';
  size_t a = xml.find(open, from);
  if (a == std::string_view::npos) return {};
  a += open.size();
  size_t b = xml.find(close, a);
  if (b == std::string_view::npos) return {};
  if (end != nullptr) *end = b + close.size();
  std::string out;
  std::string_view raw = xml.substr(a, b - a);
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] != '&') {
      out += raw[i];
      continue;
    }
    static constexpr std::pair<std::string_view, char> kEntities[] = {
        {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
    bool done = false;
    for (const auto& [name, c] : kEntities) {
      if (raw.substr(i, name.size()) == name) {
        out += c;
        i += name.size() - 1;
        done = true;
        break;
      }
    }
    if (!done) out += '&';
  }
  return out;
}

int check_cancel(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(user)->load() ? 1 : 0;
}

}  // namespace

struct detail::S3Reply {
  long status = 0;
  std::string body;
  size_t max_bytes = 0;
  bool too_large = false;
  std::string error;  // transport failure or the S3 error, for a non-2xx answer

  bool ok() const { return error.empty() && status / 100 == 2; }
};

namespace {
size_t append_body(char* data, size_t size, size_t n, void* user) {
  auto* reply = static_cast<detail::S3Reply*>(user);
  const size_t bytes = size * n;
  try {
    if (bytes > reply->max_bytes - reply->body.size()) {
      const size_t fits = reply->max_bytes - reply->body.size();
      detail::reserve_bounded(reply->body, reply->max_bytes, reply->max_bytes);
      reply->body.append(data, fits);  // what fits (get_head uses it)
      reply->too_large = true;
      return 0;  // aborts the transfer: nothing past the bound is ever buffered
    }
    detail::reserve_bounded(reply->body, reply->body.size() + bytes, reply->max_bytes);
    reply->body.append(data, bytes);
    return bytes;
  } catch (const std::exception&) {  // never through libcurl's C frames
    reply->too_large = true;
    return 0;
  }
}
}  // namespace

void load_s3_credentials(const std::string& path, S3Options& options) {
  std::ifstream in(path);
  if (!in) {
    std::string message = "cannot read S3 credentials file ";
    message += path;
    message += ": ";
    message += std::strerror(errno);
    throw std::runtime_error(message);
  }
  auto trimmed = [](std::string s) {
    auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
    while (!s.empty() && blank(s.back())) s.pop_back();
    size_t start = 0;
    while (start < s.size() && blank(s[start])) ++start;
    return s.substr(start);
  };
  std::string access, secret;
  std::getline(in, access);
  std::getline(in, secret);
  access = trimmed(access);
  secret = trimmed(secret);
  if (access.empty() || secret.empty()) {
    std::string message = "S3 credentials file ";
    message += path;
    message += " must hold the access key on line 1 and the secret key on line 2";
    throw std::runtime_error(message);
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 0077) != 0) {
    PORTICO_LOG(warn, "S3 credentials file %s is readable by group or others (mode %o); chmod 600 it",
                path.c_str(), st.st_mode & 0777);
  }
  options.access_key = std::move(access);
  options.secret_key = std::move(secret);
}

S3Client::S3Client(S3Options options) : options_(std::move(options)) {
  std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  curl_ = curl_easy_init();
}

S3Client::~S3Client() {
  if (curl_ != nullptr) curl_easy_cleanup(static_cast<CURL*>(curl_));
}

void S3Client::cancel() {
  canceled_.store(true);
}

std::string S3Client::describe(const std::string& prefix) const {
  std::string out = options_.endpoint;
  out += '/';
  out += options_.bucket;
  out += '/';
  out += prefix;
  return out;
}

bool S3Client::request(const char* method, const std::string& path_and_query, std::string_view body,
                       size_t max_bytes, detail::S3Reply& reply, const std::string& extra_header) {
  reply = detail::S3Reply{};
  reply.max_bytes = max_bytes;
  if (canceled_.load()) {
    reply.error = "canceled";
    return false;
  }
  std::lock_guard lock(mu_);
  CURL* h = static_cast<CURL*>(curl_);
  if (h == nullptr) {
    reply.error = "curl_easy_init failed";
    return false;
  }
  curl_easy_reset(h);
  std::string url = options_.endpoint;
  while (!url.empty() && url.back() == '/') url.pop_back();
  url += '/';
  url += detail::url_escape(options_.bucket, false);
  url += path_and_query;
  std::string sigv4 = "aws:amz:";
  sigv4 += options_.region;
  sigv4 += ":s3";
  std::string content_sha = "x-amz-content-sha256: ";
  content_sha += sha256_hex(body);
  curl_slist* headers = curl_slist_append(nullptr, content_sha.c_str());
  headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip before a body
  if (!extra_header.empty()) headers = curl_slist_append(headers, extra_header.c_str());
  if (std::strcmp(method, "PUT") == 0) {
    headers = curl_slist_append(headers, "Content-Type: application/vnd.portico.snapshot");
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  if (std::strcmp(method, "GET") == 0) curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_AWS_SIGV4, sigv4.c_str());
  curl_easy_setopt(h, CURLOPT_USERNAME, options_.access_key.c_str());
  curl_easy_setopt(h, CURLOPT_PASSWORD, options_.secret_key.c_str());
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout * 1000));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout * 1000));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, check_cancel);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &canceled_);
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  CURLcode code = curl_easy_perform(h);
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &reply.status);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  curl_slist_free_all(headers);
  if (code != CURLE_OK) {
    if (reply.too_large) {
      reply.error = "object larger than ";
      reply.error += std::to_string(max_bytes);
      reply.error += " bytes";
    } else if (canceled_.load()) {
      reply.error = "canceled";
    } else {
      reply.error = error[0] != '\0' ? error : curl_easy_strerror(code);
    }
    return false;
  }
  if (reply.status / 100 != 2) {
    // S3 errors: <Error><Code>NoSuchKey</Code><Message>...</Message></Error> (HEAD-like answers have no
    // body).
    reply.error = "HTTP ";
    reply.error += std::to_string(reply.status);
    std::string code_text = xml_text(reply.body, "Code");
    std::string message = xml_text(reply.body, "Message");
    if (!code_text.empty()) {
      reply.error += ' ';
      reply.error += code_text;
    }
    if (!message.empty()) {
      reply.error += ": ";
      reply.error += message.substr(0, 200);
    }
    return false;
  }
  return true;
}

bool S3Client::put(const std::string& key, std::string_view body, std::string& error) {
  detail::S3Reply reply;
  if (request("PUT", object_path(key), body, 1 << 20, reply)) return true;
  error = reply.error;
  return false;
}

bool S3Client::get(const std::string& key, std::string& body, std::string& error, long* status,
                   size_t max_bytes) {
  detail::S3Reply reply;
  bool ok = request("GET", object_path(key), {}, max_bytes, reply);
  if (status != nullptr) *status = reply.status;
  if (!ok) {
    error = reply.error;
    return false;
  }
  body = std::move(reply.body);
  return true;
}

bool S3Client::get_head(const std::string& key, size_t bytes, std::string& body, std::string& error) {
  detail::S3Reply reply;
  std::string range = "Range: bytes=0-";
  range += std::to_string(bytes > 0 ? bytes - 1 : 0);
  // A server that ignores Range sends the whole object: it is cut off at `bytes` (and counts as read).
  bool ok = request("GET", object_path(key), {}, bytes, reply, range);
  if (!ok && !reply.too_large) {
    error = reply.error;
    return false;
  }
  body = std::move(reply.body);
  return true;
}

bool S3Client::list(const std::string& prefix, std::vector<S3Object>& objects, std::string& error,
                    int page_size) {
  objects.clear();
  page_size = std::clamp(page_size, 1, 1000);
  std::string token;
  for (int page = 0; page < 100000; ++page) {
    // Parameters in sorted order and fully encoded: this is the canonical query SigV4 signs.
    std::string query = "?";
    if (!token.empty()) {
      query += "continuation-token=";
      query += detail::url_escape(token, false);
      query += '&';
    }
    query += "list-type=2&max-keys=";
    query += std::to_string(page_size);
    query += "&prefix=";
    query += detail::url_escape(prefix, false);
    detail::S3Reply reply;
    // A page of 1000 keys is about 350 KB of XML.
    if (!request("GET", query, {}, 8 << 20, reply)) {
      error = reply.error;
      return false;
    }
    size_t pos = 0;
    while (true) {
      size_t end = 0;
      std::string contents = xml_text(reply.body, "Contents", pos, &end);
      if (end == 0) break;
      pos = end;
      S3Object o;
      o.key = xml_text(contents, "Key");
      std::string size = xml_text(contents, "Size");
      o.size = size.empty() ? 0 : std::strtoll(size.c_str(), nullptr, 10);
      if (!o.key.empty()) objects.push_back(std::move(o));
    }
    if (xml_text(reply.body, "IsTruncated") != "true") return true;
    token = xml_text(reply.body, "NextContinuationToken");
    if (token.empty()) {
      error = "a truncated listing came without NextContinuationToken";
      return false;
    }
  }
  error = "listing does not end";
  return false;
}

bool S3Client::remove(const std::string& key, std::string& error) {
  detail::S3Reply reply;
  if (request("DELETE", object_path(key), {}, 1 << 20, reply)) return true;
  error = reply.error;
  return false;
}

}  // namespace portico::sync
