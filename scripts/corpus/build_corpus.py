#!/usr/bin/python3
"""Turns Debian's fortune cookie files into JSONL documents ({"text", "source", "lang"}).

Cleaning: strip ANSI colour escapes and backspace overstriking, drop CR, split entries on lines
that are exactly "%", trim, drop empty entries and exact duplicates. Output order is the sorted
file order, then entry order, so the corpus is byte-identical on every machine with the same
package versions. Standard library only.
"""
import json
import os
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
OVERSTRIKE = re.compile(r".\x08")


def clean(entry):
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
    entry = entry.replace("\r", "")
    lines = [ln.rstrip() for ln in entry.split("\n")]
    return "\n".join(lines).strip("\n")


def entries(path):
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


def main():
    if len(sys.argv) != 4:
        sys.exit("usage: build_corpus.py FORTUNE_DIR OUT.jsonl SUMMARY.json")
    src_dir, out_path, summary_path = sys.argv[1:]
    zh = {"chinese", "tang300", "song100"}
    seen = set()
    summary = {"files": {}, "documents": 0, "bytes": 0}
    tmp = out_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as out:
        for name in sorted(os.listdir(src_dir)):
            path = os.path.join(src_dir, name)
            if name.endswith((".dat", ".u8")) or not os.path.isfile(path) or os.path.islink(path):
                continue
            lang = "zh" if name in zh else "en"
            n = 0
            for e in entries(path):
                text = clean(e)
                if not text or text in seen:
                    continue
                seen.add(text)
                line = json.dumps({"text": text, "source": "fortunes/" + name, "lang": lang},
                                  ensure_ascii=False)
                out.write(line + "\n")
                n += 1
                summary["bytes"] += len(text.encode("utf-8"))
            summary["files"][name] = {"documents": n, "lang": lang}
            summary["documents"] += n
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, out_path)
    with open(summary_path + ".tmp", "w") as s:
        json.dump(summary, s, indent=1, sort_keys=True)
    os.replace(summary_path + ".tmp", summary_path)
    print(f"{out_path}: {summary['documents']} documents, {summary['bytes'] / 1e6:.2f} MB of text")


if __name__ == "__main__":
    main()
