#!/usr/bin/python3
"""Turns Debian's text packages into JSONL documents ({"text", "source", "lang"}).

Sources (docs/corpus.md has versions and licences), in this output order:
  fortunes/<file>        fortune cookie files, one document per %-separated entry
  debian-reference/en    the Debian Reference plain-text book, one document per section
  debian-reference/zh-cn its Simplified Chinese translation, likewise
  dict/<name>            dictd dictionaries (foldoc, jargon, devil), one document per entry

Everything is read in a fixed order and exact duplicate texts are dropped, so the corpus is
byte-identical on every machine with the same package versions. Standard library only.
"""
import gzip
import json
import os
import re
import sys
import unicodedata

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
OVERSTRIKE = re.compile(r".\x08")


def strip_lines(text):
    lines = [ln.rstrip() for ln in text.replace("\r", "").split("\n")]
    return "\n".join(lines).strip("\n")


def tidy_lines(text):
    return re.sub(r"\n{3,}", "\n\n", strip_lines(text))


def dedent(text):
    lines = text.split("\n")
    indents = [len(ln) - len(ln.lstrip(" ")) for ln in lines if ln.strip()]
    cut = min(indents, default=0)
    return "\n".join(ln[cut:] for ln in lines)


# --- fortunes ------------------------------------------------------------------------------------

def clean_fortune(entry):
    # Broken escapes nest ("\x1b[;\x1b[34;1mm"): strip until nothing changes.
    prev = None
    while prev != entry:
        prev, entry = entry, ANSI.sub("", entry)
    entry = entry.replace("\x1b", "")
    while "\x08" in entry:
        new = OVERSTRIKE.sub("", entry)
        if new == entry:
            entry = entry.replace("\x08", "")
            break
        entry = new
    return strip_lines(entry)


def fortune_entries(path):
    with open(path, "rb") as f:
        data = f.read().decode("utf-8", errors="replace")
    cur = []
    for line in data.split("\n"):
        if line.strip("\r") == "%":
            yield "\n".join(cur)
            cur = []
        else:
            cur.append(line)
    if cur:
        yield "\n".join(cur)


def fortunes(src_dir):
    zh = {"chinese", "tang300", "song100"}
    for name in sorted(os.listdir(src_dir)):
        path = os.path.join(src_dir, name)
        if name.endswith((".dat", ".u8")) or not os.path.isfile(path) or os.path.islink(path):
            continue
        lang = "zh" if name in zh else "en"
        for e in fortune_entries(path):
            yield "fortunes/" + name, lang, clean_fortune(e)


# --- Debian Reference (plain-text rendering of the DocBook book) --------------------------------

HEADING = re.compile(r"^(Chapter \d+\.|Appendix [A-Z]\.|第 ?\d+ ?章|附录 ?[A-Z]\.|Preface$|序言$"
                     r"|[0-9A-Z]+(\.\d+)*\.\s)")
WRAP_WIDTH = 69  # the renderer wraps at 69 display columns (indentation included)


def width(s):
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def is_cjk(c):
    return unicodedata.east_asian_width(c) in "WF"


def text_indent(line):
    """Column where a wrapped continuation of `line` starts (list items hang past the marker)."""
    body = line.lstrip(" ")
    marker = re.match(r"([*+]|\d+\.) ", body)
    return len(line) - len(body) + (len(marker.group(0)) if marker else 0)


def unwrap(lines):
    """Joins lines the renderer wrapped: a full-width line followed by its continuation.

    Code and command examples are short or overlong, so they are left alone. Chinese is joined
    without a space, English with one.
    """
    out, last, hang = [], "", 0  # last physical line of out[-1], and where its paragraph hangs
    for ln in lines:
        nxt = ln.lstrip(" ")
        ind = len(ln) - len(nxt)
        if (out and nxt and last.strip() and 58 <= width(last) <= WRAP_WIDTH and ind == hang
                and not nxt.startswith(("* ", "+ ", "$ ", "# "))):
            sep = "" if is_cjk(last[-1]) or is_cjk(nxt[0]) else " "
            out[-1] += sep + nxt
        else:
            out.append(ln)
            hang = text_indent(ln)
        last = ln
    return out


