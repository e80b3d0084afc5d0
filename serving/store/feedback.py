"""User feedback on predictions, in the shared database (``serving.store.db``), exported for retraining.

Each row is committed before the request answers, so a crash right after a 201 loses nothing. Other
components react to stored rows without touching the route: the app's extension (``serving.extension``)
calls its listeners with each committed ``FeedbackRecord``. The rows also hold the wrong-flag alert's shared
window (``sentiflow.feedback.alerts``) and the web page's counts per day.

Review: a row waits ``pending`` until a reviewer accepts it (its label as the user gave it), corrects it (the
reviewer's label) or rejects it; one decision may cover many rows (``ReviewFilter``). Each decision is a
``feedback_reviews`` row naming the reviewer; only accepted and corrected rows train (``TRAINABLE``), and the
training export orders them by decision, so a late decision still reaches the next run.

One row per prediction: the unique constraint on ``prediction_id`` is the guarantee. ``add`` looks first (a
clear answer naming the stored row) and also catches the constraint's ``IntegrityError``, because two posts
of one id may both pass the look before either commits; either way the caller gets ``DuplicateFeedback``.
"""

from __future__ import annotations

import io
import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    import pandas as pd

from serving.store.db import MAX_ROW_ID, Database, alert_state_table, feedback_reviews_table, feedback_table

log = logging.getLogger(__name__)

PENDING = "pending"
ACCEPTED = "accepted"
CORRECTED = "corrected"
REJECTED = "rejected"
#: What a reviewer may decide, and the status each decision sets.
DECISIONS = {"accept": ACCEPTED, "correct": CORRECTED, "reject": REJECTED}
#: The statuses that train.
TRAINABLE = (ACCEPTED, CORRECTED)
#: Who auto-accept decides as (``ServerSettings.auto_accept_min_clients``).
AUTO_REVIEWER = "auto-accept"

#: The export's columns: the table's, less the signed prediction id (a token, not a training signal) and the
#: decision's key, plus who decided and when.
COLUMNS = [c.name for c in feedback_table.columns if c.name not in ("prediction_id", "review_id")] + [
    "review_seq",
    "reviewed_by",
    "reviewed_at",
]
EXPORT_FORMATS = ("csv", "parquet", "jsonl")


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
    client: str | None = None
    status: str = PENDING
    review_label: str | None = None
    reviewed_by: str | None = None
    reviewed_at: datetime | None = None

    @property
    def claimed_label(self) -> str | None:
        """The label the user says is right: the prediction's when it was correct, else ``true_label``."""
        return self.predicted_label if self.correct else self.true_label

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat()
        data["reviewed_at"] = self.reviewed_at.isoformat() if self.reviewed_at else None
        return data


@dataclass(frozen=True)
class FeedbackCounts:
    """Flags per UTC day since a given day (days without flags are absent) and over all time."""

    #: ``day -> (correct, wrong)``
    per_day: dict[date, tuple[int, int]]
    total: int
    wrong: int


def _utc(value: datetime | None) -> datetime | None:
    """SQLite returns naive datetimes; we always store UTC."""
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _record(row: sa.RowMapping) -> FeedbackRecord:
    return FeedbackRecord(
        id=int(row["id"]),
        created_at=_utc(row["created_at"]) or datetime.now(UTC),
        text=row["text"],
        predicted_label=row["predicted_label"],
        correct=bool(row["correct"]),
        true_label=row["true_label"],
        model_version=row["model_version"],
        verified=bool(row["verified"]),
        prediction_id=row["prediction_id"],
        client=row.get("client"),
        status=row.get("status") or PENDING,
        review_label=row.get("review_label"),
        reviewed_by=row.get("reviewed_by"),
        reviewed_at=_utc(row.get("reviewed_at")),
    )


#: The label a row claims, in SQL (``FeedbackRecord.claimed_label``).
claimed_label_sql = sa.case(
    (feedback_table.c.correct, feedback_table.c.predicted_label), else_=feedback_table.c.true_label
)


def _reviewed_rows() -> sa.Select:
    """Feedback rows with who decided and when (the decision's id as ``review_seq``)."""
    reviews = feedback_reviews_table
    return sa.select(
        feedback_table,
        reviews.c.id.label("review_seq"),
        reviews.c.reviewer.label("reviewed_by"),
        reviews.c.decided_at.label("reviewed_at"),
    ).select_from(feedback_table.outerjoin(reviews, feedback_table.c.review_id == reviews.c.id))


