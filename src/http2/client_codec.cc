#include "http2/client_codec.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>

namespace portico::http2 {

namespace {

// 1.52 names the length type ssize_t; the callbacks keep its signatures.
using ssize = ssize_t;

std::vector<nghttp2_nv> to_nv(const Fields& fields) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(fields.size());
  for (const Field& f : fields) {
    nv.push_back(nghttp2_nv{reinterpret_cast<uint8_t*>(const_cast<char*>(f.name.data())),
                            reinterpret_cast<uint8_t*>(const_cast<char*>(f.value.data())), f.name.size(),
                            f.value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

}  // namespace

// Every callback finds its stream by id in the codec's map (never through a pointer nghttp2 keeps), so a
// stream the caller forgot cannot be reached from a frame still queued for it.
struct ClientCodec::Callbacks {
  static ClientCodec& codec(void* user) { return *static_cast<ClientCodec*>(user); }

  static int on_begin_headers(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    ClientCodec& c = codec(user);
    if (frame->hd.type != NGHTTP2_HEADERS) return 0;
    c.header_bytes_ = 0;
    c.block_status_ = 0;
    c.block_.clear();
    return 0;
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name, size_t namelen,
                       const uint8_t* value, size_t valuelen, uint8_t, void* user) {
    ClientCodec& c = codec(user);
    ClientStream* s = c.stream(frame->hd.stream_id);
    if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    // RFC 9113 6.5.2's accounting, on the decoded fields: an HPACK bomb ends here, however small its frames.
    c.header_bytes_ += namelen + valuelen + 32;
    const bool pseudo = namelen > 0 && name[0] == ':';
    if (c.header_bytes_ > c.limits_.max_header_list ||
        (!pseudo && c.block_.size() >= c.limits_.max_header_count)) {
      s->header_overflow = true;
      c.mark(*s);
      return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;  // RST_STREAM INTERNAL_ERROR; the stream closes
    }
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      // nghttp2's messaging checks already require exactly three digits.
      int status = 0;
      for (char ch : v) status = status * 10 + (ch - '0');
      c.block_status_ = status;
      return 0;
    }
    c.block_.push_back(Field{std::string(n), std::string(v)});
    return 0;
  }

  static int on_frame_recv(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    ClientCodec& c = codec(user);
    switch (frame->hd.type) {
      case NGHTTP2_HEADERS: {
        ClientStream* s = c.stream(frame->hd.stream_id);
        if (s == nullptr) return 0;
        if (!s->head_ready) {
          // Interim responses (100, 103) are not relayed: nothing of them reaches the caller.
          if (c.block_status_ >= 200 || c.block_status_ == 0) {
            s->head_ready = true;
            s->status = c.block_status_;
            s->head = std::move(c.block_);
            c.mark(*s);
          }
        } else {
          s->trailers_ready = true;
          s->trailers = std::move(c.block_);
          c.mark(*s);
        }
        c.block_.clear();
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
          s->remote_ended = true;
          c.mark(*s);
        }
        return 0;
      }
      case NGHTTP2_DATA: {
        ClientStream* s = c.stream(frame->hd.stream_id);
        if (s != nullptr && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
          s->remote_ended = true;
          c.mark(*s);
        }
        return 0;
      }
      case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK)) c.settings_received_ = true;
        return 0;
      case NGHTTP2_GOAWAY:
        c.goaway_received_ = true;
        c.goaway_last_stream_ = std::min(c.goaway_last_stream_, frame->goaway.last_stream_id);
        // Streams above the last id were not processed (RFC 9113 6.8); nghttp2 closes them with
        // REFUSED_STREAM, which on_stream_close marks.
        for (auto& [id, s] : c.streams_) {
          if (id > c.goaway_last_stream_ && !s->head_ready) {
            s->unprocessed = true;
            c.mark(*s);
          }
        }
        return 0;
      default:
        return 0;
    }
  }

  static int on_data_chunk(nghttp2_session*, uint8_t, int32_t stream_id, const uint8_t* data, size_t len,
                           void* user) {
    ClientCodec& c = codec(user);
    ClientStream* s = c.stream(stream_id);
    if (s == nullptr) {
      c.pending_connection_consume_ += len;  // nobody will read it: give its window back
      return 0;
    }
    s->data.append(reinterpret_cast<const char*>(data), len);
    c.mark(*s);
    return 0;
  }