def debian_reference(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [ln.rstrip().replace("\xa0", " ") for ln in f.read().split("\n")]
    # Front matter: title, abstract, a rule, the table of contents, the list of tables. The body
    # starts where the first table-of-contents entry appears again as a heading.
    rule = next(i for i, ln in enumerate(lines) if re.fullmatch(r"-{20,}", ln))
    nonblank = [i for i in range(rule + 1, len(lines)) if lines[i]]
    first_entry = lines[nonblank[1]]
    start = next(i for i in nonblank[2:] if lines[i] == first_entry)

    sections, heading, body, prev_heading = [], None, [], False
    skip_block = False
    for ln in lines[start:]:
        stripped = ln.strip()
        if skip_block:  # a per-chapter table of contents: entries up to the next blank line
            if stripped:
                continue
            skip_block = False
        if stripped in ("Table of Contents", "目录"):
            skip_block = True
            continue
        if ln and not ln[0].isspace():
            if HEADING.match(ln):
                if heading is not None:
                    sections.append((heading, body))
                heading, body, prev_heading = re.sub(r"\s+", " ", ln), [], True
                continue
            if prev_heading:  # a long heading wrapped onto the next line
                heading += " " + ln.strip()
                continue
        prev_heading = False
        # Tables (ASCII boxes) and their captions, rule lines: layout, not prose.
        if stripped.startswith(("+--", "|")) or re.fullmatch(r"[-=_+|]{3,}", stripped or "x"):
            continue
        if re.match(r"^(Table|表) ?[0-9A-Z]+\.\d+\.", stripped):
            continue
        body.append(ln)
    if heading is not None:
        sections.append((heading, body))
    for heading, body in sections:
        text = tidy_lines(dedent("\n".join(unwrap(body))))
        if len(text) >= 40:
            yield heading + "\n\n" + text


# --- dictd dictionaries ---------------------------------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
XREF = re.compile(r"\{([^{}]{1,100}?)\}")  # FOLDOC/Jargon cross-references: {word}


def b64(s):
    v = 0
    for c in s:
        v = v * 64 + B64.index(c)
    return v


def dictd(index_path, dict_path):
    with gzip.open(dict_path, "rb") as f:  # dictzip is gzip with a random-access header
        data = f.read()
    spans = set()
    with open(index_path, encoding="utf-8") as f:
        for line in f:
            head, off, length = line.rstrip("\n").split("\t")[:3]
            if head.startswith(("00-database", "00database")):
                continue
            spans.add((b64(off), b64(length)))  # aliases share a span
    for off, length in sorted(spans):
        text = data[off:off + length].decode("utf-8", errors="replace")
        text = XREF.sub(lambda m: m.group(1) if "\n\n" not in m.group(1) else m.group(0), text)
        # Entries indent headword, pronunciation and body differently: plain lines read better.
        yield tidy_lines("\n".join(ln.strip() for ln in text.split("\n")))


def labelled(source, lang, texts):
    for text in texts:
        yield source, lang, text


# --- main -----------------------------------------------------------------------------------------

def main():
    if len(sys.argv) not in (3, 4):
        sys.exit("usage: build_corpus.py OUT.jsonl SUMMARY.json [DICTD_DIR]")
    out_path, summary_path = sys.argv[1:3]
    dr = "/usr/share/debian-reference/debian-reference.{}.txt.gz"
    dd = (sys.argv[3] if len(sys.argv) == 4 else "/usr/share/dictd").rstrip("/") + "/"
    streams = [
        fortunes("/usr/share/games/fortunes"),
        labelled("debian-reference/en", "en", debian_reference(dr.format("en"))),
        labelled("debian-reference/zh-cn", "zh", debian_reference(dr.format("zh-cn"))),
    ]
    for name in ("foldoc", "jargon", "devil"):
        streams.append(labelled("dict/" + name, "en", dictd(dd + name + ".index",
                                                            dd + name + ".dict.dz")))
    seen = set()
    sources, langs = {}, {}
    total = {"documents": 0, "bytes": 0}
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        for stream in streams:
            for source, lang, text in stream:
                if not text or text in seen:
                    continue
                seen.add(text)
                out.write(json.dumps({"text": text, "source": source, "lang": lang},
                                     ensure_ascii=False) + "\n")
                n = len(text.encode("utf-8"))
                for table, key in ((sources, source), (langs, lang)):
                    row = table.setdefault(key, {"documents": 0, "bytes": 0})
                    row["documents"] += 1
                    row["bytes"] += n
                sources[source]["lang"] = lang
                total["documents"] += 1
                total["bytes"] += n
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, out_path)
    summary = dict(total, sources=sources, languages=langs)
    with open(summary_path + ".tmp", "w") as s:
        json.dump(summary, s, indent=1, sort_keys=True)
        s.write("\n")
    os.replace(summary_path + ".tmp", summary_path)
    parts = ", ".join(f"{k} {v['bytes'] / 1e6:.2f} MB" for k, v in sorted(langs.items()))
    print(f"{out_path}: {total['documents']} documents, {total['bytes'] / 1e6:.2f} MB of text "
          f"({parts})")


if __name__ == "__main__":
    main()
