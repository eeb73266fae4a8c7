"""Every citation of the science resolves to an anchor of docs/protocol.md, and nothing points outside the checkout.

Cited ids (docs/protocol.md, "How to cite"): metrics M1–M12 and M3b, groups E1–E7 and X1.., discrepancies D1–D21
(D2a, D2b), choices Q1–Q14, and section numbers §N / §N.M. An id's anchor is its lower-case form (M4 -> m4), a
section's is `s` + the number with hyphens (§1.3 -> s1-3). Pure text checks, no imports of the package.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL = ROOT / "docs" / "protocol.md"
THIS = Path(__file__).resolve().relative_to(ROOT).as_posix()
SCANNED_DIRS = ("src", "workflow", "config", "tests", "bench", "docs")
SCANNED_FILES = ("README.md", "Snakefile", ".ci/run")
BINARY = {".png", ".pdf", ".npy", ".parquet", ".pt", ".ckpt", ".safetensors", ".bin", ".gz", ".zip"}

ID = re.compile(r"(?<!\w)([MEDQX])(\d{1,2})([a-z]?)(?!\w)")
SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*)")
NOQA = re.compile(r"noqa:\s*[A-Z]+\d+(?:\s*,\s*[A-Z]+\d+)*")  # ruff codes such as E402 are not protocol ids
ANCHOR = re.compile(r'<a id="([^"]+)"></a>')
LINK = re.compile(r"protocol\.md#([\w-]+)")
STALE = re.compile(r"\b[Ss]pec\b[ :]*(?:§|[MEDQX]\d)|\(spec: (?:\d|the\b)|\bthe spec's\b")  # still citing the old spec
SPEC_FILE = "paper_spec" + ".md"  # spelled in two parts so this file does not match itself
OUTSIDE = ".." + "/shared"
# Only CI may name the data beside the checkout (issue 15): .ci/run exports it to the tests as
# $SPARSECOD_TEST_EVAL_DATA / $SPARSECOD_TEST_TOKENIZER; no shipped config, doc or code names it.
KNOWN_OUTSIDE = {".ci/run"}

# what the protocol must define: the paper's full sets of metrics, groups, discrepancies and choices
REQUIRED = ([f"m{i}" for i in range(1, 13)] + ["m3b"] + [f"e{i}" for i in range(1, 8)]
            + [f"d{i}" for i in range(1, 22)] + ["d2a", "d2b"] + [f"q{i}" for i in range(1, 15)]
            + ["s1", *(f"s1-{i}" for i in range(1, 7)), "s2", "s3", "s4", "s5", "s6", "s7", "s8"])


def _repo_files() -> list[Path]:
    """The text files of the scanned directories and root files (tracked or not yet tracked; no build outputs)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--",
                              *SCANNED_DIRS, *SCANNED_FILES], cwd=ROOT, capture_output=True, check=True).stdout
        paths = [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.CalledProcessError):  # not a git checkout: walk the directories
        paths = [p for d in SCANNED_DIRS for p in (ROOT / d).rglob("*")] + [ROOT / f for f in SCANNED_FILES]
        paths = [p for p in paths if not any(part.startswith(".") or part == "__pycache__"
                                             or part.endswith(".egg-info") for part in p.relative_to(ROOT).parts)]
    return sorted(p for p in paths if p.is_file() and p.suffix not in BINARY)


def _texts() -> dict[str, str]:
    texts = {}
    for path in _repo_files():
        try:
            texts[path.relative_to(ROOT).as_posix()] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return texts


TEXTS = _texts()
ANCHORS = set(ANCHOR.findall(PROTOCOL.read_text(encoding="utf-8")))


def anchor_of_id(letter: str, number: str, suffix: str) -> str:
    """M4 -> 'm4', M3b -> 'm3b'."""
    return f"{letter.lower()}{int(number)}{suffix}"


def anchor_of_section(number: str) -> str:
    """§1.3 -> 's1-3'."""
    return "s" + number.replace(".", "-")


def citations(text: str) -> list[tuple[int, str, str]]:
    """(line number, cited form, anchor) of every id and section number in `text`."""
    found = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = NOQA.sub("", line)
        found += [(lineno, m.group(0), anchor_of_id(*m.groups())) for m in ID.finditer(line)]
        found += [(lineno, m.group(0), anchor_of_section(m.group(1))) for m in SECTION.finditer(line)]
    return found