  static int on_stream_close(nghttp2_session*, int32_t stream_id, uint32_t error_code, void* user) {
    ClientCodec& c = codec(user);
    ClientStream* s = c.stream(stream_id);
    if (s == nullptr || s->closed) return 0;
    s->closed = true;
    s->error_code = error_code;
    if (error_code == NGHTTP2_REFUSED_STREAM && !s->head_ready) s->unprocessed = true;
    if (c.open_streams_ > 0) c.open_streams_--;
    c.mark(*s);
    return 0;
  }

  static int on_frame_send(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    ClientCodec& c = codec(user);
    if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR &&
        c.connection_error_ == kNoError) {
      c.connection_error_ = frame->goaway.error_code;
    }
    if ((frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      if (ClientStream* s = c.stream(frame->hd.stream_id)) s->out_done = true;
    }
    return 0;
  }

  // The request body: what the caller queued, then END_STREAM (or trailers) once it finished.
  static ssize read_body(nghttp2_session* session, int32_t stream_id, uint8_t* buf, size_t length,
                         uint32_t* flags, nghttp2_data_source*, void* user) {
    ClientCodec& c = codec(user);
    ClientStream* s = c.stream(stream_id);
    if (s == nullptr) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    const size_t n = std::min(length, s->out_pending());
    if (n > 0) {
      std::memcpy(buf, s->out.data() + s->out_offset, n);
      s->out_offset += n;
      if (s->out_offset == s->out.size()) {
        s->out.clear();
        s->out_offset = 0;
      }
      c.mark(*s);  // room for more: a writer waiting on backpressure goes on
    }
    if (s->out_pending() == 0 && s->out_end) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (!s->out_trailers.empty()) {
        std::vector<nghttp2_nv> nv = to_nv(s->out_trailers);
        if (nghttp2_submit_trailer(session, stream_id, nv.data(), nv.size()) == 0) {
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
      }
      return static_cast<ssize>(n);
    }
    if (n == 0) {
      s->deferred = true;
      return NGHTTP2_ERR_DEFERRED;
    }
    return static_cast<ssize>(n);
  }
};

ClientCodec::ClientCodec(const ClientLimits& limits) : limits_(limits) {
  nghttp2_session_callbacks* cbs = nullptr;
  nghttp2_session_callbacks_new(&cbs);
  nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, Callbacks::on_begin_headers);
  nghttp2_session_callbacks_set_on_header_callback(cbs, Callbacks::on_header);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, Callbacks::on_frame_recv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, Callbacks::on_data_chunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs, Callbacks::on_stream_close);
  nghttp2_session_callbacks_set_on_frame_send_callback(cbs, Callbacks::on_frame_send);
  nghttp2_option* opt = nullptr;
  nghttp2_option_new(&opt);
  nghttp2_option_set_no_auto_window_update(opt, 1);
  nghttp2_option_set_peer_max_concurrent_streams(opt, limits_.initial_max_streams);
  nghttp2_option_set_max_continuations(opt, limits_.max_continuations);
  nghttp2_session_client_new2(&session_, cbs, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cbs);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, limits_.stream_window},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, limits_.max_header_list},
  };
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
  nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0,
                                        static_cast<int32_t>(limits_.connection_window));
}

ClientCodec::~ClientCodec() {
  nghttp2_session_del(session_);
}

void ClientCodec::mark(ClientStream& s) {
  if (s.changed) return;
  s.changed = true;
  changed_.push_back(s.id);
}

std::vector<int32_t> ClientCodec::take_changed() {
  std::vector<int32_t> out;
  out.swap(changed_);
  for (int32_t id : out) {
    if (ClientStream* s = stream(id)) s->changed = false;
  }
  return out;
}

ClientStream* ClientCodec::stream(int32_t id) {
  auto it = streams_.find(id);
  return it == streams_.end() ? nullptr : it->second.get();
}

void ClientCodec::fail_all(uint32_t error_code) {
  dead_ = true;
  for (auto& [id, s] : streams_) {
    if (s->closed) continue;
    s->closed = true;
    s->error_code = error_code;
    mark(*s);
  }
  open_streams_ = 0;
}

