// Router::build / Router::match: uri forms, specificity and priority ordering, hosts, methods, remote_addrs,
// vars, disabled routes, build errors, and randomized checks against a naive reference matcher.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <initializer_list>
#include <memory>
#include <new>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "config/model.h"
#include "http/message.h"
#include "router/router.h"

// Counts operator new calls made by the current thread while counting is on (RouterMatch.NoAllocation).
namespace {
thread_local bool g_count_allocs = false;
std::atomic<long> g_allocs{0};
}  // namespace

// Replacement operators pair malloc with free, which GCC cannot see through once they are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (g_count_allocs) g_allocs.fetch_add(1);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace portico::router {
namespace {

using Op = config::VarExpr::Op;

struct RouteSpec {
  config::Route r;

  explicit RouteSpec(std::initializer_list<std::string> uris) { r.uris = uris; }
  RouteSpec& hosts(std::initializer_list<std::string> v) {
    r.hosts = v;
    return *this;
  }
  RouteSpec& methods(std::initializer_list<std::string> v) {
    r.methods = v;
    return *this;
  }
  RouteSpec& addrs(std::initializer_list<std::string> v) {
    r.remote_addrs = v;
    return *this;
  }
  RouteSpec& var(std::string name, Op op, std::vector<std::string> values, bool negate = false) {
    config::VarExpr e;
    e.var = std::move(name);
    e.op = op;
    e.values = std::move(values);
    e.negate = negate;
    r.vars.push_back(std::move(e));
    return *this;
  }
  RouteSpec& priority(int p) {
    r.priority = p;
    return *this;
  }
  RouteSpec& disabled() {
    r.enabled = false;
    return *this;
  }
  RouteSpec& service(std::string id) {
    r.service_id = std::move(id);
    return *this;
  }
};

config::Config make_config(std::initializer_list<RouteSpec> routes) {
  config::Config c;
  int n = 0;
  for (const RouteSpec& s : routes) {
    c.routes.push_back(s.r);
    c.routes.back().id = std::to_string(n++);
  }
  return c;
}

std::unique_ptr<Router> build_ok(const config::Config& c) {
  std::string error;
  std::unique_ptr<Router> r = Router::build(c, &error);
  EXPECT_NE(r, nullptr) << error;
  return r;
}

// A request owning its strings.
class Request {
 public:
  explicit Request(std::string path, std::string host = "example.org", std::string method = "GET")
      : path_(std::move(path)), host_(std::move(host)), method_(std::move(method)) {
    target_ = path_;
    client("192.0.2.1");
  }
  Request(const Request&) = delete;  // the head's views point into this object
  Request& operator=(const Request&) = delete;
  Request& query(std::string q) {
    query_ = std::move(q);
    target_ = path_ + "?" + query_;
    return *this;
  }
  Request& header(std::string name, std::string value) {
    const std::string& n = store_.emplace_back(std::move(name));
    const std::string& v = store_.emplace_back(std::move(value));
    head_.headers[head_.header_count++] = http::Header{n, v};
    return *this;
  }
  Request& client(const std::string& ip) {
    EXPECT_TRUE(IpAddress::parse(ip, client_)) << ip;
    return *this;
  }
  Request& method_enum_only(http::Method m) {
    method_.clear();
    method_enum_ = m;
    return *this;
  }
  Request& no_head() {
    with_head_ = false;
    return *this;
  }

  MatchRequest get() const {
    MatchRequest m;
    m.method = method_enum_;
    m.method_text = method_;
    m.host = host_;
    m.path = path_;
    m.query = query_;
    m.target = target_;
    m.head = with_head_ ? &head_ : nullptr;
    m.client = client_;
    return m;
  }