@dataclass(frozen=True)
class ReviewFilter:
    """Which rows a listing, an export or a bulk decision covers; every given field must match."""

    status: str | None = PENDING
    #: The label the row claims (``FeedbackRecord.claimed_label``).
    label: str | None = None
    predicted_label: str | None = None
    model_version: str | None = None
    client: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: Case-insensitive substring of the text.
    text_contains: str | None = None
    #: The text, ignoring case and surrounding spaces (one prediction id per text and version, so clients
    #: that agree on one review send it spelled a little differently, or judge different versions).
    same_text_as: str | None = None
    ids: tuple[int, ...] | None = None

    def where(self) -> list[sa.ColumnElement[bool]]:
        t = feedback_table
        clauses: list[sa.ColumnElement[bool]] = []
        if self.status is not None:
            clauses.append(
                t.c.status.in_(TRAINABLE) if self.status == "trainable" else t.c.status == self.status
            )
        if self.label is not None:
            clauses.append(claimed_label_sql == self.label)
        for column, value in (
            (t.c.predicted_label, self.predicted_label),
            (t.c.model_version, self.model_version),
            (t.c.client, self.client),
        ):
            if value is not None:
                clauses.append(column == value)
        if self.since is not None:
            clauses.append(t.c.created_at >= self.since)
        if self.until is not None:
            clauses.append(t.c.created_at < self.until)
        if self.text_contains:
            escaped = self.text_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append(sa.func.lower(t.c.text).like(f"%{escaped.lower()}%", escape="\\"))
        if self.same_text_as is not None:
            clauses.append(sa.func.lower(sa.func.trim(t.c.text)) == self.same_text_as.strip(" ").lower())
        if self.ids is not None:
            clauses.append(t.c.id.in_(self.ids))
        return clauses


class ReviewError(ValueError):
    """A decision that cannot apply (an unknown decision, a correction without a label)."""


