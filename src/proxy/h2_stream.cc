#include "proxy/h2_stream.h"

#include <nghttp2/nghttp2.h>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <charconv>
#include <cstring>

#include "proxy/h2_connection.h"
#include "proxy/head_writer.h"
#include "proxy/session.h"

namespace portico::proxy {

namespace asio = boost::asio;

H2Stream::H2Stream(std::shared_ptr<H2Connection> connection, int32_t id, bool head_request, Body body)
    : conn_(std::move(connection)),
      executor_(conn_->executor()),
      id_(id),
      head_request_(head_request),
      body_info_(body),
      body_end_(body.ended) {}

H2Stream::~H2Stream() {
  close();
  conn_->release(id_);
}

void H2Stream::post(Handler handler, boost::system::error_code ec, size_t n) {
  asio::post(executor_, [h = std::move(handler), ec, n]() mutable { h(ec, n); });
}

void H2Stream::async_read_some(asio::mutable_buffer buffer, Handler handler) {
  if (read_handler_) {
    post(std::move(handler), asio::error::in_progress, 0);
    return;
  }
  read_handler_ = std::move(handler);
  read_buffer_ = buffer;
  try_read();
}

void H2Stream::try_read() {
  if (!read_handler_) return;
  if (broken_ || (closed_ && !body_end_)) {
    post(std::move(read_handler_), asio::error::connection_reset, 0);
    return;
  }
  char* dst = static_cast<char*>(read_buffer_.data());
  const size_t cap = read_buffer_.size();
  size_t n = 0;
  size_t payload = 0;
  while (n < cap) {
    if (framing_begin_ < framing_.size()) {
      const size_t k = std::min(cap - n, framing_.size() - framing_begin_);
      std::memcpy(dst + n, framing_.data() + framing_begin_, k);
      n += k;
      framing_begin_ += k;
      continue;
    }
    framing_.clear();
    framing_begin_ = 0;
    if (body_info_.chunked) {
      if (chunk_left_ == 0 && !body_.empty()) {
        // Whatever payload is buffered becomes one chunk.
        chunk_left_ = body_.size();
        char hex[24];
        auto [end, ec] = std::to_chars(hex, hex + sizeof hex, chunk_left_, 16);
        (void)ec;
        framing_.assign(hex, end);
        framing_ += "\r\n";
        continue;
      }
      if (chunk_left_ > 0) {
        const size_t k = static_cast<size_t>(std::min<uint64_t>(cap - n, chunk_left_));
        std::memcpy(dst + n, body_.data(), k);
        body_.erase(0, k);
        chunk_left_ -= k;
        n += k;
        payload += k;
        if (chunk_left_ == 0) framing_ = "\r\n";
        continue;
      }
      if (body_end_ && !last_chunk_sent_) {
        last_chunk_sent_ = true;
        framing_ = "0\r\n\r\n";
        continue;
      }
      break;
    }
    // Content-Length: the last byte waits for END_STREAM, so a body longer or shorter than declared never
    // reaches the origin complete (nghttp2 resets the stream on the mismatch).
    size_t avail = body_.size();
    if (!body_end_ && body_info_.has_content_length && avail > 0 &&
        body_read_ + avail >= body_info_.content_length) {
      --avail;
    }
    const size_t k = std::min(cap - n, avail);
    if (k == 0) break;
    std::memcpy(dst + n, body_.data(), k);
    body_.erase(0, k);
    body_read_ += k;
    n += k;
    payload += k;
  }
  if (payload > 0) {
    conn_->codec().consume(id_, payload);
    conn_->wake_writer();
  }
  if (n > 0) {
    post(std::move(read_handler_), {}, n);
  } else if (body_end_ && (!body_info_.chunked || last_chunk_sent_) && body_.empty()) {
    post(std::move(read_handler_), asio::error::eof, 0);
  }
}

void H2Stream::on_data(std::string_view data) {
  if (broken_) return;
  body_.append(data);
  try_read();
}

void H2Stream::on_end() {
  body_end_ = true;
  try_read();
}

void H2Stream::on_closed(uint32_t error_code) {
  closed_ = true;
  const bool complete = out_ == Out::done && error_code == 0;
  if (!complete) broken_ = true;
  pending_.clear();
  if (read_handler_) post(std::move(read_handler_), asio::error::connection_reset, 0);
  if (write_handler_) post(std::move(write_handler_), asio::error::connection_reset, 0);
  // The client gave up on the request (or the connection ended): its Session stops, and its upstream
  // connection is closed, not pooled.
  if (!complete) {
    if (std::shared_ptr<Session> s = session_.lock()) s->force_close();
  }
}

bool H2Stream::writable() const {
  const http2::ServerCodec& codec = conn_->codec();
  return codec.queued(id_) <= kMaxQueued && codec.queued_total() <= kMaxConnectionQueued;
}

void H2Stream::on_drained() {
  if (!write_handler_ || !writable()) return;
  if (!pending_.empty()) {
    // The parked write's bytes go into the codec only now that the connection is under its bound.
    std::vector<std::string_view> pieces = std::move(pending_);
    pending_.clear();
    for (std::string_view piece : pieces) translate(piece);
    conn_->wake_writer();
    if (!writable()) return;
  }
  post(std::move(write_handler_), {}, write_size_);
}

void H2Stream::async_wait_writable(size_t n, Handler handler) {
  if (broken_ || closed_) {
    pending_.clear();
    post(std::move(handler), asio::error::broken_pipe, 0);
    return;
  }
  if (pending_.empty() && writable()) {
    post(std::move(handler), {}, n);
    return;
  }
  write_size_ = n;
  write_handler_ = std::move(handler);
}

bool H2Stream::write_now(const std::string_view* pieces, size_t count, boost::system::error_code& ec) {
  for (size_t i = 0; i < count; ++i) {
    if (!pieces[i].empty()) write(pieces[i]);
  }
  if (broken_ || closed_) {
    pending_.clear();
    ec = asio::error::broken_pipe;
    return true;
  }
  return pending_.empty() && writable();
}

void H2Stream::cancel() {
  pending_.clear();  // the caller's buffer is not ours once its operation ends
  if (read_handler_) post(std::move(read_handler_), asio::error::operation_aborted, 0);
  if (write_handler_) post(std::move(write_handler_), asio::error::operation_aborted, 0);
}

void H2Stream::close() {
  if (out_ != Out::done) fail(NGHTTP2_INTERNAL_ERROR);
  cancel();
}

void H2Stream::fail(uint32_t error_code) {
  if (broken_) return;
  broken_ = true;
  if (!closed_) {
    conn_->codec().reset(id_, error_code);
    conn_->wake_writer();
  }
}

void H2Stream::write(std::string_view bytes) {
  if (broken_ || closed_) return;
  if (!pending_.empty() || !writable()) {
    // Over the bound: the bytes stay in the caller's buffer (valid until its write completes) rather than
    // in the codec, so a connection holds kMaxConnectionQueued plus one write at most.
    pending_.push_back(bytes);
    return;
  }
  translate(bytes);
  conn_->wake_writer();
}

void H2Stream::translate(std::string_view bytes) {
  http2::ServerCodec& codec = conn_->codec();
  while (!bytes.empty() && !broken_) {
    switch (out_) {
      case Out::head: {
        if (!response_) response_ = std::make_unique<http::ResponseHead>();  // text heads only (rare)
        head_buf_.append(bytes);
        bytes = {};
        http::ParseLimits limits;
        limits.max_head_size = 1 << 20;  // Portico's own output: the origin's head was bounded on its way in
        http::ParseResult r =
            http::parse_response(head_buf_.data(), head_buf_.size(),
                                 head_request_ ? http::Method::HEAD : http::Method::GET, limits, *response_);
        if (r.status == http::ParseStatus::incomplete) break;
        std::vector<std::pair<std::string, std::string>> fields;
        if (r.status == http::ParseStatus::error) {
          // More fields than http::kMaxHeaders (the origin's plus the plugins'): what HTTP/1.1 sends as is.
          if (!parse_in_slices(fields)) {
            fail(NGHTTP2_INTERNAL_ERROR);
            break;
          }
        } else {
          write_h2_response_fields(fields, *response_);
        }
        std::string rest = head_buf_.substr(response_->head_size);
        submit_head(std::move(fields));
        head_buf_.clear();
        if (!rest.empty()) {
          if (out_ == Out::head) {
            translate(rest);  // after a 1xx: the next head
          } else if (out_ != Out::done) {
            translate(rest);
          }
        }
        break;
      }
      case Out::length: {
        const size_t k = static_cast<size_t>(std::min<uint64_t>(bytes.size(), out_left_));
        codec.submit_data(id_, bytes.substr(0, k));
        bytes_sent_ += k;
        out_left_ -= k;
        bytes.remove_prefix(k);
        if (out_left_ == 0) {
          codec.submit_end(id_);
          out_ = Out::done;
        }
        break;
      }
      case Out::chunked: {
        http::ChunkedDecoder::Step step = decoder_.next(bytes);
        bytes.remove_prefix(step.consumed);
        if (step.status == http::ChunkedDecoder::Status::error) {
          fail(NGHTTP2_INTERNAL_ERROR);
        } else if (step.status == http::ChunkedDecoder::Status::data) {
          codec.submit_data(id_, step.data);
          bytes_sent_ += step.data.size();
        } else if (step.status == http::ChunkedDecoder::Status::done) {
          for (const http2::Field& f : trailers_) bytes_sent_ += f.name.size() + f.value.size();
          codec.submit_end(id_, trailers_.empty() ? nullptr : &trailers_);
          out_ = Out::done;
        }
        break;
      }
      case Out::done:
        bytes = {};
        break;
    }
  }
}

bool H2Stream::parse_in_slices(std::vector<std::pair<std::string, std::string>>& fields) {
  const size_t end = head_buf_.find("\r\n\r\n");
  const size_t line_end = head_buf_.find("\r\n");
  if (end == std::string::npos || line_end == end) return false;
  const std::string_view status_line(head_buf_.data(), line_end + 2);
  std::string_view lines(head_buf_.data() + line_end + 2, end + 2 - (line_end + 2));
  constexpr size_t kSlice = http::kMaxHeaders / 2;
  http::ParseLimits limits;
  limits.max_head_size = 1 << 20;
  http::BodyFraming framing = http::BodyFraming::none;
  uint64_t content_length = 0;
  bool framed = false;
  std::string slice;
  while (!lines.empty()) {
    // Up to kSlice whole field lines (Portico's writer never folds lines).
    size_t cut = 0;
    for (size_t n = 0; n < kSlice && cut < lines.size(); ++n) {
      const size_t eol = lines.find("\r\n", cut);
      if (eol == std::string_view::npos) return false;
      cut = eol + 2;
    }
    slice.assign(status_line);
    slice.append(lines.substr(0, cut));
    slice += "\r\n";
    lines.remove_prefix(cut);
    http::ParseResult r =
        http::parse_response(slice.data(), slice.size(),
                             head_request_ ? http::Method::HEAD : http::Method::GET, limits, *response_);
    if (r.status != http::ParseStatus::complete) return false;
    write_h2_response_fields(fields, *response_);
    // A slice without Content-Length or Transfer-Encoding reads as close-delimited: the framing is the
    // one slice that has one.
    if (response_->framing == http::BodyFraming::content_length ||
        response_->framing == http::BodyFraming::chunked) {
      if (framed) return false;
      framed = true;
      framing = response_->framing;
      content_length = response_->content_length;
    } else if (!framed) {
      framing = response_->framing;
    }
  }
  response_->header_count = 0;  // the views point into the slices, gone now
  response_->framing = framing;
  response_->content_length = content_length;
  response_->head_size = end + 4;
  return true;
}

void H2Stream::submit_head(std::vector<std::pair<std::string, std::string>> pairs) {
  http2::ServerCodec& codec = conn_->codec();
  std::vector<http2::Field> fields;
  fields.reserve(pairs.size());
  for (auto& [n, v] : pairs) fields.push_back(http2::Field{std::move(n), std::move(v)});
  if (response_->status == 101) {
    // HTTP/2 has no Upgrade (RFC 9113 8.6); the request path never upgrades a stream, so this is a bug.
    fail(NGHTTP2_INTERNAL_ERROR);
    return;
  }
  bytes_sent_ += sizeof ":status" - 1 + 3;
  for (const http2::Field& f : fields) bytes_sent_ += f.name.size() + f.value.size();
  if (response_->status < 200) {
    codec.submit_informational(id_, response_->status, fields);
    return;  // the final head follows
  }
  if (broken_) return;
  const bool end = !expect_body(response_->status, response_->framing, response_->content_length);
  if (broken_) return;
  if (!codec.submit_response(id_, response_->status, fields, end)) fail(NGHTTP2_INTERNAL_ERROR);
}

bool H2Stream::expect_body(int status, http::BodyFraming framing, uint64_t content_length) {
  bool end = head_request_ || is_bodiless_status(status);
  if (!end && framing == http::BodyFraming::content_length) {
    end = content_length == 0;
    out_left_ = content_length;
    out_ = Out::length;
  } else if (!end && framing == http::BodyFraming::chunked) {
    decoder_.reset();
    out_ = Out::chunked;
  } else if (!end && framing == http::BodyFraming::until_close) {
    // The Session frames a body of unknown length as chunked for an HTTP/1.1 client (which the stream's
    // head says it is): close-delimited output here would be a bug, and its end indistinguishable from a
    // failure, so it is refused rather than ended as if complete.
    fail(NGHTTP2_INTERNAL_ERROR);
    return false;
  } else {
    end = true;  // framing none: no body
  }
  if (end) out_ = Out::done;
  return !end;
}

void H2Stream::start_response(const http::ResponseHead& response, const ClientResponseParams& params) {
  if (broken_ || closed_ || out_ != Out::head || !head_buf_.empty() || response.status < 200 ||
      !pending_.empty()) {
    fail(NGHTTP2_INTERNAL_ERROR);  // not where a final head goes: a bug, never sent half-translated
    return;
  }
  H2ResponseHead& head = conn_->head_scratch();
  write_h2_client_response_head(head, response, params);
  http::BodyFraming framing = http::BodyFraming::none;
  switch (params.body) {
    case OutFraming::none:
      break;
    case OutFraming::content_length:
      framing = http::BodyFraming::content_length;
      break;
    case OutFraming::chunked:
      framing = http::BodyFraming::chunked;  // the Session writes chunks: decoded into DATA
      break;
    case OutFraming::until_close:
      framing = http::BodyFraming::until_close;
      break;
  }
  const bool end = !expect_body(head.status, framing, head.content_length);
  if (broken_) return;
  bytes_sent_ += head.size();
  if (!conn_->codec().submit_response(id_, head.status, head.fields.data(), head.fields.size(), end)) {
    fail(NGHTTP2_INTERNAL_ERROR);
  }
  conn_->wake_writer();
}

}  // namespace portico::proxy
