// router::matched_uri / matched_host: the pattern of a route a request went through (APISIX's matched_uri and
// matched_host), the most specific one when several match, as Router::match ranks them.
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "router/router.h"

namespace portico::router {
namespace {

std::string uri(std::vector<std::string> uris, std::string_view path) {
  return std::string(matched_uri(uris, path));
}

std::string host(std::vector<std::string> hosts, std::string_view h) {
  return std::string(matched_host(hosts, h));
}

TEST(MatchedUri, NoneOrOne) {
  EXPECT_EQ(uri({}, "/a"), "");
  EXPECT_EQ(uri({"/api/*"}, "/api/x"), "/api/*");  // the route matched through its only uri
}

TEST(MatchedUri, PicksTheOneThatMatches) {
  std::vector<std::string> uris = {"/a", "/b/*", "/users/:id", "/f/img*", "/x/:id/*"};
  EXPECT_EQ(uri(uris, "/a"), "/a");
  EXPECT_EQ(uri(uris, "/b/"), "/b/*");
  EXPECT_EQ(uri(uris, "/b/c/d"), "/b/*");
  EXPECT_EQ(uri(uris, "/users/7"), "/users/:id");
  EXPECT_EQ(uri(uris, "/f/img1.png/x"), "/f/img*");
  EXPECT_EQ(uri(uris, "/f/img"), "/f/img*");
  EXPECT_EQ(uri(uris, "/x/1/"), "/x/:id/*");
  // None of them: "/b" is not "/b/*", "/users/" has no id, "/users/7/" has one segment too many.
  for (const char* path : {"/b", "/users/", "/users/7/", "/users/7/x", "/f/im", "/x/1", "/ab"}) {
    EXPECT_EQ(uri(uris, path), "") << path;
  }
}

TEST(MatchedUri, TheMostSpecificAsTheRouterRanksThem) {
  std::vector<std::string> uris = {"/*", "/api/*", "/api/v1/*", "/api/v1/users", "/api/:v/users"};
  EXPECT_EQ(uri(uris, "/api/v1/users"), "/api/v1/users");  // exact first
  EXPECT_EQ(uri(uris, "/api/v2/users"), "/api/:v/users");  // longer literal prefix... than "/api/*"
  EXPECT_EQ(uri(uris, "/api/v1/other"), "/api/v1/*");
  EXPECT_EQ(uri(uris, "/other"), "/*");
  EXPECT_EQ(uri({"/users/*", "/users/:id"}, "/users/7"), "/users/:id");  // no wildcard beats a wildcard
}

TEST(StarMatchOffset, WhereTheWildcardsMatchStarts) {
  constexpr size_t npos = std::string_view::npos;
  EXPECT_EQ(star_match_offset("/grpc/web/*", "/grpc/web/a.S/M"), 10u);
  EXPECT_EQ(star_match_offset("/grpc/web*", "/grpc/weba.S/M"), 9u);
  // A parameter segment captures any length: the offset follows what it matched, not the pattern's size.
  EXPECT_EQ(star_match_offset("/g/:tenant/*", "/g/acme-corp/test.Echo/Echo"), 13u);
  EXPECT_EQ(star_match_offset("/g/:t/v*", "/g/a/v1/x"), 6u);
  EXPECT_EQ(star_match_offset("/g/:tenant/*path", "/g/acme/x"), 8u);
  EXPECT_EQ(star_match_offset("/g/:tenant/*", "/g/acme"), npos);  // no wildcard segment
  EXPECT_EQ(star_match_offset("/h/*", "/g/a"), npos);
  EXPECT_EQ(star_match_offset("/g/:tenant", "/g/a"), npos);  // no wildcard
  EXPECT_EQ(star_match_offset("/g/a", "/g/a"), npos);
}

TEST(MatchedHost, ExactThenLongestWildcardThenAny) {
  EXPECT_EQ(host({}, "a.test"), "");
  EXPECT_EQ(host({"*.example.com"}, "x.example.com"), "*.example.com");
  std::vector<std::string> hosts = {"*", "*.example.com", "*.api.example.com", "api.example.com"};
  EXPECT_EQ(host(hosts, "api.example.com"), "api.example.com");
  EXPECT_EQ(host(hosts, "API.Example.com."), "api.example.com");
  EXPECT_EQ(host(hosts, "v1.api.example.com"), "*.api.example.com");
  EXPECT_EQ(host(hosts, "www.example.com"), "*.example.com");
  EXPECT_EQ(host(hosts, "example.com"), "*");  // a wildcard needs a label before its suffix
  EXPECT_EQ(host({"a.test", "b.test"}, "c.test"), "");
}

}  // namespace
}  // namespace portico::router
