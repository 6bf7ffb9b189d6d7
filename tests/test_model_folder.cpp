#include <gtest/gtest.h>

#include <cstdlib>

#include "core/error.hpp"
#include "io/model_folder.hpp"
#include "test_util.hpp"

namespace eaq {
namespace {

namespace fs = std::filesystem;

TEST(ModelFolder, DirectoryIsReturnedAsIs) {
  test::TempDir dir;
  EXPECT_EQ(resolve_model_path(dir.path().string()), dir.path());
}

TEST(ModelFolder, HubNameResolvesThroughRefsMain) {
  test::TempDir cache;
  const fs::path repo = cache.path() / "models--acme--tiny-bert";
  fs::create_directories(repo / "snapshots" / "abc123");
  fs::create_directories(repo / "snapshots" / "def456");
  fs::create_directories(repo / "refs");
  test::write_text(repo / "refs" / "main", "def456\n");
  test::ScopedEnv env("HF_HUB_CACHE", cache.path().string());
  EXPECT_EQ(resolve_model_path("acme/tiny-bert"), repo / "snapshots" / "def456");
}

TEST(ModelFolder, HfHomeAndSingleSnapshot) {
  test::TempDir home;
  const fs::path repo = home.path() / "hub" / "models--gpt2";
  fs::create_directories(repo / "snapshots" / "only");
  test::ScopedEnv hub("HF_HUB_CACHE", (home.path() / "nowhere").string());
  test::ScopedEnv env("HF_HOME", home.path().string());
  EXPECT_EQ(resolve_model_path("gpt2"), repo / "snapshots" / "only");
}

TEST(ModelFolder, MissingModelSaysWhereItLooked) {
  test::TempDir cache;
  test::ScopedEnv env("HF_HUB_CACHE", cache.path().string());
  try {
    resolve_model_path("acme/absent");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find((cache.path() / "models--acme--absent").string()), std::string::npos)
        << message;
    EXPECT_NE(message.find("huggingface-cli download acme/absent"), std::string::npos) << message;
  }
}

TEST(ModelFolder, BrokenRefsMainIsReported) {
  test::TempDir cache;
  const fs::path repo = cache.path() / "models--acme--x";
  fs::create_directories(repo / "refs");
  test::write_text(repo / "refs" / "main", "deadbeef");
  test::ScopedEnv env("HF_HUB_CACHE", cache.path().string());
  EXPECT_THROW(resolve_model_path("acme/x"), Error);
}

}  // namespace
}  // namespace eaq
