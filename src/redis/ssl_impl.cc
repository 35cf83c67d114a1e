// The single translation unit that compiles Boost.Asio's SSL support (see base/asio_impl.cc).
#include <boost/asio/ssl/impl/src.hpp>