 private:
  std::string path_, host_, method_, query_, target_;
  http::Method method_enum_ = http::Method::GET;
  std::deque<std::string> store_;  // stable addresses for the header views
  http::RequestHead head_;
  bool with_head_ = true;
  IpAddress client_;
};

int match(const Router& r, const Request& q) {
  return r.match(q.get());
}
int match(const Router& r, const std::string& path, const std::string& host = "example.org") {
  return r.match(Request(path, host).get());
}

// ---------------------------------------------------------------------------------------------------------
// uri forms

TEST(RouterUri, Exact) {
  auto r = build_ok(make_config({RouteSpec({"/a/b"}), RouteSpec({"/"})}));
  EXPECT_EQ(match(*r, "/a/b"), 0);
  EXPECT_EQ(match(*r, "/"), 1);
  EXPECT_EQ(match(*r, "/a/b/"), -1);
  EXPECT_EQ(match(*r, "/a"), -1);
  EXPECT_EQ(match(*r, "/a/bc"), -1);
  EXPECT_EQ(match(*r, "/A/B"), -1);  // paths are case-sensitive
  EXPECT_EQ(match(*r, ""), -1);
}

TEST(RouterUri, Prefix) {
  auto r = build_ok(make_config({RouteSpec({"/api/*"})}));
  EXPECT_EQ(match(*r, "/api/"), 0);
  EXPECT_EQ(match(*r, "/api/x"), 0);
  EXPECT_EQ(match(*r, "/api/x/y/z"), 0);
  EXPECT_EQ(match(*r, "/api"), -1);  // APISIX: "/api/*" does not match "/api"
  EXPECT_EQ(match(*r, "/apix"), -1);
  EXPECT_EQ(match(*r, "/ap"), -1);
}

TEST(RouterUri, BytePrefixAndNamedWildcard) {
  auto r = build_ok(make_config({RouteSpec({"/api*"}), RouteSpec({"/files/*path"})}));
  EXPECT_EQ(match(*r, "/api"), 0);
  EXPECT_EQ(match(*r, "/apix"), 0);
  EXPECT_EQ(match(*r, "/api/v1"), 0);
  EXPECT_EQ(match(*r, "/ap"), -1);
  EXPECT_EQ(match(*r, "/files/"), 1);
  EXPECT_EQ(match(*r, "/files/a/b.png"), 1);
  EXPECT_EQ(match(*r, "/files"), -1);
}

TEST(RouterUri, RootWildcardMatchesEverything) {
  auto r = build_ok(make_config({RouteSpec({"/*"})}));
  EXPECT_EQ(match(*r, "/"), 0);
  EXPECT_EQ(match(*r, "/x"), 0);
  EXPECT_EQ(match(*r, "/very/deep/path/"), 0);
}

TEST(RouterUri, Param) {
  auto r = build_ok(make_config({RouteSpec({"/users/:id"})}));
  EXPECT_EQ(match(*r, "/users/1"), 0);
  EXPECT_EQ(match(*r, "/users/some-name.json"), 0);
  EXPECT_EQ(match(*r, "/users/"), -1);  // a parameter is never empty
  EXPECT_EQ(match(*r, "/users"), -1);
  EXPECT_EQ(match(*r, "/users/1/"), -1);  // one segment only
  EXPECT_EQ(match(*r, "/users/1/x"), -1);
}

TEST(RouterUri, ParamInTheMiddleAndSeveralParams) {
  auto r = build_ok(make_config({RouteSpec({"/users/:id/posts"}), RouteSpec({"/a/:x/b/:y"})}));
  EXPECT_EQ(match(*r, "/users/7/posts"), 0);
  EXPECT_EQ(match(*r, "/users//posts"), -1);
  EXPECT_EQ(match(*r, "/users/7/posts/1"), -1);
  EXPECT_EQ(match(*r, "/users/7/post"), -1);
  EXPECT_EQ(match(*r, "/a/1/b/2"), 1);
  EXPECT_EQ(match(*r, "/a/1/b/"), -1);
  EXPECT_EQ(match(*r, "/a/1/c/2"), -1);
}

TEST(RouterUri, ParamWithPrefix) {
  auto r = build_ok(make_config({RouteSpec({"/users/:id/*"})}));
  EXPECT_EQ(match(*r, "/users/7/"), 0);
  EXPECT_EQ(match(*r, "/users/7/a/b"), 0);
  EXPECT_EQ(match(*r, "/users/7"), -1);
  EXPECT_EQ(match(*r, "/users//x"), -1);
}

TEST(RouterUri, StaticAndParamSiblingsBothExplored) {
  // "/users/me/settings" must be found although "/users/me" is also a static prefix of other routes.
  auto r = build_ok(make_config(
      {RouteSpec({"/users/me"}), RouteSpec({"/users/:id/settings"}), RouteSpec({"/users/mega"})}));
  EXPECT_EQ(match(*r, "/users/me"), 0);
  EXPECT_EQ(match(*r, "/users/me/settings"), 1);
  EXPECT_EQ(match(*r, "/users/mega"), 2);
  EXPECT_EQ(match(*r, "/users/megax/settings"), 1);
  EXPECT_EQ(match(*r, "/users/m"), -1);
}

TEST(RouterUri, LiteralColonAndStar) {
  auto r =
      build_ok(make_config({RouteSpec({"/v1/things:batch"}), RouteSpec({"/a/*/b"}), RouteSpec({"/x*.png"})}));
  EXPECT_EQ(match(*r, "/v1/things:batch"), 0);
  EXPECT_EQ(match(*r, "/v1/things:other"), -1);
  EXPECT_EQ(match(*r, "/a/*/b"), 1);  // '*' not at the end is a literal
  EXPECT_EQ(match(*r, "/a/z/b"), -1);
  EXPECT_EQ(match(*r, "/x*.png"), 2);
  EXPECT_EQ(match(*r, "/xy.png"), -1);
}

TEST(RouterUri, WildcardPrefixesAtOneNode) {
  auto r = build_ok(make_config({RouteSpec({"/f/img*"}), RouteSpec({"/f/im*"}), RouteSpec({"/f/doc*"}),
                                 RouteSpec({"/f/*"}), RouteSpec({"/f/:x/*"})}));
  EXPECT_EQ(match(*r, "/f/img1.png"), 0);  // longest literal prefix first
  EXPECT_EQ(match(*r, "/f/img"), 0);
  EXPECT_EQ(match(*r, "/f/imx"), 1);
  EXPECT_EQ(match(*r, "/f/doc/a/b"), 2);
  EXPECT_EQ(match(*r, "/f/x"), 3);
  EXPECT_EQ(match(*r, "/f/x/"), 4);
  EXPECT_EQ(match(*r, "/f/"), 3);
}

TEST(RouterUri, LongSegmentsSharingAPrefix) {
  const std::string a = "/this-is-a-long-segment-name-0001/:id";
  const std::string b = "/this-is-a-long-segment-name-0002/:id";
  auto r = build_ok(
      make_config({RouteSpec({a}), RouteSpec({b}), RouteSpec({"/this-is-a-long-segment-name-000/*"})}));
  EXPECT_EQ(match(*r, "/this-is-a-long-segment-name-0001/7"), 0);
  EXPECT_EQ(match(*r, "/this-is-a-long-segment-name-0002/7"), 1);
  EXPECT_EQ(match(*r, "/this-is-a-long-segment-name-0003/7"), -1);
  EXPECT_EQ(match(*r, "/this-is-a-long-segment-name-000/7"), 2);
}

TEST(RouterUri, EmptySegmentsAndTrailingSlashes) {
  auto r = build_ok(make_config({RouteSpec({"/a//:id"}), RouteSpec({"/u/:id/"}), RouteSpec({"/s/:id/x*"})}));
  EXPECT_EQ(match(*r, "/a//1"), 0);
  EXPECT_EQ(match(*r, "/a/1"), -1);
  EXPECT_EQ(match(*r, "/u/1/"), 1);
  EXPECT_EQ(match(*r, "/u/1"), -1);
  EXPECT_EQ(match(*r, "/s/1/x"), 2);
  EXPECT_EQ(match(*r, "/s/1/xyz/w"), 2);
  EXPECT_EQ(match(*r, "/s/1/"), -1);
}

TEST(RouterUri, MultipleUrisPerRoute) {
  auto r = build_ok(make_config({RouteSpec({"/a", "/b/*", "/c/:id"}), RouteSpec({"/d"})}));
  EXPECT_EQ(match(*r, "/a"), 0);
  EXPECT_EQ(match(*r, "/b/1"), 0);
  EXPECT_EQ(match(*r, "/c/1"), 0);
  EXPECT_EQ(match(*r, "/d"), 1);
  EXPECT_EQ(match(*r, "/e"), -1);
}

TEST(RouterUri, RouteWithoutUrisNeverMatches) {
  auto r = build_ok(make_config({RouteSpec({}), RouteSpec({"/*"})}));
  EXPECT_EQ(match(*r, "/"), 1);
}

// ---------------------------------------------------------------------------------------------------------
// ordering

TEST(RouterOrder, ExactBeatsPrefixAndParam) {
  auto r = build_ok(make_config({RouteSpec({"/a/*"}), RouteSpec({"/a/:x"}), RouteSpec({"/a/b"})}));
  EXPECT_EQ(match(*r, "/a/b"), 2);
  EXPECT_EQ(match(*r, "/a/c"), 1);  // param (no wildcard) beats wildcard at the same literal prefix
  EXPECT_EQ(match(*r, "/a/c/d"), 0);
}

TEST(RouterOrder, LongerPrefixWins) {
  auto r = build_ok(make_config({RouteSpec({"/*"}), RouteSpec({"/api/*"}), RouteSpec({"/api/v1/*"}),
                                 RouteSpec({"/api/v1/users/:id"})}));
  EXPECT_EQ(match(*r, "/x"), 0);
  EXPECT_EQ(match(*r, "/api/x"), 1);
  EXPECT_EQ(match(*r, "/api/v1/x"), 2);
  EXPECT_EQ(match(*r, "/api/v1/users/3"), 3);
  EXPECT_EQ(match(*r, "/api/v1/users/3/x"), 2);
}

TEST(RouterOrder, LongerLiteralPrefixBeatsParamEarlier) {
  // "/users/42/*" has the longer literal prefix than "/users/:id/profile" (APISIX: longest rax key first).
  auto r = build_ok(make_config({RouteSpec({"/users/:id/profile"}), RouteSpec({"/users/42/*"})}));
  EXPECT_EQ(match(*r, "/users/42/profile"), 1);
  EXPECT_EQ(match(*r, "/users/41/profile"), 0);
}

TEST(RouterOrder, ParamWithWildcardBeatsPlainWildcard) {
  auto r = build_ok(make_config({RouteSpec({"/users/*"}), RouteSpec({"/users/:id/*"})}));
  EXPECT_EQ(match(*r, "/users/5/x"), 1);
  EXPECT_EQ(match(*r, "/users/5"), 0);
}

TEST(RouterOrder, PriorityBeatsSpecificity) {
  auto r = build_ok(
      make_config({RouteSpec({"/a/b"}), RouteSpec({"/a/*"}).priority(10), RouteSpec({"/*"}).priority(5)}));
  EXPECT_EQ(match(*r, "/a/b"), 1);
  EXPECT_EQ(match(*r, "/x"), 2);
}

TEST(RouterOrder, NegativePriority) {
  auto r = build_ok(make_config({RouteSpec({"/a"}).priority(-5), RouteSpec({"/*"}).priority(-1)}));
  EXPECT_EQ(match(*r, "/a"), 1);
  EXPECT_EQ(match(*r, "/b"), 1);
}

TEST(RouterOrder, TieGoesToRouteListedFirst) {
  auto r = build_ok(make_config({RouteSpec({"/a/*"}).priority(1), RouteSpec({"/a/*"}).priority(1),
                                 RouteSpec({"/a"}), RouteSpec({"/a"})}));
  EXPECT_EQ(match(*r, "/a/x"), 0);
  EXPECT_EQ(match(*r, "/a"), 2);
}

TEST(RouterOrder, HigherPriorityWithFailingConditionFallsThrough) {
  auto r = build_ok(make_config({RouteSpec({"/a/*"}).priority(1).methods({"POST"}),
                                 RouteSpec({"/a/*"}).priority(2).methods({"PUT"}), RouteSpec({"/a/b"})}));
  EXPECT_EQ(match(*r, Request("/a/b", "h", "PUT")), 1);
  EXPECT_EQ(match(*r, Request("/a/b", "h", "POST")), 0);
  EXPECT_EQ(match(*r, Request("/a/b", "h", "GET")), 2);
}

TEST(RouterOrder, HostSpecificityBreaksPathTies) {
  auto r = build_ok(make_config({RouteSpec({"/*"}), RouteSpec({"/*"}).hosts({"*.example.com"}),
                                 RouteSpec({"/*"}).hosts({"*.api.example.com"}),
                                 RouteSpec({"/*"}).hosts({"v1.api.example.com"})}));
  EXPECT_EQ(match(*r, "/", "other.org"), 0);
  EXPECT_EQ(match(*r, "/", "www.example.com"), 1);
  EXPECT_EQ(match(*r, "/", "v2.api.example.com"), 2);
  EXPECT_EQ(match(*r, "/", "v1.api.example.com"), 3);
}

TEST(RouterOrder, PathSpecificityBeforeHostSpecificity) {
  auto r = build_ok(make_config({RouteSpec({"/*"}).hosts({"api.example.com"}), RouteSpec({"/v1/*"})}));
  EXPECT_EQ(match(*r, "/v1/x", "api.example.com"), 1);
  EXPECT_EQ(match(*r, "/v2/x", "api.example.com"), 0);
}

TEST(RouterOrder, SameRouteMatchingThroughSeveralUris) {
  auto r = build_ok(make_config({RouteSpec({"/*", "/a/b"}), RouteSpec({"/a/*"})}));
  EXPECT_EQ(match(*r, "/a/b"), 0);  // route 0's exact uri is the most specific
  EXPECT_EQ(match(*r, "/a/c"), 1);
  EXPECT_EQ(match(*r, "/c"), 0);
}

// ---------------------------------------------------------------------------------------------------------
// hosts

TEST(RouterHost, ExactCaseInsensitive) {
  auto r = build_ok(make_config({RouteSpec({"/a"}).hosts({"api.example.com", "www.example.com"})}));
  EXPECT_EQ(match(*r, "/a", "api.example.com"), 0);
  EXPECT_EQ(match(*r, "/a", "API.Example.COM"), 0);
  EXPECT_EQ(match(*r, "/a", "www.example.com"), 0);
  EXPECT_EQ(match(*r, "/a", "api.example.com."), 0);  // trailing dot ignored
  EXPECT_EQ(match(*r, "/a", "example.com"), -1);
  EXPECT_EQ(match(*r, "/a", "x.api.example.com"), -1);
  EXPECT_EQ(match(*r, "/a", ""), -1);
}

TEST(RouterHost, Wildcard) {
  auto r = build_ok(make_config({RouteSpec({"/a"}).hosts({"*.example.com"})}));
  EXPECT_EQ(match(*r, "/a", "a.example.com"), 0);
  EXPECT_EQ(match(*r, "/a", "a.b.example.com"), 0);
  EXPECT_EQ(match(*r, "/a", "A.EXAMPLE.com"), 0);
  EXPECT_EQ(match(*r, "/a", "example.com"), -1);
  EXPECT_EQ(match(*r, "/a", ".example.com"), -1);
  EXPECT_EQ(match(*r, "/a", "xexample.com"), -1);
  EXPECT_EQ(match(*r, "/a", "a.example.org"), -1);
}

TEST(RouterHost, WildcardWithPatternUris) {
  auto r =
      build_ok(make_config({RouteSpec({"/u/:id", "/s/*"}).hosts({"*.example.com"}), RouteSpec({"/u/:id"})}));
  EXPECT_EQ(match(*r, "/u/1", "a.example.com"), 0);
  EXPECT_EQ(match(*r, "/s/x", "a.example.com"), 0);
  EXPECT_EQ(match(*r, "/u/1", "other.com"), 1);
  EXPECT_EQ(match(*r, "/s/x", "other.com"), -1);
}

TEST(RouterHost, NoHostsMatchesAnyHostAndStarHost) {
  auto r = build_ok(make_config({RouteSpec({"/a"}), RouteSpec({"/b"}).hosts({"*"})}));
  EXPECT_EQ(match(*r, "/a", "anything.test"), 0);
  EXPECT_EQ(match(*r, "/a", ""), 0);
  EXPECT_EQ(match(*r, "/b", "anything.test"), 1);
}

TEST(RouterHost, OverlongHostOnlyMatchesHostlessRoutes) {
  auto r = build_ok(make_config({RouteSpec({"/a"}).hosts({"*.example.com"}), RouteSpec({"/*"})}));
  std::string host(300, 'a');
  host += ".example.com";
  EXPECT_EQ(match(*r, "/a", host), 1);
}

TEST(RouterHost, ServiceHostInheritance) {
  config::Config c =
      make_config({RouteSpec({"/a"}).service("s1"), RouteSpec({"/a"}).service("s1").hosts({"own.com"}),
                   RouteSpec({"/b"}).service("missing"), RouteSpec({"/c"}).service("s2")});
  config::Service s1;
  s1.id = "s1";
  s1.hosts = {"svc.com", "*.svc.org"};
  config::Service s2;
  s2.id = "s2";  // no hosts: routes stay host-agnostic
  c.services = {s1, s2};
  auto r = build_ok(c);
  EXPECT_EQ(match(*r, "/a", "svc.com"), 0);
  EXPECT_EQ(match(*r, "/a", "x.svc.org"), 0);
  EXPECT_EQ(match(*r, "/a", "own.com"), 1);  // the route's own hosts replace the service's
  EXPECT_EQ(match(*r, "/a", "other.com"), -1);
  EXPECT_EQ(match(*r, "/b", "other.com"), 2);
  EXPECT_EQ(match(*r, "/c", "other.com"), 3);
}

// ---------------------------------------------------------------------------------------------------------
// methods, remote_addrs

TEST(RouterMethod, ListAndAny) {
  auto r = build_ok(make_config(
      {RouteSpec({"/a"}).methods({"GET", "HEAD"}), RouteSpec({"/a"}).methods({"POST"}), RouteSpec({"/a"})}));
  EXPECT_EQ(match(*r, Request("/a", "h", "GET")), 0);
  EXPECT_EQ(match(*r, Request("/a", "h", "HEAD")), 0);
  EXPECT_EQ(match(*r, Request("/a", "h", "POST")), 1);
  EXPECT_EQ(match(*r, Request("/a", "h", "DELETE")), 2);
  EXPECT_EQ(match(*r, Request("/a", "h", "get")), 2);  // exact upper-case comparison
}

TEST(RouterMethod, NonStandardMethods) {
  auto r =
      build_ok(make_config({RouteSpec({"/a"}).methods({"PURGE"}), RouteSpec({"/a"}).methods({"MKCOL", "GET"}),
                            RouteSpec({"/a"}).methods({"PROPFIND"})}));
  EXPECT_EQ(match(*r, Request("/a", "h", "PURGE")), 0);
  EXPECT_EQ(match(*r, Request("/a", "h", "MKCOL")), 1);
  EXPECT_EQ(match(*r, Request("/a", "h", "GET")), 1);
  EXPECT_EQ(match(*r, Request("/a", "h", "PROPFIND")), 2);
  EXPECT_EQ(match(*r, Request("/a", "h", "COPY")), -1);
  EXPECT_EQ(match(*r, Request("/a", "h", "POST")), -1);
}

TEST(RouterMethod, EnumUsedWhenTextEmpty) {
  auto r = build_ok(make_config({RouteSpec({"/a"}).methods({"DELETE"})}));
  EXPECT_EQ(match(*r, Request("/a").method_enum_only(http::Method::DELETE)), 0);
  EXPECT_EQ(match(*r, Request("/a").method_enum_only(http::Method::GET)), -1);
}

TEST(RouterRemoteAddr, V4AndV6) {
  auto r = build_ok(make_config({RouteSpec({"/a"}).addrs({"10.0.0.0/8", "192.168.1.7"}),
                                 RouteSpec({"/a"}).addrs({"2001:db8::/32", "::1"}),
                                 RouteSpec({"/a"}).addrs({"::/0"}), RouteSpec({"/b"}).addrs({"0.0.0.0/0"})}));
  EXPECT_EQ(match(*r, Request("/a").client("10.200.3.4")), 0);
  EXPECT_EQ(match(*r, Request("/a").client("192.168.1.7")), 0);
  EXPECT_EQ(match(*r, Request("/a").client("2001:db8:1::5")), 1);
  EXPECT_EQ(match(*r, Request("/a").client("::1")), 1);
  EXPECT_EQ(match(*r, Request("/a").client("192.168.1.8")), 2);  // ::/0 covers the mapped IPv4 space too
  EXPECT_EQ(match(*r, Request("/a").client("::ffff:10.1.1.1")), 0);
  EXPECT_EQ(match(*r, Request("/b").client("203.0.113.5")), 3);
  EXPECT_EQ(match(*r, Request("/b").client("2001:db8::1")), -1);
}

// ---------------------------------------------------------------------------------------------------------
// vars

struct VarCase {
  const char* var;
  Op op;
  std::vector<std::string> values;
  bool negate;
  bool expect;
};

// One request, many single-expression routes.
TEST(RouterVars, OperatorsOnHeadersArgsCookies) {
  Request q("/p", "Shop.Example.com", "POST");
  q.query("page=12&name=J%C3%B6rg+M&flag&empty=&dup=1&dup=2&ratio=0.5")
      .header("X-User", "alice")
      .header("x-tags", "red, green ,blue")
      .header("X-User", "bob")
      .header("Cookie", "sid=abc123; theme=dark")
      .header("cookie", "late=1")
      .header("User-Agent", "Mozilla/5.0 (X11) Firefox/120")
      .client("10.9.8.7");

  const std::vector<VarCase> cases = {
      {"http_x_user", Op::eq, {"alice"}, false, true},  // first occurrence
      {"http_x_user", Op::eq, {"bob"}, false, false},
      {"http_X_USER", Op::eq, {"alice"}, false, true},
      {"http_x_user", Op::ne, {"bob"}, false, true},
      {"http_x_user", Op::ne, {"alice"}, false, false},
      {"http_x_user", Op::eq, {"alice"}, true, false},  // negated
      {"http_x_missing", Op::eq, {"x"}, false, false},
      {"http_x_missing", Op::ne, {"x"}, false, true},  // nil ~= "x"
      {"http_x_missing", Op::ne, {"x"}, true, false},
      {"http_x_missing", Op::eq, {"x"}, true, true},
      {"http_x_missing", Op::in, {"x", ""}, false, false},
      {"http_x_missing", Op::regex, {".*"}, false, false},
      {"http_x_missing", Op::gt, {"1"}, false, false},
      {"http_x_missing", Op::has, {"x"}, false, false},
      {"http_user_agent", Op::regex, {"Firefox/\\d+"}, false, true},
      {"http_user_agent", Op::regex, {"firefox"}, false, false},
      {"http_user_agent", Op::regex_nocase, {"firefox"}, false, true},
      {"http_user_agent", Op::regex, {"^Mozilla"}, false, true},
      {"http_user_agent", Op::regex, {"^Firefox"}, false, false},
      {"http_user_agent", Op::regex, {"Chrome"}, true, true},
      {"http_x_tags", Op::has, {"green"}, false, true},
      {"http_x_tags", Op::has, {"gre"}, false, false},
      {"http_x_tags", Op::has, {"yellow"}, true, true},
      {"http_x_tags", Op::in, {"red", "red, green ,blue"}, false, true},
      {"arg_page", Op::eq, {"12"}, false, true},
      {"arg_page", Op::gt, {"11"}, false, true},
      {"arg_page", Op::gt, {"12"}, false, false},
      {"arg_page", Op::ge, {"12"}, false, true},
      {"arg_page", Op::lt, {"12.5"}, false, true},
      {"arg_page", Op::le, {"11"}, false, false},
      {"arg_page", Op::le, {"11"}, true, true},
      {"arg_ratio", Op::lt, {"1"}, false, true},
      {"arg_name", Op::eq, {"J\xC3\xB6rg M"}, false, true},  // percent-decoded, '+' as space
      {"arg_name", Op::gt, {"1"}, false, false},             // not a number
      {"arg_name", Op::gt, {"1"}, true, true},
      {"arg_flag", Op::eq, {""}, false, true},
      {"arg_empty", Op::eq, {""}, false, true},
      {"arg_dup", Op::eq, {"1"}, false, true},
      {"arg_Page", Op::eq, {"12"}, false, false},  // argument names compare exactly
      {"arg_nope", Op::ne, {"1"}, false, true},
      {"arg_page", Op::in, {"1", "12", "123"}, false, true},
      {"arg_page", Op::in, {"1", "123"}, false, false},
      {"arg_page", Op::in, {"1", "123"}, true, true},
      {"cookie_sid", Op::eq, {"abc123"}, false, true},
      {"cookie_theme", Op::eq, {"dark"}, false, true},
      {"cookie_late", Op::eq, {"1"}, false, true},  // second Cookie header
      {"cookie_SID", Op::eq, {"abc123"}, false, false},
      {"cookie_none", Op::eq, {""}, false, false},
      {"uri", Op::eq, {"/p"}, false, true},
      {"request_uri", Op::regex, {"^/p\\?page=12&"}, false, true},
      {"host", Op::eq, {"shop.example.com"}, false, true},  // lower-cased
      {"remote_addr", Op::eq, {"10.9.8.7"}, false, true},
      {"remote_addr", Op::regex, {"^10\\."}, false, true},
      {"request_method", Op::eq, {"POST"}, false, true},
      {"scheme", Op::eq, {"http"}, false, true},
      {"args", Op::regex, {"flag&"}, false, true},
      {"server_port", Op::eq, {"80"}, false, false},  // unsupported variable: missing
      {"server_port", Op::ne, {"80"}, false, true},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const VarCase& c = cases[i];
    config::Config cfg = make_config({RouteSpec({"/p"}).var(c.var, c.op, c.values, c.negate)});
    auto r = build_ok(cfg);
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(match(*r, q), c.expect ? 0 : -1) << "case " << i << ": " << c.var << " negate=" << c.negate;
  }
}

TEST(RouterVars, AllExpressionsMustHold) {
  auto r = build_ok(make_config({RouteSpec({"/p"})
                                     .var("arg_a", Op::eq, {"1"})
                                     .var("arg_b", Op::eq, {"2"})
                                     .var("http_x", Op::ne, {"no"}),
                                 RouteSpec({"/p"}).priority(-1)}));
  EXPECT_EQ(match(*r, Request("/p").query("a=1&b=2")), 0);
  EXPECT_EQ(match(*r, Request("/p").query("a=1&b=2").header("X", "no")), 1);
  EXPECT_EQ(match(*r, Request("/p").query("a=1")), 1);
  EXPECT_EQ(match(*r, Request("/p").query("b=2")), 1);
}

TEST(RouterVars, NullHeadMeansNoHeadersOrCookies) {
  auto r =
      build_ok(make_config({RouteSpec({"/p"}).var("http_x", Op::ne, {"1"}).var("cookie_c", Op::ne, {"1"})}));
  EXPECT_EQ(match(*r, Request("/p").no_head()), 0);
}

TEST(RouterVars, VarsDecideBetweenRoutesOnTheSamePath) {
  auto r =
      build_ok(make_config({RouteSpec({"/api/*"}).var("http_x_canary", Op::eq, {"1"}),
                            RouteSpec({"/api/*"}).var("arg_v", Op::in, {"2", "3"}), RouteSpec({"/api/*"})}));
  EXPECT_EQ(match(*r, Request("/api/x").header("X-Canary", "1")), 0);
  EXPECT_EQ(match(*r, Request("/api/x").query("v=3")), 1);
  EXPECT_EQ(match(*r, Request("/api/x").query("v=4")), 2);
}

TEST(RouterVars, RegexFromManyThreads) {
  auto r = build_ok(make_config({RouteSpec({"/p"}).var("http_x", Op::regex, {"^a+b$"}), RouteSpec({"/*"})}));
  auto worker = [&](int* mismatches) {
    Request yes("/p"), no("/p");
    yes.header("X", "aaab");
    no.header("X", "aaac");
    for (int i = 0; i < 20000; ++i) {
      if (match(*r, yes) != 0) ++*mismatches;
      if (match(*r, no) != 1) ++*mismatches;
    }
  };
  int m1 = 0, m2 = 0;
  std::thread t1(worker, &m1), t2(worker, &m2);
  t1.join();
  t2.join();
  EXPECT_EQ(m1, 0);
  EXPECT_EQ(m2, 0);
}

TEST(RouterMatch, NoAllocation) {
  auto r = build_ok(make_config({RouteSpec({"/a/b"}).hosts({"h.com"}).methods({"GET"}),
                                 RouteSpec({"/u/:id/*"}).hosts({"*.h.com"}).addrs({"10.0.0.0/8"}),
                                 RouteSpec({"/v"})
                                     .var("http_user_agent", Op::regex_nocase, {"curl/\\d+"})
                                     .var("arg_q", Op::eq, {"a b"})
                                     .var("cookie_s", Op::ne, {"x"})
                                     .var("remote_addr", Op::regex, {"^10\\."}),
                                 RouteSpec({"/*"})}));
  Request a("/a/b", "H.com"), u("/u/1/x/y", "x.h.com"), v("/v"), miss("/zz", "nope.org");
  u.client("10.1.2.3");
  v.query("q=a%20b&z=1").header("User-Agent", "Curl/8.1").header("Cookie", "s=1; t=2").client("10.0.0.9");
  auto run = [&] {
    return match(*r, a) == 0 && match(*r, u) == 1 && match(*r, v) == 2 && match(*r, miss) == 3;
  };
  ASSERT_TRUE(run());  // warms the per-thread scratch
  MatchRequest ma = a.get(), mu = u.get(), mv = v.get(), mm = miss.get();
  g_count_allocs = true;
  auto probe = std::make_unique<std::string>(100, 'x');  // the counter itself works
  g_count_allocs = false;
  ASSERT_GE(g_allocs.load(), 1);
  g_allocs = 0;
  g_count_allocs = true;
  int ok = 0;
  for (int i = 0; i < 1000; ++i) {
    ok += r->match(ma) == 0;
    ok += r->match(mu) == 1;
    ok += r->match(mv) == 2;
    ok += r->match(mm) == 3;
  }
  g_count_allocs = false;
  EXPECT_EQ(ok, 4000);
  EXPECT_EQ(g_allocs.load(), 0);
}

// ---------------------------------------------------------------------------------------------------------
// disabled routes, errors, counts

TEST(RouterBuild, DisabledRoutesAreLeftOut) {
  auto r = build_ok(
      make_config({RouteSpec({"/a"}).disabled(), RouteSpec({"/*"}), RouteSpec({"/b/*"}).disabled()}));
  EXPECT_EQ(match(*r, "/a"), 1);
  EXPECT_EQ(match(*r, "/b/x"), 1);
  EXPECT_EQ(r->route_count(), 1u);
}

TEST(RouterBuild, EmptyConfigMatchesNothing) {
  auto r = build_ok(config::Config{});
  EXPECT_EQ(match(*r, "/"), -1);
  EXPECT_EQ(r->route_count(), 0u);
}

TEST(RouterBuild, NotFound) {
  auto r = build_ok(make_config({RouteSpec({"/a", "/b/*", "/c/:x"}).hosts({"h.com"})}));
  EXPECT_EQ(match(*r, "/a", "other.com"), -1);
  EXPECT_EQ(match(*r, "/z", "h.com"), -1);
  EXPECT_EQ(match(*r, "/c/", "h.com"), -1);
}

TEST(RouterBuild, Errors) {
  std::string error;
  EXPECT_EQ(Router::build(make_config({RouteSpec({"/a"}).addrs({"10.0.0.0/33"})}), &error), nullptr);
  EXPECT_NE(error.find("remote_addrs"), std::string::npos) << error;
  EXPECT_EQ(Router::build(make_config({RouteSpec({"/a"}).addrs({"nonsense"})}), &error), nullptr);
  EXPECT_EQ(Router::build(make_config({RouteSpec({"/a"}).var("http_x", Op::regex, {"(unclosed"})}), &error),
            nullptr);
  EXPECT_NE(error.find("regex"), std::string::npos) << error;
  EXPECT_EQ(Router::build(make_config({RouteSpec({"/a"}).var("arg_x", Op::gt, {"ten"})}), &error), nullptr);
  EXPECT_EQ(Router::build(make_config({RouteSpec({"/a"}).var("arg_x", Op::eq, {})}), &error), nullptr);
  EXPECT_EQ(Router::build(make_config({RouteSpec({"a/b"})}), &error), nullptr);
  EXPECT_NE(error.find("uri"), std::string::npos) << error;
  EXPECT_NE(Router::build(make_config({RouteSpec({"/a"}).var("arg_x", Op::in, {})}), &error), nullptr);
}

// ---------------------------------------------------------------------------------------------------------
// scale and randomized comparison with a naive matcher

std::string word(std::mt19937& rng, size_t min_len = 1) {
  static const char kAlpha[] = "abcdefghijklmnopqrstuvwxyz0123456789-_";
  size_t n = min_len + rng() % 6;
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(kAlpha[rng() % (sizeof kAlpha - 1)]);
  return s;
}

TEST(RouterScale, TenThousandRandomRoutesEachFound) {
  std::mt19937 rng(12345);
  config::Config c;
  struct Probe {
    std::string path, host;
  };
  std::vector<Probe> probes;
  for (int i = 0; i < 10000; ++i) {
    config::Route route;
    std::string base = "/" + word(rng) + std::to_string(i) + "/" + word(rng);
    std::string host = i % 3 == 0 ? "" : i % 3 == 1 ? "h" + std::to_string(i % 97) + ".example.com" : "";
    std::string probe_host = host.empty() ? "any.test" : host;
    switch (i % 4) {
      case 0:
        route.uris = {base};
        probes.push_back({base, probe_host});
        break;
      case 1:
        route.uris = {base + "/*"};
        probes.push_back({base + "/" + word(rng) + "/" + word(rng), probe_host});
        break;
      case 2:
        route.uris = {base + "/:id"};
        probes.push_back({base + "/" + word(rng), probe_host});
        break;
      default:
        route.uris = {base + "/:id/items/*"};
        probes.push_back({base + "/" + word(rng) + "/items/" + word(rng), probe_host});
        break;
    }
    if (!host.empty()) route.hosts = {host};
    route.id = std::to_string(i);
    c.routes.push_back(route);
  }
  auto r = build_ok(c);
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->route_count(), 10000u);
  for (size_t i = 0; i < probes.size(); ++i) {
    ASSERT_EQ(match(*r, probes[i].path, probes[i].host), static_cast<int>(i)) << probes[i].path;
  }
  EXPECT_EQ(match(*r, "/definitely/not/there", "any.test"), -1);
}

