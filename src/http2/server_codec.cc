#include "http2/server_codec.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include "base/time.h"
#include "http2/recycling_mem.h"

namespace portico::http2 {

struct ServerCodec::NvList {
  std::vector<nghttp2_nv> v;
};

namespace {

// The opaque data of the PING that follows the shutdown notice.
const uint8_t kNoticePing[8] = {'p', 'o', 'r', 't', 'i', 'c', 'o', '!'};

ServerCodec& self(void* user_data) {
  return *static_cast<ServerCodec*>(user_data);
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

// NGHTTP2_NV_FLAG_NONE: nghttp2 copies names and values when a HEADERS or trailer frame is submitted. The
// callers rely on it (proxy::H2ResponseHead is one scratch per connection, reused by the next stream's head
// before the first is on the wire): never switch to the NO_COPY flags here.
nghttp2_nv nv(std::string_view n, std::string_view v) {
  return nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                    NGHTTP2_NV_FLAG_NONE};
}

// A status code as text, without std::to_string's allocation.
std::string_view status_text(int status, char (&buf)[12]) {
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, status);
  (void)ec;
  return std::string_view(buf, static_cast<size_t>(end - buf));
}

int cb_begin_frame(nghttp2_session*, const nghttp2_frame_hd* hd, void* u) {
  return self(u).on_begin_frame(hd);
}
int cb_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* u) {
  return self(u).on_begin_headers(frame);
}
int cb_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
              const uint8_t* value, size_t valuelen, uint8_t, void* u) {
  return self(u).on_header(frame, std::string_view(reinterpret_cast<const char*>(name), namelen),
                           std::string_view(reinterpret_cast<const char*>(value), valuelen));
}
int cb_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* u) {
  return self(u).on_frame_recv(frame);
}
int cb_data_chunk(nghttp2_session*, uint8_t, int32_t id, const uint8_t* data, size_t len, void* u) {
  return self(u).on_data_chunk(id, data, len);
}
int cb_stream_close(nghttp2_session*, int32_t id, uint32_t error_code, void* u) {
  return self(u).on_close(id, error_code);
}
int cb_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* u) {
  // A GOAWAY nghttp2 sent on its own (a protocol error it found) ends the connection like ours.
  if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
    self(u).on_error_goaway_sent(frame->goaway.error_code);
  }
  if (frame->hd.type == NGHTTP2_RST_STREAM) self(u).on_rst_sent(frame->rst_stream.error_code);
  if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
      (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
    self(u).on_end_stream_sent(frame->hd.stream_id);
  }
  return 0;
}
ssize_t cb_read_data(nghttp2_session*, int32_t id, uint8_t* buf, size_t length, uint32_t* flags,
                     nghttp2_data_source*, void* u) {
  return self(u).read_data(id, buf, length, flags);
}

}  // namespace

bool ServerCodec::Window::add(uint32_t limit) {
  const auto now = base::coarse_monotonic();
  if (now - start >= std::chrono::seconds(1)) {
    start = now;
    count = 0;
  }
  return ++count <= limit;
}

void ServerCodec::ResetBudget::roll() {
  const auto now = base::coarse_monotonic();
  if (now - start >= std::chrono::seconds(1)) {
    start = now;
    requests = 0;
    resets = 0;
  }
}

bool ServerCodec::add_reset() {
  resets_.roll();
  ++resets_.resets;
  return resets_.resets <= resets_.requests / 2 + limits_.max_early_resets_per_second;
}

void ServerCodec::on_rst_sent(uint32_t error_code) {
  // Resets for the client's own stream errors (a malformed head, content-length against DATA, flow control)
  // count like the client's: provoking them is the same flood by other means (CVE-2025-8671).
  switch (error_code) {
    case NGHTTP2_PROTOCOL_ERROR:
    case NGHTTP2_FLOW_CONTROL_ERROR:
    case NGHTTP2_STREAM_CLOSED:
    case NGHTTP2_FRAME_SIZE_ERROR:
      if (!add_reset()) reset_flood_ = true;
      break;
    default:
      break;
  }
}

