"""`pydoc_cont4`: the embedded multiple-choice task of the small scales (protocol M12, "Embedded evaluation task").

Which of four continuations follows this passage? Built offline, deterministically from a seed, out of the
*held-out* documents of the builtin corpus (data/builtin.py; the held-out rule of data/corpus.py with the
configured `data.heldout_fraction`, so with `data.corpus: builtin` no item text was ever trained on). Nothing is
stored in the repository: the items are generated on each machine from its Python standard library.

Item (sizes: `EvalSetSpec`): a held-out document is cut at a space inside a paragraph (a candidate cut every
`stride_chars` = 200 characters); `context` = up to `context_chars` = 320 characters before the cut (starting at a
word), the answer = the next `continuation_words` = 8 words of the same document, the three distractors =
continuations at cuts of three other held-out documents. Answers are taken round-robin over the documents, so no long document dominates. The answer's
position is uniform over the four choices, so chance is 25% for `acc` and `acc_norm` alike. Items are stored
shuffled, so lm-eval's `limit` takes a random subset spanning the documents.

Written under `out_dir` (the workflow: `<results>/data/<data.id>/eval/pydoc_cont4/`, rule `eval_set`; by hand:
`sparsecod eval-set --out DIR`):
    test.jsonl        one item a line: {"id", "doc", "context", "choices" (4 strings), "label" (0-3)}
    meta.json         task, seed, items, documents, chance, the builder's parameters, the corpus identity
    pydoc_cont4.yaml  the lm-eval task (`output_type: multiple_choice`, metrics `acc` and `acc_norm`) reading
                      test.jsonl by its absolute path; evaluate with `--include_path DIR --tasks pydoc_cont4`
                      (`sparsecod evaluate --task-dir DIR`)
"""

from __future__ import annotations

import itertools
import json
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from ..data.corpus import is_heldout
from ..fileio import write_bytes_atomic

TASK = "pydoc_cont4"
CHOICES = 4
CHANCE = 1.0 / CHOICES
YAML_NAME = f"{TASK}.yaml"
DATA_NAME = "test.jsonl"
_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class EvalSetSpec:
    """What the item set is a function of (besides the Python installation): seed, size, cut geometry."""

    seed: int = 15
    items: int = 1000
    context_chars: int = 320
    min_context_chars: int = 120
    continuation_words: int = 8
    stride_chars: int = 200
    heldout_fraction: float = 0.05


@dataclass(frozen=True)
class _Cut:
    doc: int
    context: str
    continuation: str


def _cuts(doc: int, text: str, spec: EvalSetSpec) -> list[_Cut]:
    """The candidate cuts of one document: a space after >= min_context_chars characters, followed by
    continuation_words words inside the same paragraph; one every stride_chars characters. The passage keeps at
    least half of min_context_chars after it is moved to a word start."""
    out: list[_Cut] = []
    pos = spec.min_context_chars
    while pos < len(text):
        i = text.find(" ", pos)
        if i < 0:
            break
        words = list(itertools.islice(_WORD.finditer(text, i + 1), spec.continuation_words))
        pos = i + spec.stride_chars
        if text[i - 1].isspace() or len(words) < spec.continuation_words:
            continue
        continuation = text[i + 1:words[-1].end()]
        if "\n\n" in continuation or words[0].start() != i + 1:
            continue
        start = max(0, i - spec.context_chars)
        if start > 0:  # begin at a word: after the first whitespace of the window
            m = re.search(r"\s+", text[start:i])
            start = start + m.end() if m else start
        context = text[start:i]
        if len(context) >= spec.min_context_chars // 2:
            out.append(_Cut(doc, context, continuation))
    return out


def build_items(docs: list[str], spec: EvalSetSpec) -> list[dict]:
    """The items from the held-out documents `docs` (in corpus order), deterministic for `spec.seed`.

    Answers are taken round-robin over the documents (each document's cuts in a seeded random order), so a few
    long documents cannot dominate; each distractor comes from a uniformly drawn other document."""
    by_doc = [c for c in (_cuts(d, text, spec) for d, text in enumerate(docs)) if c]
    if len(by_doc) < CHOICES:
        raise ValueError(f"{TASK}: {len(docs)} held-out documents give cuts in {len(by_doc)} documents, fewer than "
                         f"{CHOICES}; raise data.heldout_fraction")
    rng = random.Random(spec.seed)
    for cuts in by_doc:
        rng.shuffle(cuts)
    answers: list[_Cut] = []
    for k in range(max(len(c) for c in by_doc)):
        answers += [cuts[k] for cuts in by_doc if k < len(cuts)]
    answers = answers[:spec.items]
    rng.shuffle(answers)
    items = []
    for answer in answers:
        choices = {answer.continuation}
        distractors = []
        while len(distractors) < CHOICES - 1:
            cuts = by_doc[rng.randrange(len(by_doc))]
            other = cuts[rng.randrange(len(cuts))]
            if other.doc != answer.doc and other.continuation not in choices:
                choices.add(other.continuation)
                distractors.append(other.continuation)
        label = rng.randrange(CHOICES)
        options = distractors[:label] + [answer.continuation] + distractors[label:]
        items.append({"id": len(items), "doc": answer.doc, "context": answer.context, "choices": options,
                      "label": label})
    return items


def heldout_documents(fraction: float, workers: int = 1) -> list[str]:
    """The builtin corpus documents the held-out rule assigns to the held-out split, in corpus order."""
    from ..data.builtin import iter_builtin_documents

    return [t for t in iter_builtin_documents(workers) if is_heldout(t, fraction)]


def task_yaml(data_file: Path) -> dict:
    """The lm-eval task definition of TASK reading `data_file` (absolute path)."""
    return {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(data_file).resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{context}}",
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "target_delimiter": " ",
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "chance": CHANCE},
    }


def build_eval_set(out_dir: str | Path, spec: EvalSetSpec = EvalSetSpec(), workers: int = 1) -> dict:
    """Write test.jsonl, meta.json and pydoc_cont4.yaml (last, the workflow's declared output); returns meta."""
    from ..data.builtin import describe_builtin

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = heldout_documents(spec.heldout_fraction, workers)
    items = build_items(docs, spec)
    lines = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items)
    write_bytes_atomic(out / DATA_NAME, lines.encode())
    meta = {"task": TASK, "choices": CHOICES, "chance": CHANCE, "items": len(items),
            "documents": len({i["doc"] for i in items}), "heldout_documents": len(docs), "spec": asdict(spec),
            "source": describe_builtin()}
    write_bytes_atomic(out / "meta.json", (json.dumps(meta, indent=2) + "\n").encode())
    write_bytes_atomic(out / YAML_NAME, yaml.safe_dump(task_yaml(out / DATA_NAME), sort_keys=False).encode())
    return meta
