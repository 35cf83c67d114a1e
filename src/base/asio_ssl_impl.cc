// The single translation unit that compiles Boost.Asio's SSL support (see asio_impl.cc), for every user of
// asio::ssl (the Redis client, the control channels' listeners).
#include <boost/asio/ssl/impl/src.hpp>