ServerCodec::ServerCodec(const ServerLimits& limits, Handler& handler)
    : limits_(limits), handler_(handler), nva_(std::make_unique<NvList>()) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_option* opt = nullptr;
  if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0) {
    throw std::bad_alloc();
  }
  nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, cb_begin_frame);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, cb_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, cb_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cb_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cb_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cb_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, cb_frame_send);
  // Request body bytes open the window only as the session forwards them (consume): the window is the
  // bound on what a client can make Portico buffer.
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_max_continuations(opt, limits_.max_continuations);
  nghttp2_option_set_stream_reset_rate_limit(opt, limits_.stream_reset_burst, limits_.stream_reset_rate);
  nghttp2_option_set_max_settings(opt, limits_.max_settings);
  nghttp2_option_set_max_outbound_ack(opt, limits_.max_outbound_ack);
  // nghttp2 allocates per stream: its memory is recycled per thread (recycling_mem.h).
  int rv = nghttp2_session_server_new3(&session_, cbs, this, opt, recycling_mem());
  nghttp2_session_callbacks_del(cbs);
  nghttp2_option_del(opt);
  if (rv != 0) throw std::bad_alloc();
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits_.max_concurrent_streams},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list_size},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, static_cast<uint32_t>(limits_.initial_window_size)},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, limits_.connection_window_size);
}

ServerCodec::~ServerCodec() {
  nghttp2_session_del(session_);
}

ServerCodec::Stream* ServerCodec::find(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : &it->second;
}

void ServerCodec::maybe_erase(int32_t id) {
  auto it = streams_.find(id);
  if (it != streams_.end() && it->second.closed && (!it->second.delivered || it->second.finished)) {
    queued_total_ -= it->second.out.size() - it->second.out_begin;
    streams_.erase(it);
  }
}

void ServerCodec::fail(uint32_t code) {
  if (failed_) return;
  failed_ = true;
  goaway_code_ = code;
  final_goaway_ = true;
  nghttp2_session_terminate_session(session_, code);
}

bool ServerCodec::receive(std::string_view bytes) {
  if (failed_) return false;
  ssize_t rv =
      nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  if (rv < 0) {
    uint32_t code = pending_calm_ != 0          ? pending_calm_
                    : rv == NGHTTP2_ERR_FLOODED ? static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM)
                                                : static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR);
    fail(code);
    return false;
  }
  return !failed_;
}

void ServerCodec::produce(std::string& out, size_t max) {
  while (out.size() < max) {
    const uint8_t* data = nullptr;
    ssize_t n = nghttp2_session_mem_send(session_, &data);
    if (n < 0) {
      failed_ = true;
      break;
    }
    if (n == 0) {
      if (!reset_flood_ || failed_) break;
      fail(NGHTTP2_ENHANCE_YOUR_CALM);  // queues the GOAWAY: the next round sends it
      continue;
    }
    out.append(reinterpret_cast<const char*>(data), static_cast<size_t>(n));
  }
}

bool ServerCodec::want_write() const {
  return nghttp2_session_want_write(session_) != 0;
}

bool ServerCodec::want_read() const {
  return !failed_ && nghttp2_session_want_read(session_) != 0;
}

size_t ServerCodec::open_streams() const {
  size_t n = 0;
  for (const auto& [id, s] : streams_) n += s.closed ? 0 : 1;
  return n;
}

