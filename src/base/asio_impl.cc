// The single translation unit that compiles Boost.Asio (BOOST_ASIO_SEPARATE_COMPILATION is set project-wide),
// so that files including Asio headers parse declarations only.
#include <boost/asio/impl/src.hpp>