def _offenders(pattern: str | re.Pattern) -> list[str]:
    """file:line of every line matching `pattern`, outside this file (whose examples would match)."""
    regex = re.compile(re.escape(pattern)) if isinstance(pattern, str) else pattern
    return [f"{name}:{lineno}" for name, text in TEXTS.items() if name != THIS
            for lineno, line in enumerate(text.splitlines(), 1) if regex.search(line)]


def test_scan_sees_the_code_and_its_citations() -> None:
    assert "src/sparsecod/metrics/causal.py" in TEXTS and "docs/protocol.md" in TEXTS
    assert len(TEXTS) > 100
    assert sum(len(citations(t)) for t in TEXTS.values()) > 300


def test_citation_parsing_on_known_lines() -> None:
    line = 'M4 (protocol §2 M4, D2, Q6), M3b, D2a; §1.2-§1.4; E1–E6; x = 1E5  # noqa: E402'
    assert [a for _, _, a in citations(line)] == ["m4", "m4", "d2", "q6", "m3b", "d2a", "e1", "e6", "s2", "s1-2",
                                                  "s1-4"]
    old = "spec"  # kept apart from the cited forms so the citation rewrite leaves these examples alone
    assert STALE.search(f"{old} §1.3") and STALE.search(f"({old} M4)") and STALE.search(f"{old.title()} M1 by hand")
    assert STALE.search(f"({old}: 511 of 512)") and STALE.search(f"the {old}'s choices")
    assert not STALE.search("protocol §1.3") and not STALE.search("RunSpec(spec.run_id)")
    assert not STALE.search("def tokenizer_kind(spec: str) -> str:")


def test_protocol_defines_every_paper_id_and_section() -> None:
    missing = [a for a in REQUIRED if a not in ANCHORS]
    assert not missing, f"docs/protocol.md lacks the anchors {missing}"


def test_protocol_anchors_are_unique() -> None:
    ids = ANCHOR.findall(PROTOCOL.read_text(encoding="utf-8"))
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


def test_every_cited_id_and_section_is_defined() -> None:
    undefined = [f"{name}:{lineno}: {form}" for name, text in TEXTS.items()
                 for lineno, form, anchor in citations(text) if anchor not in ANCHORS]
    assert not undefined, ("cited but not defined in docs/protocol.md (add the section with its "
                           '<a id="..."></a> anchor, or fix the citation):\n' + "\n".join(undefined))


def test_every_link_into_the_protocol_resolves() -> None:
    broken = [f"{name}: #{a}" for name, text in TEXTS.items() for a in LINK.findall(text) if a not in ANCHORS]
    internal = re.findall(r"\]\(#([\w-]+)\)", PROTOCOL.read_text(encoding="utf-8"))
    broken += [f"docs/protocol.md: #{a}" for a in internal if a not in ANCHORS]
    assert not broken, broken


def test_citations_name_the_protocol_not_the_old_spec() -> None:
    stale = _offenders(STALE)
    assert not stale, ("citations that still say 'spec': write 'protocol §1.3', 'protocol M4' (docs/protocol.md):\n"
                       + "\n".join(stale))


def test_nothing_cites_the_spec_file() -> None:
    assert not _offenders(SPEC_FILE), _offenders(SPEC_FILE)


def test_nothing_points_outside_the_checkout_at_all() -> None:
    offenders = _offenders(OUTSIDE)
    assert {o.split(":")[0] for o in offenders} <= KNOWN_OUTSIDE, offenders
    assert ".ci/run" in TEXTS, "the scan must see .ci/run"


def test_ci_names_the_outside_data_only_in_the_test_variables() -> None:
    lines = [line for line in TEXTS[".ci/run"].splitlines() if OUTSIDE in line]
    assert lines and all(re.match(r'export SPARSECOD_TEST_[A-Z_]+="\$\{SPARSECOD_TEST_[A-Z_]+:-\$PWD/', line)
                         for line in lines), lines


def test_readme_and_config_header_point_at_the_protocol() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/protocol.md" in readme.split("## Scales")[0]
    header = [line for line in (ROOT / "config" / "config.yaml").read_text(encoding="utf-8").splitlines()
              if line.startswith("#")][:8]
    assert any("docs/protocol.md" in line for line in header), header
