"""User feedback on predictions, in the shared database (``serving.store.db``), exported for retraining.

Each row is committed before the request answers, so a crash right after a 201 loses nothing. Other
components react to stored rows without touching the route: the app's extension (``serving.extension``)
calls its listeners with each committed ``FeedbackRecord``. The rows also hold the wrong-flag alert's shared
window (``sentiflow.feedback.alerts``) and the web page's counts per day.

One row per prediction: the unique constraint on ``prediction_id`` is the guarantee. ``add`` looks first (a
clear answer naming the stored row) and also catches the constraint's ``IntegrityError``, because two posts
of one id may both pass the look before either commits; either way the caller gets ``DuplicateFeedback``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from serving.store.db import Database, alert_state_table, feedback_table

log = logging.getLogger(__name__)

#: The export's columns: the table's, less the signed prediction id (a token, not a training signal).
COLUMNS = [c.name for c in feedback_table.columns if c.name != "prediction_id"]
EXPORT_FORMATS = ("csv", "parquet")


class DuplicateFeedback(Exception):
    """Feedback on this prediction is already stored (``existing_id``: its row, when known)."""

    def __init__(self, prediction_id: str, existing_id: int | None) -> None:
        super().__init__(f"feedback on this prediction is already stored (row {existing_id})")
        self.prediction_id = prediction_id
        self.existing_id = existing_id


@dataclass(frozen=True)
class FeedbackRecord:
    id: int
    created_at: datetime
    text: str
    predicted_label: str
    correct: bool
    true_label: str | None
    model_version: str | None
    verified: bool = False
    #: The canonical signed id of the judged prediction (None for rows from before the column).
    prediction_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        return data


@dataclass(frozen=True)
class FeedbackCounts:
    """Flags per UTC day since a given day (days without flags are absent) and over all time."""

    #: ``day -> (correct, wrong)``
    per_day: dict[date, tuple[int, int]]
    total: int
    wrong: int


def _record(row: sa.RowMapping) -> FeedbackRecord:
    created_at = row["created_at"]
    if created_at.tzinfo is None:  # SQLite returns naive datetimes; we always store UTC
        created_at = created_at.replace(tzinfo=UTC)
    return FeedbackRecord(
        id=int(row["id"]),
        created_at=created_at,
        text=row["text"],
        predicted_label=row["predicted_label"],
        correct=bool(row["correct"]),
        true_label=row["true_label"],
        model_version=row["model_version"],
        verified=bool(row["verified"]),
        prediction_id=row["prediction_id"],
    )


class FeedbackStore:
    """Queries on the feedback and alert-state tables of the shared database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def add(
        self,
        *,
        text: str,
        predicted_label: str,
        correct: bool,
        true_label: str | None = None,
        model_version: str | None = None,
        verified: bool = False,
        prediction_id: str | None = None,
    ) -> FeedbackRecord:
        """Store one row; ``DuplicateFeedback`` when a row for ``prediction_id`` exists (nothing is added)."""
        draft = FeedbackRecord(
            id=0,
            created_at=datetime.now(UTC),
            text=text,
            predicted_label=predicted_label,
            correct=correct,
            true_label=true_label,
            model_version=model_version,
            verified=verified,
            prediction_id=prediction_id,
        )
        values = {k: v for k, v in asdict(draft).items() if k != "id"}
        if prediction_id is not None and (existing := self.id_for_prediction(prediction_id)) is not None:
            raise DuplicateFeedback(prediction_id, existing)
        try:
            with self.db.engine.begin() as conn:
                key = conn.execute(feedback_table.insert().values(**values)).inserted_primary_key
        except sa.exc.IntegrityError as exc:  # lost the race to a concurrent post of the same prediction
            if prediction_id is None:
                raise
            raise DuplicateFeedback(prediction_id, self.id_for_prediction(prediction_id)) from exc
        if key is None:  # SQLite and Postgres always return the autoincrement id
            raise RuntimeError("the database returned no id for the new feedback row")
        return replace(draft, id=int(key[0]))

    def id_for_prediction(self, prediction_id: str) -> int | None:
        """The id of the row judging ``prediction_id``, if any."""
        query = sa.select(feedback_table.c.id).where(feedback_table.c.prediction_id == prediction_id)
        with self.db.engine.connect() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else int(found)

    # --- the shared alert window (sentiflow.feedback.alerts.SharedWrongFlagWindow reads these) -------------
    def wrong_flags_between(self, start: float, end: float) -> list[FeedbackRecord]:
        """Feedback rows flagged wrong with ``start < created_at <= end`` (epoch seconds), oldest first."""
        query = (
            sa.select(feedback_table)
            .where(
                feedback_table.c.correct.is_(False),
                feedback_table.c.created_at > datetime.fromtimestamp(start, UTC),
                feedback_table.c.created_at <= datetime.fromtimestamp(end, UTC),
            )
            .order_by(feedback_table.c.id)
        )
        with self.db.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_record(row) for row in rows]

    def alert_state(self, kind: str) -> tuple[float, float]:
        """``(quiet_until, last_alert_at)`` of ``kind``; ``(-inf, -inf)`` before its first alert."""
        query = sa.select(alert_state_table).where(alert_state_table.c.kind == kind)
        with self.db.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return (row["quiet_until"], row["last_alert_at"]) if row else (float("-inf"), float("-inf"))

    def claim_alert(self, kind: str, *, expected_quiet_until: float, quiet_until: float, at: float) -> bool:
        """Compare-and-set: True for exactly one caller among workers racing to raise the same alert."""
        table = alert_state_table
        if expected_quiet_until == float("-inf"):  # first alert of this kind: whoever inserts the row wins
            try:
                with self.db.engine.begin() as conn:
                    conn.execute(table.insert().values(kind=kind, quiet_until=quiet_until, last_alert_at=at))
            except sa.exc.IntegrityError:
                return False
            return True
        with self.db.engine.begin() as conn:
            result = conn.execute(
                table.update()
                .where(table.c.kind == kind, table.c.quiet_until == expected_quiet_until)
                .values(quiet_until=quiet_until, last_alert_at=at)
            )
            return result.rowcount == 1

    def daily_counts(self, first_day: date) -> FeedbackCounts:
        """Correct and wrong flags per UTC day from ``first_day`` on (grouped in SQL: ``date()`` exists in
        SQLite and Postgres), and the all-time totals; for the web page's chart."""
        table = feedback_table
        day = sa.func.date(table.c.created_at)
        wrong = sa.func.sum(sa.case((table.c.correct, 0), else_=1))
        total = sa.func.count()
        start = datetime.combine(first_day, datetime.min.time(), tzinfo=UTC)
        with self.db.engine.connect() as conn:
            per_day = conn.execute(
                sa.select(day, total, wrong).where(table.c.created_at >= start).group_by(day)
            ).all()
            all_total, all_wrong = conn.execute(sa.select(total, wrong).select_from(table)).one()
        counts: dict[date, tuple[int, int]] = {}
        for raw_day, n, n_wrong in per_day:
            d = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day)[:10])
            counts[d] = (int(n) - int(n_wrong or 0), int(n_wrong or 0))
        return FeedbackCounts(per_day=counts, total=int(all_total or 0), wrong=int(all_wrong or 0))

    def count(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(feedback_table)).scalar_one())

    def frame(self, *, since_id: int = 0, limit: int | None = None):
        """Rows with ``id > since_id`` in insertion order, as a pandas frame with ``COLUMNS``."""
        import pandas as pd

        query = sa.select(feedback_table).where(feedback_table.c.id > since_id).order_by(feedback_table.c.id)
        if limit:
            query = query.limit(limit)
        with self.db.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows], columns=COLUMNS)
        frame["id"] = frame["id"].astype("int64")
        frame["correct"] = frame["correct"].astype(bool)
        frame["verified"] = frame["verified"].fillna(False).astype(bool)
        return frame

    def export(self, fmt: str, *, since_id: int = 0, limit: int | None = None) -> bytes:
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; use one of {EXPORT_FORMATS}")
        frame = self.frame(since_id=since_id, limit=limit)
        if fmt == "csv":
            return frame.to_csv(index=False).encode()
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
