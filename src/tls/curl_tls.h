// TLS settings of the control channels' libcurl clients (the data plane's sync client to control planes, the
// control plane's etcd client): TLS 1.2 at least, the server's certificate verified (chain and host name or
// IP address, libcurl's defaults made explicit) against `ca_file` (empty: the system's CA store), and a
// client certificate when `cert_file` is set. Header-only: its users link libcurl themselves. Any thread, per
// handle.
#pragma once

#include <string>

#include <curl/curl.h>

namespace portico::tls {

inline void apply_curl_tls(CURL* handle, const std::string& ca_file, const std::string& cert_file,
                           const std::string& key_file) {
  curl_easy_setopt(handle, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_2));
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(handle, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!ca_file.empty()) curl_easy_setopt(handle, CURLOPT_CAINFO, ca_file.c_str());
  if (!cert_file.empty()) {
    curl_easy_setopt(handle, CURLOPT_SSLCERT, cert_file.c_str());
    curl_easy_setopt(handle, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(handle, CURLOPT_SSLKEY, (key_file.empty() ? cert_file : key_file).c_str());
    curl_easy_setopt(handle, CURLOPT_SSLKEYTYPE, "PEM");
  }
}

}  // namespace portico::tls
