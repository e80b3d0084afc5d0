"""The inference check: known texts with expected labels sent to the live server, scored, reported.

Cases are a few labelled texts per class drawn (seeded) from the deployed model's test snapshot, plus any the
trigger gives (a list of ``{"text", "label"}``, or a CSV with ``text``, ``label`` columns on S3 or local
disk); the required accuracy defaults to a margin below the model's offline test accuracy.
Expected labels may be names (``positive``), ids (``1``) or an unambiguous prefix of the name
(``pos`` for ``positive``), so one CSV works for datasets that spell their labels differently.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from sentiflow.names import LABEL_COLUMN, TEXT_COLUMN

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from sentiflow.storage import ObjectStore, S3Uri

#: Unambiguous movie reviews (positive/negative): examples of user cases for a binary sentiment model.
DEFAULT_CHECK_CASES: list[dict[str, str]] = [
    {
        "text": "An absolute masterpiece. Brilliant acting, a moving story, I loved every minute.",
        "label": "positive",
    },
    {
        "text": "Wonderful film, beautifully shot and genuinely funny. Highly recommended.",
        "label": "positive",
    },
    {"text": "One of the best movies I have seen in years; the cast is superb.", "label": "positive"},
    {"text": "Terrible. Boring plot, awful acting, a complete waste of two hours.", "label": "negative"},
    {"text": "The worst movie I have ever seen. Dull, stupid and painfully long.", "label": "negative"},
    {"text": "Awful script and horrible direction; I walked out halfway through.", "label": "negative"},
]


#: Default of ``check_cases_per_class``: labelled test texts drawn per class for the check.
DEFAULT_CASES_PER_CLASS = 4
#: Default of ``check_accuracy_margin``: the check requires the offline test accuracy minus this.
DEFAULT_ACCURACY_MARGIN = 0.2
#: Sampled texts longer than this are skipped when shorter ones exist (the server caps text length).
MAX_SAMPLED_TEXT_CHARS = 2000


class InferenceCheckError(ValueError):
    """The check's input is unusable (no cases, missing columns); names what is wrong."""


@dataclass(frozen=True)
class CheckCase:
    text: str
    expected: str


def cases_from_records(records: Sequence[Mapping[str, Any]], origin: str = "check_texts") -> list[CheckCase]:
    cases = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping) or TEXT_COLUMN not in record or LABEL_COLUMN not in record:
            raise InferenceCheckError(
                f"{origin}[{i}] must be an object with {TEXT_COLUMN!r} and {LABEL_COLUMN!r}, got {record!r}"
            )
        text = str(record[TEXT_COLUMN]).strip()
        if not text:
            raise InferenceCheckError(f"{origin}[{i}] has an empty text")
        cases.append(CheckCase(text=text, expected=str(record[LABEL_COLUMN]).strip()))
    if not cases:
        raise InferenceCheckError(f"{origin} holds no check cases")
    return cases


def cases_from_csv(data: bytes, origin: str) -> list[CheckCase]:
    import pandas as pd

    try:
        frame = pd.read_csv(io.BytesIO(data))
    except Exception as exc:
        raise InferenceCheckError(f"{origin} is not a readable CSV: {exc}") from exc
    missing = [c for c in (TEXT_COLUMN, LABEL_COLUMN) if c not in frame.columns]
    if missing:
        raise InferenceCheckError(f"{origin} lacks column(s) {missing}; it has {list(frame.columns)}")
    return cases_from_records(frame[[TEXT_COLUMN, LABEL_COLUMN]].to_dict("records"), origin)


