"""S3 access for every component: URIs in, bytes/frames/JSON out, with errors that name the endpoint.

Local paths are accepted wherever an ``s3://`` URI is, so the same code reads a user's file or a
snapshot in the object store.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from sentiflow.settings.components import S3Settings

if TYPE_CHECKING:  # pandas loads with the first parquet, not when a server worker boots
    import pandas as pd


class StorageError(RuntimeError):
    """An object-store operation failed; the message names the endpoint and the URI."""


class StorageUnreachableError(StorageError):
    """The S3 endpoint did not answer."""


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        if not uri.startswith("s3://"):
            raise ValueError(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"s3 URI without a bucket: {uri!r}")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return S3Uri(self.bucket, key)


def is_s3_uri(location: str) -> bool:
    return location.startswith("s3://")


#: Chunk of a streamed read or of a multipart upload: big enough for throughput, small enough to ignore.
STREAM_CHUNK_BYTES = 8 * 2**20


class ObjectStore:
    """A thin, typed wrapper over a boto3 S3 client.

    boto3 is the library; this class only turns its exceptions into messages a user can act on
    (which endpoint, which URI) and adds the few compound operations the pipeline needs.
    """

    def __init__(self, settings: S3Settings | None = None, client: Any | None = None) -> None:
        self.settings = settings or S3Settings()
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3
            from botocore.config import Config

            self._client = boto3.client(
                "s3",
                config=Config(
                    connect_timeout=self.settings.connect_timeout_s,
                    read_timeout=60,
                    retries={"max_attempts": self.settings.max_attempts, "mode": "standard"},
                    s3={"addressing_style": "path"},
                ),
                **self.settings.boto3_kwargs(),
            )
        return self._client

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint_url or "AWS S3"

    def uri(self, *parts: str) -> S3Uri:
        """A URI in the configured bucket."""
        return S3Uri(self.settings.bucket, "").join(*parts)

    def _call(self, what: str, uri: S3Uri | str, fn: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        try:
            return fn(**kwargs)
        except EndpointConnectionError as exc:
            raise StorageUnreachableError(
                f"S3 endpoint {self.endpoint} is unreachable while trying to {what} {uri}: {exc}. "
                "Is the object store running (`make up`) and SENTIFLOW_S3_ENDPOINT_URL right?"
            ) from exc
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(f"{uri} does not exist (S3 endpoint {self.endpoint})") from exc
            if code == "NoSuchBucket":
                raise FileNotFoundError(
                    f"bucket {S3Uri.parse(str(uri)).bucket!r} does not exist at {self.endpoint}"
                ) from exc
            raise StorageError(f"S3 {what} {uri} failed at {self.endpoint}: {code}: {exc}") from exc
        except BotoCoreError as exc:
            raise StorageUnreachableError(
                f"S3 endpoint {self.endpoint} failed while trying to {what} {uri}: {exc}"
            ) from exc

    # --- primitives ---------------------------------------------------------------------------------
    def ensure_bucket(self, bucket: str | None = None) -> None:
        bucket = bucket or self.settings.bucket
        from botocore.exceptions import ClientError

        try:
            self._call("check bucket", f"s3://{bucket}", self.client.head_bucket, Bucket=bucket)
        except (FileNotFoundError, StorageError, ClientError):
            self._call("create bucket", f"s3://{bucket}", self.client.create_bucket, Bucket=bucket)

    def put_bytes(
        self, uri: S3Uri | str, data: bytes, content_type: str = "application/octet-stream"
    ) -> None:
        u = S3Uri.parse(str(uri))
        self._call(
            "write",
            u,
            self.client.put_object,
            Bucket=u.bucket,
            Key=u.key,
            Body=data,
            ContentType=content_type,
        )

    def upload_fileobj(
        self, uri: S3Uri | str, fileobj: IO[bytes], content_type: str = "application/octet-stream"
    ) -> None:
        """Upload a (seekable, rewound) file object; large ones go as a multipart upload, chunk by chunk.

        This is how snapshot parts of any size reach S3 without being held in memory: boto3's transfer
        manager reads ``STREAM_CHUNK_BYTES`` at a time from the (spooled) temporary file.
        """
        from boto3.s3.transfer import TransferConfig

        u = S3Uri.parse(str(uri))
        config = TransferConfig(
            multipart_threshold=STREAM_CHUNK_BYTES, multipart_chunksize=STREAM_CHUNK_BYTES, max_concurrency=4
        )
        self._call(
            "upload",
            u,
            self.client.upload_fileobj,
            Fileobj=fileobj,
            Bucket=u.bucket,
            Key=u.key,
            ExtraArgs={"ContentType": content_type},
            Config=config,
        )

    def iter_chunks(self, location: str, chunk_bytes: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes of an ``s3://`` object or a local file, streamed in chunks (never whole in memory)."""
        if not is_s3_uri(location):
            path = Path(location).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"no such file: {location}")
            with path.open("rb") as handle:
                while chunk := handle.read(chunk_bytes):
                    yield chunk
            return
        u = S3Uri.parse(location)
        response = self._call("read", u, self.client.get_object, Bucket=u.bucket, Key=u.key)
        body = response["Body"]
        try:
            yield from body.iter_chunks(chunk_bytes)
        finally:
            body.close()

    def get_bytes(self, uri: S3Uri | str) -> bytes:
        u = S3Uri.parse(str(uri))
        response = self._call("read", u, self.client.get_object, Bucket=u.bucket, Key=u.key)
        return response["Body"].read()

    def exists(self, uri: S3Uri | str) -> bool:
        u = S3Uri.parse(str(uri))
        try:
            self._call("check", u, self.client.head_object, Bucket=u.bucket, Key=u.key)
        except FileNotFoundError:
            return False
        return True

    def list_keys(self, prefix_uri: S3Uri | str) -> list[str]:
        u = S3Uri.parse(str(prefix_uri))
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = self._call("list", u, lambda: list(paginator.paginate(Bucket=u.bucket, Prefix=u.key)))
        for page in pages:
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def delete(self, uri: S3Uri | str) -> None:
        u = S3Uri.parse(str(uri))
        self._call("delete", u, self.client.delete_object, Bucket=u.bucket, Key=u.key)

    def delete_prefix(self, prefix_uri: S3Uri | str) -> int:
        u = S3Uri.parse(str(prefix_uri))
        keys = self.list_keys(u)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(
                "delete under",
                u,
                self.client.delete_objects,
                Bucket=u.bucket,
                Delete={"Objects": batch, "Quiet": True},
            )
        return len(keys)

    # --- typed helpers ----------------------------------------------------------------------------------
    def read_location(self, location: str) -> bytes:
        """Bytes of an ``s3://`` object or a local file."""
        if is_s3_uri(location):
            return self.get_bytes(location)
        path = Path(location).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {location}")
        return path.read_bytes()

    def put_json(self, uri: S3Uri | str, obj: Any) -> bytes:
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        self.put_bytes(uri, data, "application/json")
        return data

    def get_json(self, uri: S3Uri | str) -> Any:
        return json.loads(self.read_location(str(uri)))

    def put_parquet(self, uri: S3Uri | str, frame: pd.DataFrame) -> bytes:
        """Write a frame as parquet and return the exact bytes written (for the manifest's sha256)."""
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False, compression="zstd")
        data = buffer.getvalue()
        self.put_bytes(uri, data, "application/vnd.apache.parquet")
        return data

    def get_parquet(self, uri: S3Uri | str) -> pd.DataFrame:
        import pandas as pd

        return pd.read_parquet(io.BytesIO(self.read_location(str(uri))))