bool ClientCodec::feed(const char* data, size_t size) {
  if (dead_) return false;
  ssize rv = nghttp2_session_mem_recv(session_, reinterpret_cast<const uint8_t*>(data), size);
  if (pending_connection_consume_ > 0) {
    nghttp2_session_consume_connection(session_, pending_connection_consume_);
    pending_connection_consume_ = 0;
  }
  if (rv < 0) {
    if (connection_error_ == kNoError) {
      connection_error_ = rv == NGHTTP2_ERR_FLOODED ? 0xb /* ENHANCE_YOUR_CALM */ : kProtocolError;
    }
    fail_all(connection_error_);
    return false;
  }
  // nghttp2 answers most protocol errors itself (GOAWAY queued, on_frame_send records the code); the
  // streams fail now rather than when the GOAWAY has been written.
  if (connection_error_ != kNoError) {
    fail_all(connection_error_);
    return false;
  }
  return true;
}

bool ClientCodec::take_output(std::string& out) {
  const size_t before = out.size();
  while (true) {
    const uint8_t* p = nullptr;
    ssize n = nghttp2_session_mem_send(session_, &p);
    if (n < 0) {
      if (connection_error_ == kNoError) connection_error_ = kInternalError;
      fail_all(connection_error_);
      break;
    }
    if (n == 0) break;
    out.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
  }
  if (connection_error_ != kNoError && !dead_) fail_all(connection_error_);
  return out.size() > before;
}

bool ClientCodec::want_output() const {
  return !dead_ && nghttp2_session_want_write(session_) != 0;
}

bool ClientCodec::alive() const {
  return !dead_ && (nghttp2_session_want_read(session_) != 0 || nghttp2_session_want_write(session_) != 0);
}

uint32_t ClientCodec::peer_max_streams() const {
  return nghttp2_session_get_remote_settings(session_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

int32_t ClientCodec::submit_request(const Fields& fields, bool end_stream) {
  if (dead_ || goaway_received_) return -1;
  std::vector<nghttp2_nv> nv = to_nv(fields);
  nghttp2_data_provider provider{};
  provider.read_callback = Callbacks::read_body;
  int32_t id = nghttp2_submit_request(session_, nullptr, nv.data(), nv.size(),
                                      end_stream ? nullptr : &provider, nullptr);
  if (id < 0) return -1;
  auto s = std::make_unique<ClientStream>();
  s->id = id;
  s->out_end = end_stream;
  streams_.emplace(id, std::move(s));
  open_streams_++;
  return id;
}

bool ClientCodec::send_data(int32_t id, std::string_view data) {
  ClientStream* s = stream(id);
  if (s == nullptr || s->closed || s->out_end) return false;
  s->out.append(data);
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
  return true;
}

bool ClientCodec::end_stream(int32_t id, const Fields& trailers) {
  ClientStream* s = stream(id);
  if (s == nullptr || s->closed || s->out_end) return false;
  s->out_end = true;
  s->out_trailers = trailers;
  if (s->deferred) {
    s->deferred = false;
    nghttp2_session_resume_data(session_, id);
  }
  return true;
}

void ClientCodec::reset(int32_t id, uint32_t error_code) {
  ClientStream* s = stream(id);
  if (s == nullptr || s->closed || dead_) return;
  nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, error_code);
}

void ClientCodec::consume(int32_t id, size_t n) {
  ClientStream* s = stream(id);
  if (s == nullptr) return;
  n = std::min(n, s->data.size());
  s->data.erase(0, n);
  if (n > 0 && !dead_) nghttp2_session_consume(session_, id, n);
}

void ClientCodec::forget(int32_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  ClientStream& s = *it->second;
  if (!s.closed) {
    reset(id, kCancel);
    if (open_streams_ > 0) open_streams_--;
  }
  // Connection-level window only once the stream is gone: nghttp2 gives the stream's back with the reset.
  if (!s.data.empty() && !dead_) nghttp2_session_consume_connection(session_, s.data.size());
  streams_.erase(it);
}

void ClientCodec::shutdown() {
  if (dead_) return;
  // Not terminate_session: that stops reading at once, and the open streams must finish.
  nghttp2_submit_goaway(session_, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, nullptr, 0);
}

void ClientCodec::transport_closed(uint32_t error_code) {
  fail_all(error_code);
}

}  // namespace portico::http2