// Reference semantics, written independently of the router's data structures.
bool ref_uri_match(std::string_view pat, std::string_view path, bool* exact, size_t* prefix_len, bool* star,
                   size_t* literal) {
  *exact = true;
  *prefix_len = std::string_view::npos;
  *star = false;
  *literal = 0;
  size_t i = 0, j = 0;
  bool ok = true;
  while (i < pat.size()) {
    if (pat[i] == ':' && i > 0 && pat[i - 1] == '/') {
      if (*prefix_len == std::string_view::npos) *prefix_len = i;
      *exact = false;
      size_t pend = pat.find('/', i);
      i = pend == std::string_view::npos ? pat.size() : pend;
      size_t send = path.find('/', j);
      send = send == std::string_view::npos ? path.size() : send;
      if (send == j) ok = false;
      j = send;
      continue;
    }
    if (pat[i] == '*' && i + 1 == pat.size()) {
      if (*prefix_len == std::string_view::npos) *prefix_len = i;
      *exact = false;
      *star = true;
      return ok && j <= path.size();
    }
    ++*literal;
    if (j >= path.size() || path[j] != pat[i]) ok = false;
    ++i;
    ++j;
  }
  if (*prefix_len == std::string_view::npos) *prefix_len = pat.size();
  return ok && j == path.size();
}

