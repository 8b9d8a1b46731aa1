// The streaming writer (StreamHfModel): tensors handed over as views, kept buffers or produced
// bytes come out in order and intact whatever the number in flight; `after_write` runs once per
// tensor after its bytes are in the file; a failing producer leaves no output and names the tensor.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <mutex>

#include "io/hf_model.h"
#include "io/model_fixtures.h"

namespace escale {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

TEST(StreamWriter, EveryWayOfHandingOverBytesRoundTripsInOrder) {
  const ModelConfig c = testing::TinyLlama();
  TempDir tmp;
  const auto weights = testing::WriteRandomModel(tmp / "src", c, testing::QuietOptions());
  for (size_t in_flight : {1, 2, 5}) {
    SCOPED_TRACE("in_flight " + std::to_string(in_flight));
    WriteOptions opt = testing::QuietOptions();
    opt.in_flight = in_flight;
    std::vector<std::string> produced, written;
    std::mutex mu;
    std::atomic<int> live_buffers{0};
    size_t k = 0;
    const Status st = StreamHfModel(
        tmp / ("out" + std::to_string(in_flight)), c,
        [&](const TensorSpec& s, size_t n) -> Result<TensorBytes> {
          const Tensor& t = weights.at(s.name);
          EXPECT_EQ(n, t.nbytes());
          produced.push_back(s.name);
          TensorBytes b;
          if (k++ % 2 == 0) {
            b.bytes = t.bytes();  // a view of memory owned elsewhere
          } else {
            // A kept copy: must stay alive until written, and be let go afterwards.
            auto copy = std::shared_ptr<std::byte[]>(new std::byte[n]);
            std::memcpy(copy.get(), t.bytes(), n);
            ++live_buffers;
            b.bytes = copy.get();
            b.keep = std::shared_ptr<const void>(
                copy.get(), [copy, &live_buffers](const void*) { --live_buffers; });
          }
          EXPECT_LE(live_buffers.load(), static_cast<int>(in_flight));
          b.after_write = [&mu, &written, name = s.name] {
            std::lock_guard lock(mu);
            written.push_back(name);
          };
          return b;
        },
        opt);
    ASSERT_TRUE(st.ok()) << st.message();
    EXPECT_EQ(live_buffers.load(), 0);
    EXPECT_EQ(produced, written);
    EXPECT_EQ(written.size(), CanonicalTensors(c).size());
    auto m = ReadHfModel(tmp / ("out" + std::to_string(in_flight)));
    ASSERT_TRUE(m.ok()) << m.status().message();
    for (const auto& [name, t] : weights) {
      ASSERT_EQ(m->at(name).nbytes(), t.nbytes());
      EXPECT_EQ(std::memcmp(m->at(name).bytes(), t.bytes(), t.nbytes()), 0) << name;
    }
  }
}

TEST(StreamWriter, AFailingProducerLeavesNoOutputAndNamesTheTensor) {
  const ModelConfig c = testing::TinyLlama();
  TempDir tmp;
  const auto weights = testing::WriteRandomModel(tmp / "src", c, testing::QuietOptions());
  int calls = 0;
  const Status st = StreamHfModel(
      tmp / "out", c,
      [&](const TensorSpec& s, size_t) -> Result<TensorBytes> {
        ++calls;
        if (s.name == "layers.1.wk") return IoError("disk on fire");
        TensorBytes b;
        b.bytes = weights.at(s.name).bytes();
        return b;
      },
      testing::QuietOptions());
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("layers.1.wk"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("disk on fire"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(tmp / "out"));
  // The producer stopped at the failing tensor instead of running to the end.
  size_t index = 0;
  for (const TensorSpec& s : CanonicalTensors(c)) {
    if (s.name == "layers.1.wk") break;
    ++index;
  }
  EXPECT_EQ(calls, static_cast<int>(index) + 1);
  for (const auto& e : fs::directory_iterator(tmp.path())) EXPECT_EQ(e.path().filename(), "src");
}

}  // namespace
}  // namespace escale
