#include "eval/multiple_choice.h"

#include <utf8proc.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "eval/fewshot.h"

namespace escale::eval {

namespace {

using nlohmann::json;

// Python str.strip(): Unicode whitespace at both ends.
std::string PyStrip(std::string_view s) {
  s.remove_suffix(TrailingPythonWhitespace(s));
  size_t start = 0;
  while (start < s.size()) {
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + start),
                                    static_cast<utf8proc_ssize_t>(s.size() - start), &cp);
    if (n <= 0) break;
    // Reuse the trailing-space test on the single character.
    const std::string_view ch = s.substr(start, static_cast<size_t>(n));
    if (TrailingPythonWhitespace(ch) != ch.size()) break;
    start += static_cast<size_t>(n);
  }
  return std::string(s.substr(start));
}

void AppendCodepoint(std::string& out, utf8proc_int32_t cp) {
  utf8proc_uint8_t buf[4];
  const auto n = utf8proc_encode_char(cp, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

// Python str.capitalize(): first character title case, the rest lower case (simple case mapping;
// Python's full mapping differs only for a few characters such as 'ß' and 'İ').
std::string PyCapitalize(std::string_view s) {
  std::string out;
  size_t i = 0;
  bool first = true;
  while (i < s.size()) {
    utf8proc_int32_t cp = 0;
    const auto n = utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                                    static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
    if (n <= 0) {  // invalid byte: kept as it is
      out.push_back(s[i++]);
      first = false;
      continue;
    }
    AppendCodepoint(out, first ? utf8proc_totitle(cp) : utf8proc_tolower(cp));
    first = false;
    i += static_cast<size_t>(n);
  }
  return out;
}

void ReplaceAll(std::string& s, std::string_view from, std::string_view to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
}

// lm-eval's HellaSwag preprocess: strip, " [title]" -> ". ", drop "[...]" spans (no newline
// inside, shortest match), "  " -> " " (one pass, like str.replace).
std::string HellaswagPreprocess(std::string_view in) {
  std::string s = PyStrip(in);
  ReplaceAll(s, " [title]", ". ");
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '[') {
      const size_t close = s.find_first_of("]\n", i + 1);
      if (close != std::string::npos && s[close] == ']') {
        i = close;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  ReplaceAll(out, "  ", " ");
  return out;
}

int64_t Utf8Chars(std::string_view s) {
  int64_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return n;
}

Result<std::string> Str(const json& doc, const char* key) {
  auto it = doc.find(key);
  if (it == doc.end() || !it->is_string())
    return FormatError(std::string("field \"") + key + "\" is missing or not a string");
  return it->get<std::string>();
}

Result<int> Index(const json& doc, const char* key, int64_t choices) {
  auto it = doc.find(key);
  int64_t v = -1;
  if (it != doc.end() && it->is_number_integer())
    v = it->get<int64_t>();
  else if (it != doc.end() && it->is_string()) {
    const std::string s = it->get<std::string>();
    if (!s.empty() && s.size() < 10 &&
        std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
      v = std::stoll(s);
  } else if (it != doc.end() && it->is_boolean()) {
    v = it->get<bool>() ? 1 : 0;
  }
  if (v < 0 || v >= choices)
    return FormatError(std::string("field \"") + key + "\" must be an index below " +
                       std::to_string(choices));
  return static_cast<int>(v);
}

Result<std::vector<std::string>> StrList(const json& v, const char* what) {
  if (!v.is_array() || v.size() < 2)
    return FormatError(std::string(what) + " must be a list of at least two strings");
  std::vector<std::string> out;
  for (const json& e : v) {
    if (!e.is_string()) return FormatError(std::string(what) + " must hold strings");
    out.push_back(e.get<std::string>());
  }
  return out;
}

McDoc Ordinary(std::string text, std::vector<std::string> choices, int gold) {
  McDoc d;
  d.fewshot_example = text + " " + choices[static_cast<size_t>(gold)];
  d.contexts = {std::move(text)};
  for (const auto& c : choices) d.continuations.push_back(" " + c);
  d.choice_texts = std::move(choices);
  d.gold = gold;
  return d;
}

}  // namespace

Result<TaskFormat> ParseTaskFormat(const std::string& n) {
  if (n == "generic") return TaskFormat::kGeneric;
  if (n == "arc") return TaskFormat::kArc;
  if (n == "hellaswag") return TaskFormat::kHellaswag;
  if (n == "piqa") return TaskFormat::kPiqa;
  if (n == "winogrande") return TaskFormat::kWinogrande;
  if (n == "mmlu") return TaskFormat::kMmlu;
  if (n == "boolq") return TaskFormat::kBoolq;
  return InvalidArgument(
      "task format '" + n +
      "' is not one of auto, generic, arc, hellaswag, piqa, winogrande, mmlu, boolq");
}

std::string TaskFormatName(TaskFormat f) {
  switch (f) {
    case TaskFormat::kGeneric:
      return "generic";
    case TaskFormat::kArc:
      return "arc";
    case TaskFormat::kHellaswag:
      return "hellaswag";
    case TaskFormat::kPiqa:
      return "piqa";
    case TaskFormat::kWinogrande:
      return "winogrande";
    case TaskFormat::kMmlu:
      return "mmlu";
    case TaskFormat::kBoolq:
      return "boolq";
  }
  return "?";
}

Result<TaskFormat> DetectTaskFormat(const json& d) {
  if (!d.is_object()) return FormatError("a task document must be a JSON object");
  if (d.contains("answerKey")) return TaskFormat::kArc;
  if (d.contains("ctx_a") && d.contains("endings")) return TaskFormat::kHellaswag;
  if (d.contains("goal") && d.contains("sol1")) return TaskFormat::kPiqa;
  if (d.contains("option1") && d.contains("sentence")) return TaskFormat::kWinogrande;
  if (d.contains("passage") && d.contains("question")) return TaskFormat::kBoolq;
  if (d.contains("choices") && d.contains("answer") && d.contains("question"))
    return TaskFormat::kMmlu;
  if (d.contains("choices") && d.contains("gold")) return TaskFormat::kGeneric;
  return FormatError(
      "cannot tell the task format from the fields of the first document; pass --task-format");
}

Result<McDoc> RenderDoc(TaskFormat f, const json& doc) {
  if (!doc.is_object()) return FormatError("a task document must be a JSON object");
  McDoc d;
  switch (f) {
    case TaskFormat::kGeneric: {
      const char* key = doc.contains("query") ? "query" : "context";
      ESCALE_ASSIGN_OR_RETURN(std::string q, Str(doc, key));
      ESCALE_ASSIGN_OR_RETURN(auto choices, StrList(doc.value("choices", json()), "\"choices\""));
      ESCALE_ASSIGN_OR_RETURN(int gold, Index(doc, "gold", static_cast<int64_t>(choices.size())));
      d = Ordinary(std::move(q), std::move(choices), gold);
      break;
    }
    case TaskFormat::kArc: {
      ESCALE_ASSIGN_OR_RETURN(std::string q, Str(doc, "question"));
      ESCALE_ASSIGN_OR_RETURN(std::string key, Str(doc, "answerKey"));
      const json c = doc.value("choices", json());
      if (!c.is_object())
        return FormatError("\"choices\" must be an object with \"text\" and \"label\" lists");
      ESCALE_ASSIGN_OR_RETURN(auto text, StrList(c.value("text", json()), "\"choices.text\""));
      ESCALE_ASSIGN_OR_RETURN(auto labels, StrList(c.value("label", json()), "\"choices.label\""));
      if (labels.size() != text.size())
        return FormatError("\"choices.text\" and \"choices.label\" differ in length");
      auto it = std::find(labels.begin(), labels.end(), key);
      if (it == labels.end())
        return FormatError("answerKey \"" + key + "\" is not among the choice labels");
      d = Ordinary("Question: " + q + "\nAnswer:", std::move(text),
                   static_cast<int>(it - labels.begin()));
      break;
    }
    case TaskFormat::kHellaswag: {
      ESCALE_ASSIGN_OR_RETURN(std::string label, Str(doc, "activity_label"));
      ESCALE_ASSIGN_OR_RETURN(std::string a, Str(doc, "ctx_a"));
      ESCALE_ASSIGN_OR_RETURN(std::string b, Str(doc, "ctx_b"));
      ESCALE_ASSIGN_OR_RETURN(auto endings, StrList(doc.value("endings", json()), "\"endings\""));
      for (auto& e : endings) e = HellaswagPreprocess(e);
      ESCALE_ASSIGN_OR_RETURN(int gold, Index(doc, "label", static_cast<int64_t>(endings.size())));
      d = Ordinary(HellaswagPreprocess(label + ": " + a + " " + PyCapitalize(b)),
                   std::move(endings), gold);
      break;
    }
    case TaskFormat::kPiqa: {
      ESCALE_ASSIGN_OR_RETURN(std::string goal, Str(doc, "goal"));
      ESCALE_ASSIGN_OR_RETURN(std::string s1, Str(doc, "sol1"));
      ESCALE_ASSIGN_OR_RETURN(std::string s2, Str(doc, "sol2"));
      ESCALE_ASSIGN_OR_RETURN(int gold, Index(doc, "label", 2));
      d = Ordinary("Question: " + goal + "\nAnswer:", {s1, s2}, gold);
      break;
    }
    case TaskFormat::kBoolq: {
      ESCALE_ASSIGN_OR_RETURN(std::string passage, Str(doc, "passage"));
      ESCALE_ASSIGN_OR_RETURN(std::string q, Str(doc, "question"));
      ESCALE_ASSIGN_OR_RETURN(int gold, Index(doc, "label", 2));
      d = Ordinary(passage + "\nQuestion: " + q + "?\nAnswer:", {"no", "yes"}, gold);
      break;
    }
    case TaskFormat::kMmlu: {
      ESCALE_ASSIGN_OR_RETURN(std::string q, Str(doc, "question"));
      ESCALE_ASSIGN_OR_RETURN(auto choices, StrList(doc.value("choices", json()), "\"choices\""));
      if (choices.size() != 4) return FormatError("MMLU documents have exactly four \"choices\"");
      ESCALE_ASSIGN_OR_RETURN(int gold, Index(doc, "answer", 4));
      std::string text = PyStrip(q);
      for (size_t i = 0; i < 4; ++i)
        text += "\n" + std::string(1, static_cast<char>('A' + i)) + ". " + choices[i];
      d = Ordinary(text + "\nAnswer:", {"A", "B", "C", "D"}, gold);
      std::string subject = doc.value("subject", std::string());
      std::replace(subject.begin(), subject.end(), '_', ' ');
      d.description =
          "The following are multiple choice questions (with answers) about " + subject + ".\n\n";
      break;
    }
    case TaskFormat::kWinogrande: {
      ESCALE_ASSIGN_OR_RETURN(std::string sentence, Str(doc, "sentence"));
      ESCALE_ASSIGN_OR_RETURN(std::string o1, Str(doc, "option1"));
      ESCALE_ASSIGN_OR_RETURN(std::string o2, Str(doc, "option2"));
      ESCALE_ASSIGN_OR_RETURN(int gold, Index(doc, "answer", 3));  // "1" or "2"
      if (gold == 0) return FormatError("field \"answer\" must be \"1\" or \"2\"");
      const size_t blank = sentence.find('_');
      if (blank == std::string::npos) return FormatError("field \"sentence\" has no \"_\" blank");
      d.choice_texts = {sentence.substr(0, blank) + o1, sentence.substr(0, blank) + o2};
      d.contexts = d.choice_texts;
      const std::string target = PyStrip(std::string_view(sentence).substr(blank + 1));
      d.continuations = {" " + target};
      d.gold = gold - 1;
      d.fewshot_example = d.choice_texts[static_cast<size_t>(d.gold)] + " " + target;
      break;
    }
  }
  d.source = doc;
  return d;
}

Result<std::vector<McDoc>> LoadTaskFile(const std::string& path, std::optional<TaskFormat> format,
                                        TaskFormat* detected) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open task file " + path);
  std::vector<McDoc> docs;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json doc = json::parse(line, nullptr, false);
    if (doc.is_discarded()) return FormatError(path + ":" + std::to_string(n) + ": not valid JSON");
    if (!format) {
      auto f = DetectTaskFormat(doc);
      if (!f.ok()) return FormatError(path + ":" + std::to_string(n) + ": " + f.status().message());
      format = *f;
    }
    auto d = RenderDoc(*format, doc);
    if (!d.ok()) return FormatError(path + ":" + std::to_string(n) + ": " + d.status().message());
    docs.push_back(std::move(*d));
  }
  if (in.bad()) return IoError("reading " + path + " failed");
  if (docs.empty()) return FormatError(path + " holds no documents");
  if (detected && format) *detected = *format;
  return docs;
}

Result<McResult> EvaluateMultipleChoice(LmScorer& scorer, RequestEncoder& enc,
                                        const std::vector<McDoc>& all_docs,
                                        const std::vector<McDoc>& pool_in, const McOptions& opt,
                                        const std::function<void(int64_t, int64_t)>& done) {
  const size_t n_docs =
      opt.limit >= 0 ? std::min(all_docs.size(), static_cast<size_t>(opt.limit)) : all_docs.size();
  const bool same_split = pool_in.empty();
  const std::vector<McDoc>& pool = same_split ? all_docs : pool_in;
  // lm-eval draws the examples of every document, in order, from one generator.
  ESCALE_ASSIGN_OR_RETURN(
      FewshotDraw draw,
      FewshotDraw::Create(static_cast<int64_t>(pool.size()), opt.num_fewshot, same_split,
                          opt.sampler == FewshotSampler::kFirstN, opt.fewshot_seed));
  std::vector<TokenRequest> requests;
  std::vector<size_t> first_request(n_docs + 1);
  McResult result;
  result.docs.resize(n_docs);
  for (size_t i = 0; i < n_docs; ++i) {
    const McDoc& d = all_docs[i];
    std::string prefix = d.description;
    for (int64_t p :
         draw.Next([&](int64_t j) { return pool[static_cast<size_t>(j)].source == d.source; }))
      prefix += pool[static_cast<size_t>(p)].fewshot_example + "\n\n";
    first_request[i] = requests.size();
    const size_t n_choices = d.choice_texts.size();
    for (size_t c = 0; c < n_choices; ++c) {
      const std::string& ctx = d.contexts.size() == 1 ? d.contexts[0] : d.contexts[c];
      const std::string& cont =
          d.continuations.size() == 1 ? d.continuations[0] : d.continuations[c];
      requests.push_back(enc.EncodePair(prefix + ctx, cont));
    }
    ESCALE_RETURN_IF_ERROR(enc.Check("document " + std::to_string(i + 1)));
    result.docs[i].context = prefix + d.contexts[0];
  }
  first_request[n_docs] = requests.size();
  const auto total = static_cast<int64_t>(requests.size());
  ESCALE_ASSIGN_OR_RETURN(std::vector<LogLikelihood> lls, scorer.Score(requests, [&](int64_t n) {
    if (done) done(n, total);
  }));
  double correct = 0, correct_norm = 0, correct_bytes = 0;
  for (size_t i = 0; i < n_docs; ++i) {
    const McDoc& d = all_docs[i];
    McDocResult& r = result.docs[i];
    r.gold = d.gold;
    double best = -INFINITY, best_norm = -INFINITY, best_bytes = -INFINITY;
    for (size_t c = 0; c < d.choice_texts.size(); ++c) {
      const LogLikelihood& ll = lls[first_request[i] + c];
      r.logprobs.push_back(ll.logprob);
      r.greedy.push_back(ll.greedy);
      // np.argmax: the first of equal maxima wins, hence strict comparisons.
      // An empty choice would divide by zero; lm-eval would produce inf there. Count it as 1.
      const double chars = static_cast<double>(std::max<int64_t>(1, Utf8Chars(d.choice_texts[c])));
      const double bytes = static_cast<double>(std::max<size_t>(1, d.choice_texts[c].size()));
      if (ll.logprob > best) best = ll.logprob, r.pred = static_cast<int>(c);
      if (ll.logprob / chars > best_norm)
        best_norm = ll.logprob / chars, r.pred_norm = static_cast<int>(c);
      if (ll.logprob / bytes > best_bytes)
        best_bytes = ll.logprob / bytes, r.pred_bytes = static_cast<int>(c);
    }
    correct += r.pred == r.gold;
    correct_norm += r.pred_norm == r.gold;
    correct_bytes += r.pred_bytes == r.gold;
  }
  const auto n = static_cast<double>(n_docs);
  result.documents = static_cast<int64_t>(n_docs);
  if (n_docs > 0) {
    result.acc = correct / n;
    result.acc_norm = correct_norm / n;
    result.acc_bytes = correct_bytes / n;
    result.acc_stderr = n_docs > 1 ? std::sqrt(result.acc * (1 - result.acc) / (n - 1)) : 0.0;
  }
  return result;
}

}  // namespace escale::eval
