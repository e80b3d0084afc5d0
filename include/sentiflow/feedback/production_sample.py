"""A bounded, privacy-aware sample of production predictions, flushed to S3 for the drift report.

The model server (its own ``ProductionSampler``, made by ``create_app``) calls
:meth:`ProductionSampler.record_safely` after each ``/predict``; it only appends to a bounded
in-memory buffer (oldest rows go first when full), so it costs the request almost nothing. A background
thread turns the buffer into features and writes one parquet object per flush under
``s3://<bucket>/<samples_prefix>/dt=YYYY-MM-DD/``: one folder per day, one file per worker and flush, so
any number of gunicorn workers and replicas write without coordination.

Privacy: by default no raw text leaves the process. Each row keeps the predicted label, the model
version, the cleaned text's length and token count, and keyed BLAKE2b hashes of its tokens (enough for
the out-of-vocabulary rate, because the training vocabulary is hashed with the same key).
``SENTIFLOW_DRIFT_LOG_RAW_TEXT=true`` also keeps the text.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from sentiflow.settings.components import DriftSettings
from sentiflow.storage import ObjectStore

if TYPE_CHECKING:  # pandas loads on the first flush or read, not when a server worker boots
    import pandas as pd

logger = logging.getLogger("sentiflow.drift")

SAMPLE_COLUMNS = (
    "ts",
    "model_version",
    "predicted_label",
    "text_length",
    "n_tokens",
    "token_hashes",
    "text",
)


def hash_tokens(tokens: Iterable[str], key: bytes) -> list[str]:
    """Keyed 64-bit hashes: equal tokens match across processes, but cannot be read back without the key."""
    key = key[:64]
    return [hashlib.blake2b(t.encode(), key=key, digest_size=8).hexdigest() for t in tokens]


def text_features(
    texts: Sequence[str], settings: DriftSettings | None = None, *, cleaned: bool = False
) -> pd.DataFrame:
    """``text_length``, ``n_tokens`` and ``token_hashes`` of each text, cleaned first unless already (with the
    dataset's own cleaning, so production and training texts are measured the same way)."""
    import pandas as pd

    from sentiflow.data.clean import clean_text

    s = settings or DriftSettings()
    key = s.hash_key.get_secret_value().encode()
    clean = list(texts) if cleaned else clean_text(pd.Series(list(texts), dtype=object)).tolist()
    tokens = [t.split() for t in clean]
    return pd.DataFrame(
        {
            "text_length": [len(t) for t in clean],
            "n_tokens": [len(t) for t in tokens],
            "token_hashes": [hash_tokens(t[: s.max_tokens_per_text], key) for t in tokens],
        }
    )


class ProductionSampler:
    """Bounded buffer + background flush to S3. Thread safe; never raises into the caller."""

    def __init__(
        self,
        settings: DriftSettings | None = None,
        *,
        store: ObjectStore | None = None,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings or DriftSettings()
        self.store = store or ObjectStore()
        self.clock = clock
        self.rng = rng or random.Random()
        self._buffer: deque[tuple[float, str | None, str, str]] = deque(maxlen=self.settings.buffer_max_rows)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self.lost_rows = 0  # overwritten in a full buffer, or in a failed write

    def record(self, texts: Sequence[str], labels: Sequence[str], model_version: str | None) -> int:
        """Buffer (a sample of) one request's predictions; returns how many rows were kept."""
        s = self.settings
        now = self.clock()
        kept = 0
        with self._lock:
            for text, label in zip(texts, labels, strict=True):
                if s.sample_rate < 1.0 and self.rng.random() >= s.sample_rate:
                    continue
                if len(self._buffer) == self._buffer.maxlen:
                    self.lost_rows += 1
                self._buffer.append((now, model_version, str(label), text))
                kept += 1
            pending = len(self._buffer)
        self._ensure_thread()
        if pending >= s.flush_rows:
            self._wake.set()
        return kept

    def _ensure_thread(self) -> None:
        # A gunicorn worker forked after the thread started has no thread: start its own.
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="sentiflow-drift-sample", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.settings.flush_interval_s)
            self._wake.clear()
            self.flush()

    def _drain(self) -> list[tuple[float, str | None, str, str]]:
        with self._lock:
            rows = list(self._buffer)
            self._buffer.clear()
        return rows

    def flush(self) -> str | None:
        """Write what is buffered now as one parquet object; returns its URI (None when nothing waited)."""
        with self._flush_lock:
            rows = self._drain()
            if not rows:
                return None
            try:
                frame = self._frame(rows)
                first = datetime.fromtimestamp(rows[0][0], UTC)
                name = f"{socket.gethostname()}-{os.getpid()}-{int(rows[0][0] * 1000)}-{uuid.uuid4().hex[:8]}"
                uri = self.store.uri(self.settings.samples_prefix, f"dt={first:%Y-%m-%d}", f"{name}.parquet")
                self.store.put_parquet(uri, frame)
            except Exception:
                self.lost_rows += len(rows)
                logger.exception("could not write %d production sample rows; they are dropped", len(rows))
                return None
            return str(uri)

    def _frame(self, rows: list[tuple[float, str | None, str, str]]) -> pd.DataFrame:
        import pandas as pd

        texts = [r[3] for r in rows]
        features = text_features(texts, self.settings)
        return pd.DataFrame(
            {
                "ts": [r[0] for r in rows],
                "model_version": [r[1] for r in rows],
                "predicted_label": [r[2] for r in rows],
                **{c: features[c] for c in features.columns},
                "text": texts if self.settings.log_raw_text else [None] * len(rows),
            },
            columns=list(SAMPLE_COLUMNS),
        )

    def record_safely(self, texts: Sequence[str], labels: Sequence[str], model_version: str | None) -> None:
        """The server's hook after each ``/predict``: never raises, never blocks on S3."""
        try:
            self.record(texts, labels, model_version)
        except Exception:
            logger.exception("production sample hook failed; the prediction was answered normally")

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self.flush()


def read_production_sample(
    store: ObjectStore,
    *,
    since: datetime,
    until: datetime | None = None,
    settings: DriftSettings | None = None,
) -> pd.DataFrame:
    """Every sampled row with ``since <= ts < until`` (all workers, all replicas), oldest first.

    The sort is stable: the rows of one request share a timestamp and keep the request's order (numpy's
    default quicksort reorders equal keys).
    """
    import pandas as pd

    s = settings or DriftSettings()
    until = until or datetime.now(UTC)
    frames: list[pd.DataFrame] = []
    day = since.astimezone(UTC).date()
    while day <= until.astimezone(UTC).date():
        prefix = store.uri(s.samples_prefix, f"dt={day:%Y-%m-%d}")
        for key in store.list_keys(f"{prefix}/"):
            if key.endswith(".parquet"):
                frames.append(pd.read_parquet(io.BytesIO(store.get_bytes(f"s3://{prefix.bucket}/{key}"))))
        day += timedelta(days=1)
    if not frames:
        return pd.DataFrame(columns=list(SAMPLE_COLUMNS))
    sample = pd.concat(frames, ignore_index=True)
    in_range = (sample["ts"] >= since.timestamp()) & (sample["ts"] < until.timestamp())
    return sample[in_range].sort_values("ts", kind="stable").reset_index(drop=True)
