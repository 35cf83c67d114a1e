// File handling around the validator: the #END marker, format dispatch, hashing, error text.
#include "config/loader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <cctype>
#include <cerrno>
#include <cstring>

#include "config/assembler.h"
#include "config/json_input.h"
#include "config/readers.h"
#include "config/tree_builder.h"
#include "config/validate.h"

namespace portico::config {
namespace {

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(length * 2, '0');
  for (unsigned int i = 0; i < length; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return out;
}

bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

// The last line that is not blank must be `#END` (surrounding spaces tolerated).
bool has_end_marker(std::string_view text) {
  size_t end = text.size();
  while (end > 0 && is_blank(text[end - 1])) --end;
  size_t start = text.rfind('\n', end == 0 ? 0 : end - 1);
  start = start == std::string_view::npos ? 0 : start + 1;
  while (start < end && is_blank(text[start])) ++start;
  return text.substr(start, end - start) == "#END";
}

}  // namespace

LoadResult parse_text(std::string_view text, Format format, bool whole_document_rules) {
  LoadResult result;
  result.content_hash = sha256_hex(text);
  Errors errors;
  if (format == Format::yaml && !has_end_marker(text)) {
    errors.add(
        "",
        "a YAML config must end with a line \"#END\" (it marks a completely written file); it is missing, "
        "so the file may be truncated or still being written");
  } else {
    detail::Assembler assembler(errors);
    detail::TreeBuilder builder(
        errors, {std::begin(detail::kSectionNames), std::end(detail::kSectionNames)},
        [&assembler](std::string_view section, size_t index, const nlohmann::json& item) {
          detail::SectionKind s;
          if (detail::section_of(section, s)) assembler.add(s, index, item);
        },
        kMaxNesting);
    const bool syntax_ok = format == Format::yaml ? detail::read_yaml(text, builder, errors)
                                                  : detail::read_json(text, builder, errors);
    if (syntax_ok && !builder.stopped()) {
      nlohmann::json root = builder.take_root();
      // A YAML file with nothing but comments (and #END) is an empty configuration.
      if (!(format == Format::yaml && root.is_null())) assembler.check_document(root);
      if (whole_document_rules) assembler.check_limit_groups();
      if (assembler.link() && errors.total() == 0) {
        result.config = assembler.take();
        result.ok = true;
      }
    }
  }
  result.errors_truncated = errors.truncated();
  result.errors = errors.take();
  result.ok = result.ok && result.errors.empty();
  return result;
}

LoadResult load_file(const std::string& path) {
  std::string text;
  std::string failure;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    failure = std::strerror(errno);
  } else {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
      failure = "is a directory";
    } else {
      if (::fstat(fd, &st) == 0 && st.st_size > 0) text.reserve(static_cast<size_t>(st.st_size));
      char buf[1 << 16];
      for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
          text.append(buf, static_cast<size_t>(n));
        } else if (n == 0) {
          break;
        } else if (errno != EINTR) {
          failure = std::strerror(errno);
          break;
        }
      }
    }
    ::close(fd);
  }
  if (!failure.empty()) {
    LoadResult result;
    result.errors.push_back(FieldError{"", "cannot read the file: " + failure});
    return result;
  }
  Format format = Format::yaml;
  if (path.size() >= 5) {
    std::string ext = path.substr(path.size() - 5);
    for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (ext == ".json") format = Format::json;
  }
  return parse_text(text, format);
}

std::string LoadResult::describe(std::string_view file) const {
  std::string out;
  auto start_entry = [&] {
    if (!out.empty()) out += "; ";
    if (!file.empty()) {
      out.append(file);
      out += ": ";
    }
  };
  for (const FieldError& e : errors) {
    start_entry();
    if (!e.path.empty()) {
      out += e.path;
      out += ": ";
    }
    out += e.reason;
  }
  if (errors_truncated) {
    start_entry();
    out += "more errors not shown (only the first " + std::to_string(errors.size()) + " are reported)";
  }
  return out;
}

}  // namespace portico::config