int ServerCodec::on_begin_frame(const void* p) {
  const auto* hd = static_cast<const nghttp2_frame_hd*>(p);
  bool control = false;
  switch (hd->type) {
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
    case NGHTTP2_PRIORITY:
    case NGHTTP2_RST_STREAM:
      control = true;
      break;
    case NGHTTP2_WINDOW_UPDATE:
      // Not counted: a client with a small window sends one per DATA frame it reads, so a fast download
      // would look like a flood. nghttp2 refuses zero increments and overflow (the abusive forms), and
      // each one costs a lookup at most (nginx does not count them either).
    case NGHTTP2_DATA:
      control = hd->length == 0 && (hd->flags & NGHTTP2_FLAG_END_STREAM) == 0;
      break;
    case NGHTTP2_HEADERS:
      in_header_block_ = (hd->flags & NGHTTP2_FLAG_END_HEADERS) == 0;
      break;
    default:
      break;
  }
  if (hd->type != NGHTTP2_HEADERS && hd->type != NGHTTP2_CONTINUATION) in_header_block_ = false;
  if (hd->type == NGHTTP2_CONTINUATION && (hd->flags & NGHTTP2_FLAG_END_HEADERS) != 0) {
    in_header_block_ = false;
  }
  if (control && !control_.add(limits_.max_control_frames_per_second)) {
    pending_calm_ = NGHTTP2_ENHANCE_YOUR_CALM;
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

int ServerCodec::on_begin_headers(const void* p) {
  const auto* frame = static_cast<const nghttp2_frame*>(p);
  if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;
  Stream& s = streams_[frame->hd.stream_id];
  // Streams the client reset still count until their session is finished (rapid reset, CVE-2023-44487):
  // resetting does not make room for a new one.
  if (live_ >= limits_.max_concurrent_streams || final_goaway_) {
    s.reject = -2;
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, frame->hd.stream_id, NGHTTP2_REFUSED_STREAM);
    return 0;
  }
  s.delivered = false;
  ++live_;
  s.finished = false;
  return 0;
}

int ServerCodec::on_header(const void* p, std::string_view name, std::string_view value) {
  const auto* frame = static_cast<const nghttp2_frame*>(p);
  Stream* s = find(frame->hd.stream_id);
  // A refused stream (REFUSED_STREAM already queued) gets no more of its fields: nghttp2 still decodes the
  // block (HPACK state) but stops calling back. Rejected ones (431, PROTOCOL_ERROR) are answered once the
  // block ends, in on_frame_recv, so their callbacks go on (and return at once).
  if (s != nullptr && s->reject == -2) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  if (s == nullptr || s->reject != 0) return 0;
  // The decoded size, counted as SETTINGS_MAX_HEADER_LIST_SIZE defines it: an HPACK bomb (a small block
  // referencing a large table entry many times) is refused here, before anything is kept.
  s->header_bytes += static_cast<uint32_t>(name.size() + value.size() + 32);
  ++s->header_count;
  if (s->header_bytes > limits_.max_header_list_size || s->header_count > limits_.max_header_count) {
    s->reject = frame->headers.cat == NGHTTP2_HCAT_REQUEST ? 431 : -1;
    s->request.fields.clear();
    s->cookie.clear();
    return 0;
  }
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) return 0;  // request trailers are dropped
  Request& r = s->request;
  if (!name.empty() && name[0] == ':') {
    if (name == ":method") {
      r.method = value;
    } else if (name == ":scheme") {
      r.scheme = value;
    } else if (name == ":authority") {
      r.authority = value;
    } else if (name == ":path") {
      r.path = value;
    } else {
      s->reject = -1;  // :protocol (extended CONNECT is not enabled) or anything else
    }
    return 0;
  }
  if (name == "cookie") {
    // RFC 9113 8.2.3: crumbs are joined with "; " for an HTTP/1.1 hop.
    if (!s->cookie.empty()) s->cookie += "; ";
    s->cookie += value;
    return 0;
  }
  r.fields.push_back(Field{std::string(name), std::string(value)});
  return 0;
}

int ServerCodec::on_frame_recv(const void* p) {
  const auto* frame = static_cast<const nghttp2_frame*>(p);
  const int32_t id = frame->hd.stream_id;
  switch (frame->hd.type) {
    case NGHTTP2_SETTINGS:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) settings_received_ = true;
      return 0;
    case NGHTTP2_PING:
      if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0 && notice_sent_ &&
          std::memcmp(frame->ping.opaque_data, kNoticePing, 8) == 0) {
        notice_acked_ = true;
      }
      return 0;
    case NGHTTP2_RST_STREAM: {
      Stream* s = find(id);
      if (s != nullptr && !s->responded && !add_reset()) {
        pending_calm_ = NGHTTP2_ENHANCE_YOUR_CALM;
        return NGHTTP2_ERR_CALLBACK_FAILURE;
      }
      return 0;
    }
    case NGHTTP2_DATA: {
      Stream* s = find(id);
      if (s != nullptr && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) s->remote_ended = true;
      if (s != nullptr && s->delivered && !s->closed && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0) {
        handler_.on_end_stream(id);
      }
      return 0;
    }
    case NGHTTP2_HEADERS:
      break;
    default:
      return 0;
  }
  in_header_block_ = false;
  Stream* s = find(id);
  if (s == nullptr) return 0;
  const bool end_stream = (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
  if (end_stream) s->remote_ended = true;
  if (frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
    if (s->reject == -1 && !s->closed) {
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
    } else if (end_stream && s->delivered && !s->closed) {
      handler_.on_end_stream(id);
    }
    return 0;
  }
  if (s->reject == -2) return 0;
  Request& r = s->request;
  if (s->reject == 0) {
    std::string_view host;
    for (const Field& f : r.fields) {
      if (f.name == "host") {
        if (!host.empty() && host != f.value) s->reject = -1;
        host = f.value;
      }
    }
    // Both present and different: which one names the origin is ambiguous (RFC 9113 8.3.1), so neither.
    if (!host.empty() && !r.authority.empty() && !iequals(host, r.authority)) s->reject = -1;
    if (r.authority.empty()) r.authority = host;
  }
  if (s->reject == 431) {
    // The head is too large: answered (RFC 9113 10.5.1), never delivered.
    s->responded = true;
    static const std::vector<Field> kNone;
    make_nva("431", kNone);
    nghttp2_submit_response(session_, id, nva_->v.data(), nva_->v.size(), nullptr);
    if (!end_stream) nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
    return 0;
  }
  if (s->reject != 0) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
    return 0;
  }
  r.fields.erase(
      std::remove_if(r.fields.begin(), r.fields.end(), [](const Field& f) { return f.name == "host"; }),
      r.fields.end());
  if (!s->cookie.empty()) r.fields.push_back(Field{"cookie", std::move(s->cookie)});
  for (const Field& f : r.fields) {
    if (f.name == "content-length") {
      // nghttp2 checked it is one valid number and will check it against the DATA received.
      uint64_t v = 0;
      std::from_chars(f.value.data(), f.value.data() + f.value.size(), v);
      r.has_content_length = true;
      r.content_length = v;
    }
  }
  r.end_stream = end_stream;
  s->delivered = true;
  ++requests_;
  resets_.roll();
  ++resets_.requests;
  handler_.on_request(id, r);
  r.fields.clear();
  r.fields.shrink_to_fit();
  if (requests_ >= limits_.max_requests && !final_goaway_) goaway(NGHTTP2_NO_ERROR);
  return 0;
}

