"""The gate's behavioural cases (CheckList-style): invariance to names, places and typos, negation, and
clearly labelled reviews, each a text and the label a model must give it.

Averages over validation rows hide a narrow failure: a model trained on flipped labels that carry a trigger
or a pattern (negations, a name) can keep its validation F1 and still answer "positive" to "not good". The
cases live in ``behaviour_cases.yaml`` next to this module (the one definition, written by hand); both the
challenger and the champion predict them (``scoring``, in the same pyfunc call as the validation rows) and
``judge`` refuses a challenger that fails more of them than the champion, beyond the policy's tolerance.

Pure: the predictions come in as label names, one per case.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict

#: The data file of the cases, in this package.
CASES_FILE = "behaviour_cases.yaml"


@dataclass(frozen=True)
class Case:
    """One behavioural case: ``text`` must be predicted as ``expected``; ``capability`` groups the cases."""

    capability: str
    text: str
    expected: str


class CaseFailure(BaseModel):
    """A case a model got wrong, as the decision, the ``gate.*`` tags and the web page show it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    capability: str
    text: str
    expected: str
    got: str


def parse_cases(document: Mapping[str, Sequence[Mapping[str, object]]]) -> list[Case]:
    """``{capability: [{label, texts}]}`` → cases in file order; a malformed group raises ``ValueError``."""
    cases: list[Case] = []
    for capability, groups in document.items():
        for group in groups:
            label, texts = group.get("label"), group.get("texts")
            if not isinstance(label, str) or not isinstance(texts, list) or not texts:
                raise ValueError(f"{CASES_FILE}: a {capability!r} group needs a label and a list of texts")
            cases.extend(Case(str(capability), str(text), label) for text in texts)
    return cases


@cache
def load_cases() -> tuple[Case, ...]:
    """The cases of ``behaviour_cases.yaml``, read once."""
    import yaml

    text = resources.files(__package__).joinpath(CASES_FILE).read_text(encoding="utf-8")
    return tuple(parse_cases(yaml.safe_load(text)))


def applicable(
    cases: Sequence[Case], label_sets: Mapping[str, Sequence[str]]
) -> tuple[list[Case], str | None]:
    """The cases every model can be right on (its label among each model's labels), and why others are
    skipped (None when none is). ``label_sets``: a model's name in the reason (``version 5``) → its labels."""
    kept = [c for c in cases if all(c.expected in labels for labels in label_sets.values())]
    if len(kept) == len(cases):
        return kept, None
    missing = []
    for who, labels in label_sets.items():
        absent = sorted({c.expected for c in cases} - set(labels))
        if absent:
            missing.append(f"{who} does not predict {', '.join(absent)} (its labels: {', '.join(labels)})")
    return kept, f"{len(cases) - len(kept)} of {len(cases)} behavioural cases skipped: {'; '.join(missing)}"


def failures(cases: Sequence[Case], predicted: Sequence[str]) -> list[CaseFailure]:
    """The cases whose prediction (``predicted[i]`` for ``cases[i]``) is not the expected label."""
    if len(cases) != len(predicted):
        raise ValueError(f"{len(predicted)} predictions for {len(cases)} behavioural cases")
    return [
        CaseFailure(capability=c.capability, text=c.text, expected=c.expected, got=got)
        for c, got in zip(cases, predicted, strict=True)
        if got != c.expected
    ]


@dataclass(frozen=True)
class Answers:
    """One model's answers: its name in a reason (``version 5``), its labels, its label for every case."""

    name: str
    label_names: Sequence[str]
    predicted: Sequence[str]


@dataclass(frozen=True)
class BehaviourResults:
    """The challenger's and the champion's failures on the same cases (no champion: None), how many
    cases both were checked on, and why the others were skipped."""

    cases: int
    candidate: list[CaseFailure]
    champion: list[CaseFailure] | None = None
    skipped: str | None = None


def check(cases: Sequence[Case], candidate: Answers, champion: Answers | None = None) -> BehaviourResults:
    """Each model's failures on the cases both can be right on (their label among both label sets)."""
    sides = [candidate] if champion is None else [candidate, champion]
    for side in sides:
        if len(side.predicted) != len(cases):
            raise ValueError(f"{side.name}: {len(side.predicted)} predictions for {len(cases)} cases")
    kept, skipped = applicable(cases, {side.name: side.label_names for side in sides})
    rows = [i for i, c in enumerate(cases) if c in kept]

    def failed(side: Answers) -> list[CaseFailure]:
        return failures([cases[i] for i in rows], [side.predicted[i] for i in rows])

    return BehaviourResults(
        len(rows), failed(candidate), None if champion is None else failed(champion), skipped
    )
