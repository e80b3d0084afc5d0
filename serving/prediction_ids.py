"""Signed prediction ids: feedback is trusted only when it cites a prediction this server made.

``/predict`` returns one ``prediction_id`` per text: an itsdangerous-signed token (HMAC with a server secret)
that binds the model version, a hash of the text, the predicted label and the model's labels. ``/feedback``
must send it back with the same text; a forged, altered or mismatched id is a 422, and so is a label the
model does not know. So a stranger cannot invent rows like ``predicted_label: "banana"``; the rows
stored this way are marked ``verified``.

One feedback per prediction: the id is deterministic (one model version's answer to one text has one id) and
``verify`` returns it in canonical form, re-signed from the decoded payload. base64 decoding forgives a few
spellings of the same signature (spare bits of the last character, stray characters), so the raw string a
client sent is not a key; the canonical one is what the feedback table's unique column holds.

The secret is ``SENTIFLOW_SERVER_PREDICTION_SECRET``; unset, one is made once in the state folder (shared by
the workers of one replica). Replicas behind one load balancer must share it: set it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock
from itsdangerous import BadSignature, URLSafeSerializer

SALT = "sentiflow.prediction-id.v1"
SECRET_FILE = "prediction-secret"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def state_dir_secret(state_dir: Path) -> str:
    """The secret kept in ``state_dir`` (made on first use, mode 0600, once among racing workers)."""
    path = Path(state_dir) / SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=30):
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32))
        return path.read_text().strip()


@dataclass(frozen=True)
class SignedPrediction:
    model_version: str
    text_hash: str
    label: str
    labels: tuple[str, ...]
    #: The id as this server signs it: equal for every spelling a client may send of one prediction's id.
    prediction_id: str = ""


class PredictionIdError(ValueError):
    """A prediction id that is forged or cites another text; ``error`` is the slug the API answers with."""

    def __init__(self, message: str, error: str) -> None:
        super().__init__(message)
        self.error = error


class PredictionSigner:
    def __init__(self, secret: str) -> None:
        if not secret:
            raise ValueError("the prediction-id secret is empty")
        self._serializer = URLSafeSerializer(secret, salt=SALT)

    def sign(self, *, model_version: str, text: str, label: str, labels: list[str]) -> str:
        return self._serializer.dumps([str(model_version), text_hash(text), label, list(labels)])

    def verify(self, prediction_id: str, text: str) -> SignedPrediction:
        """The signed prediction for ``text``; ``PredictionIdError`` for anything forged or mismatched."""
        try:
            version, hashed, label, labels = self._serializer.loads(prediction_id)
        except (BadSignature, ValueError, TypeError) as exc:
            raise PredictionIdError(
                "prediction_id: not a prediction id this server signed; send the one /predict returned",
                error="invalid_prediction_id",
            ) from exc
        if hashed != text_hash(text):
            raise PredictionIdError(
                "text: differs from the text the prediction_id was issued for", error="prediction_id_mismatch"
            )
        canonical = self._serializer.dumps([version, hashed, label, labels])
        return SignedPrediction(
            str(version), str(hashed), str(label), tuple(str(x) for x in labels), prediction_id=canonical
        )