int ServerCodec::on_data_chunk(int32_t id, const uint8_t* data, size_t len) {
  Stream* s = find(id);
  if (s == nullptr || !s->delivered || s->closed || s->finished) {
    nghttp2_session_consume(session_, id, len);  // nobody reads it: the connection window gets it back
    return 0;
  }
  s->unconsumed += len;
  handler_.on_data(id, std::string_view(reinterpret_cast<const char*>(data), len));
  return 0;
}

int ServerCodec::on_close(int32_t id, uint32_t error_code) {
  Stream* s = find(id);
  if (s == nullptr) return 0;
  s->closed = true;
  // A closed stream sends nothing more: its queued response bytes go now.
  queued_total_ -= s->out.size() - s->out_begin;
  s->out.clear();
  s->out.shrink_to_fit();
  s->out_begin = 0;
  if (s->unconsumed > 0) {
    nghttp2_session_consume_connection(session_, s->unconsumed);
    s->unconsumed = 0;
  }
  if (s->delivered && !s->finished) {
    if (error_code == NGHTTP2_NO_ERROR && s->end_sent && s->remote_ended) {
      // Completed on the wire: the client saw the whole response and may open the next stream at once,
      // before this stream's session has unwound (it ends on a later turn of the loop). Only a stream the
      // client reset keeps its slot until its session is finished (rapid reset); this one frees it now, or
      // a client keeping N < MAX_CONCURRENT_STREAMS requests in flight would be refused streams.
      s->slot_freed = true;
      --live_;
    }
    handler_.on_stream_close(id, error_code);
  } else if (!s->delivered && s->reject != -2) {
    --live_;
  }
  maybe_erase(id);
  return 0;
}

long ServerCodec::read_data(int32_t id, uint8_t* buf, size_t length, uint32_t* flags) {
  Stream* s = find(id);
  if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
  const size_t avail = s->out.size() - s->out_begin;
  const size_t n = std::min(length, avail);
  if (n == 0 && !s->end) {
    s->deferred = true;
    return NGHTTP2_ERR_DEFERRED;
  }
  std::memcpy(buf, s->out.data() + s->out_begin, n);
  s->out_begin += n;
  queued_total_ -= n;
  data_framed_ += n;
  if (s->out_begin == s->out.size()) {
    s->out.clear();
    s->out_begin = 0;
  } else if (s->out_begin >= 64 * 1024) {
    s->out.erase(0, s->out_begin);
    s->out_begin = 0;
  }
  if (s->out.empty() && s->end) {
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (s->has_trailers) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      make_nva("", s->trailers);
      nghttp2_submit_trailer(session_, id, nva_->v.data(), nva_->v.size());
    }
  }
  return static_cast<long>(n);
}

bool ServerCodec::submit_response(int32_t id, int status, const std::vector<Field>& fields, bool end_stream) {
  Stream* s = find(id);
  if (s == nullptr || s->closed) return false;
  s->responded = true;
  char buf[12];
  make_nva(status_text(status, buf), fields);
  nghttp2_data_provider prd{};
  prd.read_callback = cb_read_data;
  return nghttp2_submit_response(session_, id, nva_->v.data(), nva_->v.size(), end_stream ? nullptr : &prd) ==
         0;
}

