// escale tokenizer {encode, decode, train}: BPE (byte-level or SentencePiece-style) from a Hugging
// Face tokenizer.json; training writes byte-level BPE.
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "cli/command.h"
#include "core/atomic_output.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/tokenizer.h"

namespace escale::cli {
namespace {

struct Options {
  std::string tokenizer;
  std::string text;
  std::string file;
  std::string ids;
  bool json = false;
  bool no_special = false;
  bool add_special = false;
  bool skip_special = false;
  // train
  std::vector<std::string> inputs;
  int vocab_size = 0;
  std::vector<std::string> specials;
  std::string output;
  int min_frequency = 2;
  bool overwrite = false;
};

Result<std::string> ReadInput(const Options& o) {
  if (!o.file.empty()) {
    auto r = ReadSmallFile(o.file, size_t{1} << 31);
    if (!r.ok()) return r.status().WithContext("reading --file");
    return r;
  }
  return o.text;
}

Status RunEncode(const Options& o) {
  if (!o.text.empty() && !o.file.empty()) return InvalidArgument("give --text or --file, not both");
  ESCALE_ASSIGN_OR_RETURN(auto tok, tok::Tokenizer::FromFile(o.tokenizer));
  ESCALE_ASSIGN_OR_RETURN(std::string input, ReadInput(o));
  tok::EncodeOptions opts;
  opts.parse_special = !o.no_special;
  opts.add_special_tokens = o.add_special;
  ESCALE_ASSIGN_OR_RETURN(const std::vector<int32_t> ids, tok->TryEncode(input, opts));
  if (o.json) {
    nlohmann::json j;
    j["ids"] = ids;
    nlohmann::json tokens = nlohmann::json::array();
    for (int32_t id : ids) tokens.push_back(tok->IdToToken(id));
    j["tokens"] = tokens;
    j["count"] = ids.size();
    std::printf("%s\n", j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return Status::Ok();
  }
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) line.push_back(',');
    line += std::to_string(ids[i]);
  }
  std::printf("%s\n", line.c_str());
  return Status::Ok();
}

Result<std::vector<int32_t>> ParseIds(const std::string& s) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ',' || s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '[' || s[i] == ']')) ++i;
    if (i >= s.size()) break;
    size_t j = i;
    while (j < s.size() && s[j] >= '0' && s[j] <= '9') ++j;
    if (j == i || j - i > 9) {
      return InvalidArgument("cannot read a token id at \"" + s.substr(i, 12) +
                             "\" (expected comma-separated non-negative integers)");
    }
    ids.push_back(std::stoi(s.substr(i, j - i)));
    i = j;
  }
  return ids;
}

Status RunDecode(const Options& o) {
  if (o.ids.empty() == o.file.empty()) return InvalidArgument("give exactly one of --ids or --file");
  ESCALE_ASSIGN_OR_RETURN(auto tok, tok::Tokenizer::FromFile(o.tokenizer));
  std::string text = o.ids;
  if (!o.file.empty()) {
    ESCALE_ASSIGN_OR_RETURN(text, ReadSmallFile(o.file, size_t{1} << 31));
  }
  ESCALE_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ParseIds(text));
  ESCALE_ASSIGN_OR_RETURN(std::string bytes, tok->Decode(ids, o.skip_special));
  std::fwrite(bytes.data(), 1, bytes.size(), stdout);  // exact bytes, no newline added
  return Status::Ok();
}

Status RunTrain(const Options& o) {
  tok::TrainOptions t;
  t.inputs = o.inputs;
  t.vocab_size = o.vocab_size;
  t.special_tokens = o.specials;
  t.min_frequency = o.min_frequency;
  ESCALE_ASSIGN_OR_RETURN(std::string json, tok::TrainByteLevelBpe(t));
  if (!o.overwrite) {
    FILE* f = std::fopen(o.output.c_str(), "rb");
    if (f != nullptr) {
      std::fclose(f);
      return InvalidArgument(o.output + " exists; pass --overwrite to replace it");
    }
  }
  ESCALE_RETURN_IF_ERROR(WriteFileAtomic(o.output, json));
  std::fprintf(stderr, "wrote %s\n", o.output.c_str());
  return Status::Ok();
}

CommandRegistration reg(60, [](CLI::App& app) -> RunFn {
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "tokenizer",
      "BPE tokenizers: byte-level or SentencePiece-style (Hugging Face tokenizer.json)");
  cmd->require_subcommand(1);

  CLI::App* enc = cmd->add_subcommand("encode", "Text -> token ids (comma-separated, or --json)");
  enc->add_option("tokenizer", o->tokenizer, "tokenizer.json")->required()->check(CLI::ExistingFile);
  enc->add_option("--text", o->text, "Text to encode");
  enc->add_option("--file", o->file, "File whose bytes are encoded")->check(CLI::ExistingFile);
  enc->add_flag("--json", o->json, "Print {\"ids\", \"tokens\", \"count\"}");
  enc->add_flag("--no-special", o->no_special, "Treat special-token strings in the text as plain text");
  enc->add_flag("--add-special", o->add_special, "Apply the post-processor template (e.g. BOS)");

  CLI::App* dec = cmd->add_subcommand("decode", "Token ids -> exact bytes on stdout");
  dec->add_option("tokenizer", o->tokenizer, "tokenizer.json")->required()->check(CLI::ExistingFile);
  dec->add_option("--ids", o->ids, "Comma-separated ids");
  dec->add_option("--file", o->file, "File of ids (commas, spaces or newlines)")->check(CLI::ExistingFile);
  dec->add_flag("--skip-special", o->skip_special, "Leave special tokens out");

  CLI::App* tr = cmd->add_subcommand("train", "Train a byte-level BPE tokenizer; writes tokenizer.json");
  tr->add_option("files", o->inputs, "Text files (plain text, or JSONL with a \"text\" field)")
      ->required()->check(CLI::ExistingPath);
  tr->add_option("--vocab-size", o->vocab_size, "Vocabulary size including the 256 bytes and specials")
      ->required()->check(CLI::Range(257, 1 << 22));
  tr->add_option("--special", o->specials, "Special tokens, added after the merges (repeatable)");
  tr->add_option("--min-frequency", o->min_frequency, "Stop when the best pair occurs fewer times")
      ->check(CLI::Range(1, 1 << 30));
  tr->add_option("-o,--output", o->output, "Output tokenizer.json")->required();
  tr->add_flag("--overwrite", o->overwrite, "Replace an existing output");

  return [o, enc, dec, tr]() -> Status {
    if (enc->parsed()) return RunEncode(*o);
    if (dec->parsed()) return RunDecode(*o);
    if (tr->parsed()) return RunTrain(*o);
    return InvalidArgument("choose encode, decode or train");
  };
});

}  // namespace
}  // namespace escale::cli