bool ref_host_match(const std::string& pat, const std::string& host, uint32_t* spec) {
  if (pat.size() > 2 && pat[0] == '*' && pat[1] == '.') {
    std::string suffix = pat.substr(1);
    *spec = static_cast<uint32_t>(suffix.size());
    return host.size() > suffix.size() &&
           host.compare(host.size() - suffix.size(), suffix.size(), suffix) == 0;
  }
  *spec = 0xFFFF;
  return pat == host;
}

int ref_match(const config::Config& c, const std::string& path, const std::string& host,
              const std::string& method) {
  int best = -1;
  std::tuple<int, int, size_t, int, size_t, uint32_t> best_key;
  for (size_t i = 0; i < c.routes.size(); ++i) {
    const config::Route& r = c.routes[i];
    if (!r.enabled) continue;
    if (!r.methods.empty() && std::find(r.methods.begin(), r.methods.end(), method) == r.methods.end())
      continue;
    for (const std::string& u : r.uris) {
      bool exact, star;
      size_t prefix, literal;
      if (!ref_uri_match(u, path, &exact, &prefix, &star, &literal)) continue;
      std::vector<uint32_t> host_specs;
      if (r.hosts.empty()) host_specs.push_back(0);
      for (const std::string& h : r.hosts) {
        uint32_t spec;
        if (ref_host_match(h, host, &spec)) host_specs.push_back(spec);
      }
      for (uint32_t hs : host_specs) {
        auto key = std::make_tuple(r.priority, exact ? 1 : 0, prefix, star ? 0 : 1, literal, hs);
        if (best < 0 || key > best_key) {
          best = static_cast<int>(i);
          best_key = key;
        }
      }
    }
  }
  return best;
}