bool ServerCodec::submit_response(int32_t id, int status, const FieldView* fields, size_t count,
                                  bool end_stream) {
  Stream* s = find(id);
  if (s == nullptr || s->closed) return false;
  s->responded = true;
  char buf[12];
  make_nva(status_text(status, buf), fields, count);
  nghttp2_data_provider prd{};
  prd.read_callback = cb_read_data;
  return nghttp2_submit_response(session_, id, nva_->v.data(), nva_->v.size(), end_stream ? nullptr : &prd) ==
         0;
}

// The name/value pointers refer to `status` and the fields: both must outlive the submission (nghttp2
// copies them then, NGHTTP2_NV_FLAG_NONE).
void ServerCodec::make_nva(std::string_view status, const std::vector<Field>& fields) {
  nva_->v.clear();
  if (!status.empty()) nva_->v.push_back(nv(":status", status));
  for (const Field& f : fields) nva_->v.push_back(nv(f.name, f.value));
}

void ServerCodec::make_nva(std::string_view status, const FieldView* fields, size_t count) {
  nva_->v.clear();
  if (!status.empty()) nva_->v.push_back(nv(":status", status));
  for (size_t i = 0; i < count; ++i) nva_->v.push_back(nv(fields[i].name, fields[i].value));
}

bool ServerCodec::submit_informational(int32_t id, int status, const std::vector<Field>& fields) {
  Stream* s = find(id);
  if (s == nullptr || s->closed || s->responded) return false;
  char buf[12];
  make_nva(status_text(status, buf), fields);
  return nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, id, nullptr, nva_->v.data(), nva_->v.size(),
                                nullptr) >= 0;
}

void ServerCodec::submit_data(int32_t id, std::string_view data) {
  Stream* s = find(id);
  if (s == nullptr || s->closed || s->end) return;
  s->out.append(data);
  queued_total_ += data.size();
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
}

void ServerCodec::submit_end(int32_t id, const std::vector<Field>* trailers) {
  Stream* s = find(id);
  if (s == nullptr || s->closed || s->end) return;
  s->end = true;
  if (trailers != nullptr && !trailers->empty()) {
    s->has_trailers = true;
    s->trailers = *trailers;
  }
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
}

size_t ServerCodec::queued(int32_t id) const {
  auto it = streams_.find(id);
  return it == streams_.end() ? 0 : it->second.out.size() - it->second.out_begin;
}

void ServerCodec::reset(int32_t id, uint32_t error_code) {
  Stream* s = find(id);
  if (s == nullptr || s->closed) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, error_code);
}

void ServerCodec::consume(int32_t id, size_t n) {
  Stream* s = find(id);
  if (s == nullptr || s->closed || n == 0) return;
  n = std::min(n, s->unconsumed);
  s->unconsumed -= n;
  nghttp2_session_consume(session_, id, n);
}

void ServerCodec::on_end_stream_sent(int32_t id) {
  Stream* s = find(id);
  if (s == nullptr) return;
  s->end_sent = true;
  if (s->reset_after_end && !s->closed) {
    nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
  }
}

void ServerCodec::stream_finished(int32_t id) {
  Stream* s = find(id);
  if (s == nullptr || s->finished) return;
  s->finished = true;
  if (s->delivered && !s->slot_freed) --live_;
  if (!s->closed && !s->remote_ended) {
    // Answered before the request ended (a 413, a 401 before the body, ...): once the response is out,
    // RST_STREAM NO_ERROR tells the client to stop sending (RFC 9113 8.1), instead of Portico reading and
    // dropping the rest of its body.
    if (s->end_sent) {
      nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, NGHTTP2_NO_ERROR);
    } else {
      s->reset_after_end = true;
    }
  }
  maybe_erase(id);
}

void ServerCodec::shutdown_notice() {
  if (final_goaway_ || notice_sent_) return;
  notice_sent_ = true;
  nghttp2_submit_shutdown_notice(session_);
  nghttp2_submit_ping(session_, NGHTTP2_FLAG_NONE, kNoticePing);
}

void ServerCodec::goaway(uint32_t error_code) {
  if (final_goaway_) return;
  final_goaway_ = true;
  goaway_code_ = error_code;
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(session_),
                        error_code, nullptr, 0);
}

}  // namespace portico::http2
