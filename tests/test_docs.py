"""The documentation stays true to the code and to itself: the generated
command reference is current, the README stays short, and links resolve."""

import glob
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
README_LIMIT = 9000  # Characters: the README introduces, docs/ explains.

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def _read(path):
  with open(path, encoding="utf-8") as f:
    return f.read()


def _links(text):
  """Link targets outside code, where `[x](y)` is example text, not a link."""
  text = _CODE_SPAN.sub("", _FENCE.sub("", text))
  return _INLINE_LINK.findall(text) + _REFERENCE_LINK.findall(text)


def _documents():
  return [README] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))) + (
      sorted(glob.glob(os.path.join(ROOT, "models", "*", "MODEL_CARD.md"))))


def test_cli_reference_is_current(tool):
  reference = tool("cli_reference")
  current = _read(reference.OUTPUT) if os.path.exists(reference.OUTPUT) else ""
  assert reference.render() == current, (
      f"docs/cli.md is stale: run `python {reference.COMMAND}` and commit "
      "the result")


def test_readme_is_short():
  length = len(_read(README))
  assert length < README_LIMIT, (
      f"README.md has {length} characters, over {README_LIMIT}: move detail "
      "into docs/")


def test_relative_links_resolve():
  broken = []
  for document in _documents():
    for target in _links(_read(document)):
      if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
        continue  # A URL or an anchor in the same page.
      path = os.path.normpath(os.path.join(os.path.dirname(document),
                                           target.split("#")[0]))
      if not os.path.exists(path):
        broken.append(f"{os.path.relpath(document, ROOT)}: {target}")
  assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_links_the_reference_pages():
  linked = {os.path.normpath(t.split("#")[0]) for t in _links(_read(README))}
  for page in ("docs/cli.md", "docs/format.md", "docs/training.md",
               "docs/ablation.md", "models/mean-scale-sth/MODEL_CARD.md"):
    assert page in linked, f"README.md does not link {page}"


def test_link_finder_skips_code():
  text = ("[a](x.md) `[b](y.md)` ![c](img.png \"t\")\n"
          "```\n[d](z.md)\n```\n[e]: ref.md\n")
  assert sorted(_links(text)) == ["img.png", "ref.md", "x.md"]
