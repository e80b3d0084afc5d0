"""docker-compose.yaml's containers, hardened: no capabilities, no privilege gain, a read-only root
filesystem, writable only where the component writes (the paths docs/security.md lists). Read from
`compose config` (the ``resolved`` fixture): what Docker would be given, every anchor and merge applied.
"""

from __future__ import annotations

import pytest

# Capabilities a service may add back after `cap_drop: [ALL]`, with why: none needs one (each starts as the
# user that owns what it writes). An entry here needs its reason in docker-compose.yaml too.
CAP_ADD: dict[str, set[str]] = {}
# Services allowed a writable root filesystem, with why: none.
WRITABLE_ROOT: dict[str, str] = {}

_AIRFLOW = {"/opt/airflow", "/opt/airflow/logs", "/tmp"}
# Where each service may write: its tmpfs mounts and its read-write volumes (docs/security.md, Containers).
WRITABLE = {
    "postgres": {"/var/lib/postgresql/data", "/run/postgresql", "/tmp"},
    "seaweedfs": {"/data", "/tmp"},
    "s3-init": {"/var/lib/sentiflow/s3-config", "/tmp"},
    "mlflow": {"/tmp"},
    "mlflow-init": {"/tmp"},
    "airflow-init": _AIRFLOW,
    "airflow-apiserver": _AIRFLOW,
    "airflow-scheduler": _AIRFLOW,
    "airflow-dag-processor": _AIRFLOW,
    "airflow-triggerer": _AIRFLOW,
    "airflow-worker": _AIRFLOW,
    "redis": set(),
    "model-server": {"/var/lib/sentiflow/model-server", "/tmp", "/home/sentiflow/.cache"},
    "model-server-migrate": {"/tmp"},
}
# Images whose entrypoint chowns its data and drops from root to its own user (gosu, su-exec), which needs
# CHOWN, SETUID and SETGID: these services start as that user instead (SeaweedFS with group 0, which reads
# the identities file s3-init writes).
STARTS_AS_ROOT_IN_IMAGE = {"postgres": "postgres", "redis": "redis", "seaweedfs": "1000:0"}


def _tmpfs(service: dict) -> list[str]:
    tmpfs = service.get("tmpfs", [])
    return [tmpfs] if isinstance(tmpfs, str) else list(tmpfs)


def _writable_volumes(service: dict) -> set[str]:
    """Targets of the read-write volumes, in either form `compose config` writes (1.29's "src:dst:mode"
    string, the v2 plugin's mapping)."""
    out = set()
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if not volume.get("read_only"):
                out.add(volume["target"])
            continue
        parts = str(volume).split(":")
        if len(parts) >= 3 and parts[-1].split(",")[0] == "ro":
            continue
        out.add(parts[1] if len(parts) >= 2 else parts[0])
    return out


def writable_paths(service: dict) -> set[str]:
    return {entry.split(":")[0] for entry in _tmpfs(service)} | _writable_volumes(service)


def test_the_table_names_every_service(resolved):
    assert set(resolved["services"]) == set(WRITABLE)


@pytest.mark.parametrize("name", sorted(WRITABLE))
def test_every_service_drops_all_capabilities(resolved, name):
    service = resolved["services"][name]
    assert [c.upper() for c in service.get("cap_drop", [])] == ["ALL"], f"{name}: cap_drop: [ALL]"
    assert {c.upper() for c in service.get("cap_add", [])} == CAP_ADD.get(name, set()), (
        f"{name}: only the capabilities CAP_ADD names, with their reason"
    )
    assert not service.get("privileged"), name


@pytest.mark.parametrize("name", sorted(WRITABLE))
def test_every_service_forbids_privilege_gain(resolved, name):
    opts = [o.replace("=", ":") for o in resolved["services"][name].get("security_opt", [])]
    assert "no-new-privileges:true" in opts, f"{name}: security_opt no-new-privileges:true"


@pytest.mark.parametrize("name", sorted(WRITABLE))
def test_every_root_filesystem_is_read_only(resolved, name):
    service = resolved["services"][name]
    assert service.get("read_only") is True or name in WRITABLE_ROOT, f"{name}: read_only: true"


@pytest.mark.parametrize("name", sorted(WRITABLE))
def test_each_service_writes_only_where_its_component_writes(resolved, name):
    assert writable_paths(resolved["services"][name]) == WRITABLE[name]


@pytest.mark.parametrize(("name", "user"), sorted(STARTS_AS_ROOT_IN_IMAGE.items()))
def test_images_that_drop_from_root_start_as_their_user(resolved, name, user):
    """Without capabilities the entrypoint's chown and gosu would fail as root: start as the user."""
    assert resolved["services"][name].get("user") == user


def test_private_tmpfs_mounts_belong_to_their_user(resolved):
    """A tmpfs that is not /tmp is owned by the container's user and closed to others."""
    for name, service in resolved["services"].items():
        for entry in _tmpfs(service):
            path, _, opts = entry.partition(":")
            options = dict(o.split("=", 1) for o in opts.split(",") if "=" in o)
            if path == "/tmp":
                assert options.get("mode") == "1777", f"{name}: /tmp is sticky"
            else:
                assert "uid" in options, f"{name}: {entry} names its owner"
                assert int(options.get("mode", "1777")[-1]) & 2 == 0, f"{name}: {entry} is not world-writable"