def _pools(frame: Any, num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``frame``: its class when it may be drawn (-1: an empty text), and whether it is short."""
    texts = frame[TEXT_COLUMN].astype(str)
    labels = frame[LABEL_COLUMN].to_numpy()
    usable = texts.str.strip().ne("").to_numpy() & (labels >= 0) & (labels < num_labels)
    return np.where(usable, labels, -1), (texts.str.len() <= MAX_SAMPLED_TEXT_CHARS).to_numpy()


def sample_cases_from(
    frames: Callable[[], Iterable[Any]], label_names: Sequence[str], per_class: int, seed: int
) -> list[CheckCase]:
    """``per_class`` labelled texts of each class from a snapshot split (``text``, ``label`` ids), seeded.

    Expected labels are the dataset's own names, so the check works for any label set. Short texts are
    preferred (the server refuses very long ones); a class with fewer rows gives what it has. ``frames``
    gives the split's batches (``iter_frames``) and is read twice, so memory is one batch: once to count
    each class's pool, then to pick the rows at the positions ``RandomState(seed).choice`` draws in it —
    the rows ``DataFrame.sample(random_state=seed)`` draws from the whole split, in its order.
    """
    if per_class < 0:
        raise InferenceCheckError(f"check_cases_per_class must be >= 0, got {per_class}")
    if per_class == 0:
        return []
    k = len(label_names)
    rows, short = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    for frame in frames():
        classes, is_short = _pools(frame, k)
        rows += np.bincount(classes[classes >= 0], minlength=k)
        short += np.bincount(classes[(classes >= 0) & is_short], minlength=k)
    only_short = short >= np.minimum(per_class, rows)
    pool_size = np.where(only_short, short, rows)
    draws = [
        np.random.RandomState(seed).choice(int(n), size=min(per_class, int(n)), replace=False)
        for n in pool_size
    ]
    wanted = [{int(p): order for order, p in enumerate(d)} for d in draws]
    picked: list[list[str]] = [[""] * len(d) for d in draws]
    passed = np.zeros(k, dtype=np.int64)  # rows of each pool before this batch
    for frame in frames():
        classes, is_short = _pools(frame, k)
        texts = frame[TEXT_COLUMN].astype(str).to_numpy()
        for label in range(k):
            in_pool = np.flatnonzero((classes == label) & (is_short | ~only_short[label]))
            positions = passed[label] + np.arange(len(in_pool))
            drawn = np.isin(positions, draws[label])
            for position, row in zip(positions[drawn], in_pool[drawn], strict=True):
                picked[label][wanted[label][int(position)]] = texts[row]
            passed[label] += len(in_pool)
    return [
        CheckCase(text=str(text)[: MAX_SAMPLED_TEXT_CHARS * 5], expected=name)
        for name, texts in zip(label_names, picked, strict=True)
        for text in texts
    ]


def required_accuracy(explicit: Any, test_accuracy: float | None, margin: float) -> float:
    """``explicit`` when given; else the model's offline test accuracy minus ``margin`` (floored at 0).

    A fixed threshold suits one dataset only (0.8 is easy on IMDb and out of reach on three-class tweets);
    the run's own test accuracy says what this model on this data should reach.
    """
    if explicit not in (None, ""):
        return float(explicit)
    if test_accuracy is None:
        raise InferenceCheckError(
            "check_min_accuracy is empty and the deployed version's run logged no test_accuracy to derive it "
            "from; set check_min_accuracy"
        )
    if not 0 <= margin <= 1:
        raise InferenceCheckError(f"check_accuracy_margin must be within [0, 1], got {margin}")
    return max(0.0, float(test_accuracy) - margin)


def label_matches(expected: str, label: str, label_id: int, label_names: Sequence[str] = ()) -> bool:
    """Name, id, or a prefix of the name (``pos`` ~ ``positive``), case-insensitive.

    With the model's ``label_names`` a prefix must name one label: ``ne`` for a model with ``negative`` and
    ``neutral`` raises ``InferenceCheckError`` instead of counting either answer as right.
    """
    want, got = expected.strip().lower(), label.strip().lower()
    if want == got or want == str(label_id):
        return True
    names = [str(n).strip().lower() for n in label_names]
    if not want or want in names:
        return False

    def related(name: str) -> bool:
        return name.startswith(want) or want.startswith(name)

    meant = [n for n in names if related(n)]
    if len(meant) > 1:
        raise InferenceCheckError(
            f"expected label {expected!r} could mean any of {meant}: spell the label out in the check cases"
        )
    return related(got)


@dataclass(frozen=True)
class CheckReport:
    version: str | None
    rows: list[dict[str, Any]]
    accuracy: float
    required_accuracy: float

    @property
    def passed(self) -> bool:
        return self.accuracy >= self.required_accuracy

    @property
    def correct(self) -> int:
        return sum(1 for r in self.rows if r["correct"])

    def summary(self) -> dict[str, Any]:
        return {
            "model_version": self.version,
            "cases": len(self.rows),
            "correct": self.correct,
            "accuracy": self.accuracy,
            "required_accuracy": self.required_accuracy,
            "passed": self.passed,
        }

    def csv_bytes(self) -> bytes:
        import pandas as pd

        return pd.DataFrame(self.rows).to_csv(index=False).encode()


#: The report's folder on the checked version's MLflow run (beside its metrics in the MLflow UI).
REPORT_ARTIFACT_PATH = "inference_check"


def publish_report(
    report: CheckReport,
    *,
    store: ObjectStore,
    prefix: S3Uri,
    client: MlflowClient,
    run_id: str | None,
    extra: Mapping[str, Any],
) -> dict[str, Any]:
    """``predictions.csv`` and ``summary.json`` under ``prefix`` in S3, and both on the checked version's
    MLflow run (when it has one); returns the summary with ``report_uri``.

    Any failure raises: ``release.check`` then rolls the release back, since a release without its report is
    not one anybody can audit.
    """
    import json
    import tempfile
    from pathlib import Path

    summary = {**report.summary(), **extra}
    predictions = report.csv_bytes()
    store.put_bytes(prefix.join("predictions.csv"), predictions, "text/csv")
    store.put_json(prefix.join("summary.json"), summary)
    summary["report_uri"] = str(prefix)
    if run_id:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "predictions.csv").write_bytes(predictions)
            (Path(tmp) / "summary.json").write_text(json.dumps(summary, indent=2))
            client.log_artifacts(run_id, tmp, artifact_path=REPORT_ARTIFACT_PATH)
    return summary


def run_check(
    predict: Callable[[list[str]], Mapping[str, Any]],
    cases: Sequence[CheckCase],
    required_accuracy: float,
    *,
    log: Callable[[str], None] | None = None,
) -> CheckReport:
    """Send every case to ``predict`` (the server's ``/predict`` response) and score the answers.

    Every prediction is logged (what the UI shows for the task), and the versions the server says answered
    are recorded: a report names the model that produced it.
    """
    if not 0.0 <= required_accuracy <= 1.0:
        raise InferenceCheckError(f"required accuracy must be within [0, 1], got {required_accuracy}")
    if not cases:
        raise InferenceCheckError("no check cases")
    response = _as_mapping(predict([c.text for c in cases]))
    predictions = response.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != len(cases):
        raise InferenceCheckError(
            f"the server answered {len(predictions) if isinstance(predictions, list) else 'no'} predictions "
            f"for {len(cases)} texts: {str(response)[:300]}"
        )
    version = response.get("model_version")
    rows = []
    for case, pred in zip(cases, predictions, strict=True):
        scores = pred.get("scores", {})
        ok = label_matches(case.expected, str(pred["label"]), int(pred["label_id"]), list(scores))
        row = {
            "text": case.text,
            "expected": case.expected,
            "predicted": pred["label"],
            "score": max(scores.values()) if scores else None,
            "correct": ok,
            "model_version": pred.get("model_version", version),
        }
        rows.append(row)
        if log:
            log(
                f"{'OK  ' if ok else 'MISS'} expected={case.expected} predicted={pred['label']} "
                f"| {case.text[:80]}"
            )
    accuracy = sum(r["correct"] for r in rows) / len(rows)
    return CheckReport(
        version=None if version is None else str(version),
        rows=rows,
        accuracy=accuracy,
        required_accuracy=required_accuracy,
    )


def _as_mapping(response: Any) -> Mapping[str, Any]:
    """The server's JSON, or the client's ``PredictResult`` turned back into that JSON shape."""
    if isinstance(response, Mapping):
        return response
    return {
        "model_version": response.model_version,
        "predictions": [
            {"label": label, "label_id": label_id, "scores": scores}
            for label, label_id, scores in zip(
                response.labels, response.label_ids, response.scores, strict=True
            )
        ],
    }