TEST(RouterScale, RandomizedAgainstReference) {
  std::mt19937 rng(777);
  // Includes two long segments sharing their first 16 bytes (the edge table keeps 16 bytes inline) and an
  // empty one.
  const std::vector<std::string> segs = {
      "a", "b", "ab", "users", "u", "x1", "averyveryverylongsegment1", "averyveryverylongsegment2", ""};
  const std::vector<std::string> hosts = {"a.com", "b.a.com", "c.b.a.com", "d.org"};
  const std::vector<std::string> methods = {"GET", "POST"};
  int queries = 0, matched = 0;
  for (int round = 0; round < 200; ++round) {
    config::Config c;
    int n = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) {
      config::Route route;
      int uri_n = 1 + static_cast<int>(rng() % 2);
      for (int k = 0; k < uri_n; ++k) {
        std::string u;
        int depth = static_cast<int>(rng() % 4);
        for (int d = 0; d < depth; ++d) u += "/" + (rng() % 4 == 0 ? ":p" : segs[rng() % segs.size()]);
        switch (rng() % 4) {
          case 0:
            u += "/*";
            break;
          case 1:
            u += "*";
            if (u == "*") u = "/*";
            break;
          default:
            if (u.empty()) u = "/";
            break;
        }
        route.uris.push_back(u);
      }
      switch (rng() % 4) {
        case 0:
          route.hosts = {hosts[rng() % hosts.size()]};
          break;
        case 1:
          route.hosts = {"*.a.com"};
          break;
        case 2:
          route.hosts = {"*.b.a.com", hosts[rng() % hosts.size()]};
          break;
        default:
          break;
      }
      if (rng() % 3 == 0) route.methods = {methods[rng() % methods.size()]};
      route.priority = static_cast<int>(rng() % 3) - 1;
      route.enabled = rng() % 10 != 0;
      route.id = std::to_string(i);
      c.routes.push_back(route);
    }
    auto r = build_ok(c);
    ASSERT_NE(r, nullptr);
    for (int q = 0; q < 300; ++q) {
      std::string path;
      int depth = static_cast<int>(rng() % 5);
      for (int d = 0; d < depth; ++d) {
        path += "/";
        if (rng() % 5 != 0) path += segs[rng() % segs.size()];
        if (rng() % 6 == 0) path += "x";
      }
      if (path.empty() || rng() % 4 == 0) path += "/";
      std::string host = rng() % 5 == 0 ? "zzz.net" : hosts[rng() % hosts.size()];
      std::string method = methods[rng() % methods.size()];
      int want = ref_match(c, path, host, method);
      ++queries;
      matched += want >= 0 ? 1 : 0;
      ASSERT_EQ(r->match(Request(path, host, method).get()), want)
          << "round " << round << " path " << path << " host " << host << " " << method;
    }
  }
  // The generator must exercise matches, not only misses.
  EXPECT_GT(matched, queries / 4) << matched << " of " << queries;
}

}  // namespace
}  // namespace portico::router
