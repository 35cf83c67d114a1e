// basic::parse reads `Authorization: Basic` values with APISIX's messages (stricter where documented), and
// the shared strict base64 decoder accepts exactly one encoding per byte string.
#include <gtest/gtest.h>

#include <string>

#include "plugins/base64.h"
#include "plugins/basic_credentials.h"

namespace portico::plugins {
namespace {

std::string b64(std::string_view text) {
  return b64::encode(text, b64::Alphabet::standard, /*pad=*/true);
}

// "user|password", or "message / detail" of the refusal.
std::string parsed(std::string_view value) {
  basic::Error error;
  auto credentials = basic::parse(value, error);
  if (credentials) return credentials->user + "|" + credentials->password;
  return error.message + " / " + error.detail;
}

const std::string kFormat = "Invalid authorization in request / Invalid authorization header format";
const std::string kDecode = "Invalid authorization in request / Failed to decode authentication header";
const std::string kSplit = "Invalid authorization in request / Split authorization err: invalid decoded data";

TEST(BasicCredentials, ParsesUserAndPassword) {
  EXPECT_EQ(parsed("Basic " + b64("foo:bar")), "foo|bar");
  EXPECT_EQ(parsed("Basic Zm9vOmJhcg=="), "foo|bar");
  EXPECT_EQ(parsed("basic Zm9vOmJhcg=="), "foo|bar");
  EXPECT_EQ(parsed("BASIC\tZm9vOmJhcg=="), "foo|bar");
  EXPECT_EQ(parsed("Basic " + b64("user:")), "user|");
  EXPECT_EQ(parsed("Basic " + b64("us er:p a s s")), "us er|p a s s");  // APISIX would delete the spaces
  EXPECT_EQ(parsed("Basic " + b64("j\xc3\xb6rg:p\xc3\xa4ss")), "j\xc3\xb6rg|p\xc3\xa4ss");
}

TEST(BasicCredentials, SplitsAtTheFirstColon) {
  EXPECT_EQ(parsed("Basic " + b64("user:pa:ss")), "user|pa:ss");  // APISIX keeps "pa"
  EXPECT_EQ(parsed("Basic " + b64("user::")), "user|:");
}

TEST(BasicCredentials, RefusesOtherFormats) {
  for (const char* value :
       {"", "Basic", "Basic ", "Bearer Zm9vOmJhcg==", "Basi Zm9vOmJhcg==", "BasicZm9vOmJhcg==",
        "xBasic Zm9vOmJhcg==", " Basic Zm9vOmJhcg==", "Digest a=b"}) {
    EXPECT_EQ(parsed(value), kFormat) << value;
  }
}

TEST(BasicCredentials, RefusesLooseBase64) {
  for (const char* value :
       {"Basic  Zm9vOmJhcg==", "Basic Zm9vOmJhcg== ", "Basic Zm9vOmJhcg==x",
        "Basic Zm9vOmJhcg=", "Basic Zm9vOmJhch==", "Basic Zm9v-mJhcg==", "Basic Zm9vOmJhcg===", "Basic Z"}) {
    EXPECT_EQ(parsed(value), kDecode) << value;
  }
  EXPECT_EQ(parsed("Basic Zm9vOmJhcg"), "foo|bar");  // unpadded, as nginx takes it
}

TEST(BasicCredentials, RefusesDataWithoutAColonOrWithControlCharacters) {
  EXPECT_EQ(parsed("Basic " + b64("foobar")), kSplit);
  EXPECT_EQ(parsed("Basic " + b64("")), kFormat);  // nothing after the scheme
  EXPECT_EQ(parsed("Basic " + b64("foo:ba\nr")), kSplit);
  EXPECT_EQ(parsed("Basic " + b64(std::string("foo:b\0r", 7))), kSplit);
  EXPECT_EQ(parsed("Basic " + b64("fo\to:bar")), kSplit);
  EXPECT_EQ(parsed("Basic " + b64("foo:bar\x7f")), kSplit);
}

TEST(BasicCredentials, RefusesAnEmptyUserAsAnUnknownOne) {
  EXPECT_EQ(parsed("Basic " + b64(":password")),
            "Invalid user authorization / failed to find user: invalid user");
}

TEST(BasicCredentials, BoundsTheValue) {
  const std::string prefix = "Basic ";
  std::string credentials = "user:";
  while (prefix.size() + b64(credentials + "x").size() <= basic::kMaxAuthorizationBytes) credentials += "x";
  const std::string longest = prefix + b64(credentials);
  ASSERT_LE(longest.size(), basic::kMaxAuthorizationBytes);
  EXPECT_EQ(parsed(longest), "user|" + credentials.substr(5));
  EXPECT_EQ(parsed(longest + std::string(basic::kMaxAuthorizationBytes - longest.size() + 1, 'A')),
            "Invalid authorization in request / authorization header longer than 4096 bytes");
}

TEST(BasicCredentials, MessagesAreApisixs) {
  EXPECT_EQ(basic::kMissingAuthorization, "Missing authorization in request");
  EXPECT_EQ(basic::kInvalidAuthorization, "Invalid authorization in request");
  EXPECT_EQ(basic::kInvalidUser, "Invalid user authorization");
}

TEST(BasicCredentials, PasswordMatches) {
  EXPECT_TRUE(basic::password_matches("secret", "secret"));
  EXPECT_TRUE(basic::password_matches("", ""));
  EXPECT_FALSE(basic::password_matches("secret", "secreT"));
  EXPECT_FALSE(basic::password_matches("secret", "secret "));
  EXPECT_FALSE(basic::password_matches("", "secret"));
  EXPECT_FALSE(basic::password_matches(std::string("a\0b", 3), "a"));
}

// ---- the strict decoder both parsers share ---------------------------------------------------------------

std::string decoded(std::string_view in, b64::Alphabet alphabet) {
  std::string out;
  return b64::decode(in, alphabet, out) ? out : "<refused>";
}

TEST(StrictBase64, RoundTripsEveryLengthInBothAlphabets) {
  std::string bytes;
  for (int n = 0; n < 40; ++n) {
    for (auto alphabet : {b64::Alphabet::standard, b64::Alphabet::url}) {
      const std::string padded = b64::encode(bytes, alphabet, true);
      const std::string bare = b64::encode(bytes, alphabet, false);
      EXPECT_EQ(decoded(bare, alphabet), bytes) << n;
      EXPECT_EQ(decoded(padded, alphabet),
                alphabet == b64::Alphabet::standard || padded == bare ? bytes : "<refused>")
          << n;
    }
    bytes.push_back(static_cast<char>(n * 37 + 250));
  }
}

TEST(StrictBase64, KeepsEachAlphabetApart) {
  EXPECT_EQ(decoded("-_-_", b64::Alphabet::url), "\xfb\xff\xbf");
  EXPECT_EQ(decoded("-_-_", b64::Alphabet::standard), "<refused>");
  EXPECT_EQ(decoded("+/+/", b64::Alphabet::standard), "\xfb\xff\xbf");
  EXPECT_EQ(decoded("+/+/", b64::Alphabet::url), "<refused>");
}

TEST(StrictBase64, RefusesNonCanonicalAndMisplacedInput) {
  for (const char* in : {"YR==", "YWJ=", "YWK", "Y", "YWJjZ",
                         "Y===", "====", "YQ=", "=YQ=", "YQ==YQ==", "Y Q=", "YQ\n", "YQ==\n"}) {
    EXPECT_EQ(decoded(in, b64::Alphabet::standard), "<refused>") << in;
  }
  EXPECT_EQ(decoded("YQ==", b64::Alphabet::standard), "a");
  EXPECT_EQ(decoded("YQ", b64::Alphabet::standard), "a");
  EXPECT_EQ(decoded("", b64::Alphabet::standard), "");
}

}  // namespace
}  // namespace portico::plugins
