"""A user-shaped file of public documents this repository does not ship: ScanCode's licence *rule* texts.

``licensedcode-data`` 32.1.0 (PyPI wheel, data CC-BY-4.0, nexB Inc. and others) holds 34,859
``licensedcode/data/rules/*.RULE`` files, each a YAML front matter (``license_expression``, the kind
of rule: ``is_license_text`` / ``_notice`` / ``_reference`` / ...) and a text. This script keeps the
rules of one kind whose expression is a single licence key with at least ``--min-count`` rules, and
writes them as JSON lines ``{"id": <rule file>, "text": ..., "label": <licence key>}``: no split, as
a user's file would come. The built-in demo data are the *licence* files of the same wheel
(``licenses/*.LICENSE``, labelled by category), not these rules.

    pip download --no-deps licensedcode-data==32.1.0 -d /tmp/lcd
    python -m mambatune.domains.documents.rule_texts /tmp/lcd/licensedcode_data-32.1.0-py3-none-any.whl \\
        --out rules.jsonl --kind text --min-count 50

Prints what it kept and left out (empty texts, expressions of several keys, rare keys).
"""
from __future__ import annotations

import argparse
import json
import zipfile
from collections import Counter
from pathlib import Path

import yaml

from .data import decode_utf8

RULE_DIR = "licensedcode/data/rules/"
KINDS = ("text", "notice", "reference", "tag", "intro", "clue")


def read_rules(wheel: str | Path, kind: str = "text") -> tuple[list[dict], Counter]:
    """(rules of ``kind`` whose expression is one licence key: id, text, label; counts of what was left out)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    counts: Counter = Counter()
    rows = []
    with zipfile.ZipFile(wheel) as z:
        names = sorted(n for n in z.namelist() if n.startswith(RULE_DIR) and n.endswith(".RULE"))
        if not names:
            raise ValueError(f"{wheel} holds no {RULE_DIR}*.RULE files; is it licensedcode-data?")
        for name in names:
            text, n_bad = decode_utf8(z.read(name), "replace")
            counts["non_utf8_rules"] += n_bad > 0
            lines = text.split("\n")
            end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
            if lines[0].strip() != "---" or end is None:
                counts["no_front_matter"] += 1
                continue
            meta = yaml.safe_load("\n".join(lines[1:end])) or {}
            counts["rules"] += 1
            if not meta.get(f"is_license_{kind}"):
                continue
            counts[f"{kind}_rules"] += 1
            body = "\n".join(lines[end + 1:]).strip()
            expression = str(meta.get("license_expression") or "").strip()
            if not body:
                counts["empty_text"] += 1
            elif not expression or any(op in f" {expression} " for op in (" AND ", " OR ", " WITH ", "(")):
                counts["several_keys"] += 1
            else:
                rows.append({"id": Path(name).name, "text": body, "label": expression})
    return rows, counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("wheel", help="licensedcode_data-32.1.0-py3-none-any.whl")
    parser.add_argument("--out", required=True, help="the JSON-lines file to write")
    parser.add_argument("--kind", default="text", choices=KINDS, help="which rules (default: whole licence texts)")
    parser.add_argument("--min-count", type=int, default=50, help="keep licence keys with at least this many rules")
    args = parser.parse_args(argv)
    rows, counts = read_rules(args.wheel, args.kind)
    per_label = Counter(r["label"] for r in rows)
    keep = {k for k, n in per_label.items() if n >= args.min_count}
    kept = [r for r in rows if r["label"] in keep]
    counts["rare_key_rules"] = len(rows) - len(kept)
    out = Path(args.out)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    words = sorted(len(r["text"].split()) for r in kept)
    print(f"{out}: {len(kept)} rules, {len(keep)} licence keys, median {words[len(words) // 2]} words; "
          f"per key: {dict(Counter(r['label'] for r in kept).most_common())}; left out: {dict(counts)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
