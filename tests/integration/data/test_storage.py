"""Storage against the real local S3 server."""

from __future__ import annotations

import pandas as pd
import pytest

from sentiflow.settings.components import S3Settings
from sentiflow.storage import ObjectStore, S3Uri, StorageUnreachableError


def test_s3_uri_parse_and_join():
    uri = S3Uri.parse("s3://bucket/a/b")
    assert (uri.bucket, uri.key) == ("bucket", "a/b")
    assert str(uri.join("c", "/d.parquet")) == "s3://bucket/a/b/c/d.parquet"
    with pytest.raises(ValueError, match="not an s3:// URI"):
        S3Uri.parse("/tmp/x")


def test_roundtrip_parquet_json_and_prefix_delete(store: ObjectStore):
    frame = pd.DataFrame({"text": ["a", "b"], "label": [0, 1]})
    uri = store.uri("tests", "roundtrip", "x.parquet")
    store.put_parquet(uri, frame)
    pd.testing.assert_frame_equal(store.get_parquet(uri), frame)
    store.put_json(store.uri("tests", "roundtrip", "m.json"), {"k": 1})
    assert store.get_json(str(store.uri("tests", "roundtrip", "m.json"))) == {"k": 1}
    assert store.delete_prefix(store.uri("tests", "roundtrip/")) == 2
    assert not store.exists(uri)


def test_missing_object_is_file_not_found(store: ObjectStore):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        store.get_bytes(store.uri("tests", "nope.parquet"))


def test_unreachable_endpoint_names_it():
    settings = S3Settings(endpoint_url="http://127.0.0.1:9", max_attempts=1, connect_timeout_s=0.5)
    with pytest.raises(StorageUnreachableError, match=r"127\.0\.0\.1:9"):
        ObjectStore(settings).get_bytes("s3://sentiflow/x")