@dataclass(frozen=True)
class ImportOutcome:
    """One imported decision: ``decided`` (the status changed), ``unchanged`` (already so), or an error."""

    line: int
    id: int | None
    outcome: str
    message: str | None = None


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
        client: str | None = None,
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
            client=client,
        )
        review_fields = ("id", "status", "review_label", "reviewed_by", "reviewed_at")
        values = {k: v for k, v in asdict(draft).items() if k not in review_fields}
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

    # --- review -------------------------------------------------------------------------------------------
    def get(self, row_id: int) -> FeedbackRecord | None:
        query = _reviewed_rows().where(feedback_table.c.id == row_id)
        with self.db.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        return None if row is None else _record(row)

    def rows(self, where: ReviewFilter, *, limit: int = 100, offset: int = 0) -> list[FeedbackRecord]:
        """The rows ``where`` covers, oldest first."""
        query = (
            _reviewed_rows().where(*where.where()).order_by(feedback_table.c.id).limit(limit).offset(offset)
        )
        with self.db.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings().all()]

    def count_where(self, where: ReviewFilter) -> int:
        query = sa.select(sa.func.count()).select_from(feedback_table).where(*where.where())
        with self.db.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def labels(self) -> list[str]:
        """Every label the rows use: the predictions' and the users' (checked against the model's labels
        when posted); a correction must pick one of them."""
        t = feedback_table
        query = sa.union(
            sa.select(t.c.predicted_label.label("label")),
            sa.select(t.c.true_label).where(t.c.true_label.is_not(None)),
        )
        with self.db.engine.connect() as conn:
            return sorted(str(v) for v in conn.execute(query).scalars())

    def decide(
        self, where: ReviewFilter, decision: str, *, reviewer: str, label: str | None = None
    ) -> tuple[int, int]:
        """Apply one decision to every row ``where`` covers: ``(review id, rows changed)``, ``(0, 0)`` when
        no row changes.

        ``accept`` keeps the user's label; ``correct`` needs ``label`` (the reviewer's); ``reject`` keeps the
        row out of training. Rows already in the decided state (and label) are left as they are, so
        repeating a decision changes nothing. One transaction: the decision row and its rows, or neither.
        """
        status = DECISIONS.get(decision)
        if status is None:
            raise ReviewError(f"decision {decision!r}: use one of {sorted(DECISIONS)}")
        if status == CORRECTED and not label:
            raise ReviewError("decision 'correct' needs the label the row should train with")
        review_label = label if status == CORRECTED else None
        t = feedback_table
        same = sa.and_(t.c.status == status, sa.func.coalesce(t.c.review_label, "") == (review_label or ""))
        to_change = [*where.where(), sa.not_(same)]
        with self.db.engine.begin() as conn:
            if not conn.execute(sa.select(sa.func.count()).select_from(t).where(*to_change)).scalar_one():
                return 0, 0  # nothing to change: no decision is recorded
            review_id = conn.execute(
                feedback_reviews_table.insert().values(
                    reviewer=reviewer, decided_at=datetime.now(UTC), decision=decision, label=review_label
                )
            ).inserted_primary_key
            if review_id is None:
                raise RuntimeError("the database returned no id for the review")
            changed = conn.execute(
                t.update()
                .where(*to_change)
                .values(status=status, review_label=review_label, review_id=int(review_id[0]))
            ).rowcount
        return int(review_id[0]), int(changed)

    def import_decisions(self, decisions: list[dict[str, Any]], *, reviewer: str) -> list[ImportOutcome]:
        """Decisions from a labelling tool (``id``, ``decision``, ``label``), one outcome per line.

        Idempotent: a line whose row already has that decision is ``unchanged``; an unknown id or a bad
        decision is reported on its line and the other lines still apply."""
        outcomes: list[ImportOutcome] = []
        known = self.labels()
        for line, item in enumerate(decisions, start=1):
            raw_id = item.get("id")
            text_id = str(raw_id).strip()
            if not (
                text_id.isascii()
                and text_id.isdigit()
                and len(text_id) <= 10
                and 0 < int(text_id) <= MAX_ROW_ID
            ):
                outcomes.append(
                    ImportOutcome(line, None, "error", f"id {str(raw_id)[:40]!r} is not a row id")
                )
                continue
            row_id = int(text_id)
            if self.get(row_id) is None:
                outcomes.append(ImportOutcome(line, row_id, "unknown_id", f"no feedback row {row_id}"))
                continue
            decision = str(item.get("decision") or "").strip().lower()
            label = str(item.get("label") or "").strip() or None
            if decision == "correct" and label is not None and known and label not in known:
                message = f"label {label[:40]!r} is not one of the feedback's labels {known}"
                outcomes.append(ImportOutcome(line, row_id, "error", message))
                continue
            try:
                _, changed = self.decide(
                    ReviewFilter(status=None, ids=(row_id,)), decision, reviewer=reviewer, label=label
                )
            except ReviewError as exc:
                outcomes.append(ImportOutcome(line, row_id, "error", str(exc)))
                continue
            outcomes.append(ImportOutcome(line, row_id, "decided" if changed else "unchanged"))
        return outcomes

    def auto_accept(self, record: FeedbackRecord, min_clients: int) -> int:
        """Accept the pending rows on ``record``'s text (ignoring case and surrounding spaces) that claim its
        label once ``min_clients`` distinct clients sent them; only for a label the model did not predict
        (agreeing with the model is its own answer coming back, not evidence). Returns the rows accepted."""
        label = record.claimed_label
        if min_clients < 1 or record.correct or label is None or label == record.predicted_label:
            return 0
        where = ReviewFilter(status=PENDING, label=label, same_text_as=record.text)
        query = sa.select(sa.func.count(sa.distinct(feedback_table.c.client))).where(
            *where.where(), feedback_table.c.client.is_not(None)
        )
        with self.db.engine.connect() as conn:
            clients = int(conn.execute(query).scalar_one())
        if clients < min_clients:
            return 0
        return self.decide(where, "accept", reviewer=AUTO_REVIEWER)[1]

    # --- export ---------------------------------------------------------------------------------------
    def frame(
        self,
        *,
        since_id: int = 0,
        limit: int | None = None,
        where: ReviewFilter | None = None,
        since_review: int | None = None,
    ) -> pd.DataFrame:
        """Rows with ``id > since_id`` (and those ``where`` covers) as a pandas frame with ``COLUMNS``: in
        insertion order, or in decision order with ``since_review`` (decisions after that review id)."""
        import pandas as pd

        query = _reviewed_rows().where(feedback_table.c.id > since_id, *(where.where() if where else []))
        if since_review is not None:
            reviews = feedback_reviews_table
            query = query.where(reviews.c.id > since_review).order_by(reviews.c.id, feedback_table.c.id)
        else:
            query = query.order_by(feedback_table.c.id)
        if limit:
            query = query.limit(limit)
        with self.db.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        frame = pd.DataFrame([{c: r.get(c) for c in COLUMNS} for r in rows], columns=COLUMNS)
        frame["id"] = frame["id"].astype("int64")
        frame["review_seq"] = frame["review_seq"].astype("Int64")
        frame["correct"] = frame["correct"].astype(bool)
        frame["verified"] = frame["verified"].fillna(False).astype(bool)
        for column in ("created_at", "reviewed_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        return frame

    def export(
        self,
        fmt: str,
        *,
        since_id: int = 0,
        limit: int | None = None,
        where: ReviewFilter | None = None,
        since_review: int | None = None,
    ) -> bytes:
        if fmt not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {fmt!r}; use one of {EXPORT_FORMATS}")
        frame = self.frame(since_id=since_id, limit=limit, where=where, since_review=since_review)
        if fmt == "csv":
            return frame.to_csv(index=False).encode()
        if fmt == "jsonl":
            return (
                frame.to_json(orient="records", lines=True, date_format="iso").encode() if len(frame) else b""
            )
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        return buffer.getvalue()
