"""Hardened containers in compose and on Kubernetes (docs/security.md, Containers).

- **hardening**: Containers, hardened: no capabilities, no privilege gain, a read-only root filesystem,
  writable only where the component writes (the paths docs/security.md lists). Read from `compose config`
  (the ``resolved`` fixture): what Docker would be given, every anchor and merge applied.
- **hardening**: K8s/ hardened: every container of every workload runs without capabilities, without
  privilege gain, on a read-only root filesystem (writing only to its emptyDir and claim volumes) as a non-
  root user; the model server's pods reach no address outside the cluster; every NetworkPolicy peer is
  scoped to a named namespace.
"""

from __future__ import annotations

import copy
import shlex

import pytest
import yaml

from tests.integration.deployment.k8s_manifests import K8S, ROOT, _validate, manifests

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


WORKLOADS = {"Deployment", "StatefulSet", "Job", "Pod"}


def _pod_specs() -> list[tuple[str, dict]]:
    out = []
    for _, doc in manifests():
        if doc["kind"] in WORKLOADS:
            spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
            out.append((f"{doc['kind']}/{doc['metadata']['name']}", spec))
    return out


def _containers() -> list[tuple[str, dict, dict]]:
    return [
        (f"{name}/{c['name']}", c, spec)
        for name, spec in _pod_specs()
        for c in [*spec.get("initContainers", []), *spec["containers"]]
    ]


CONTAINERS = _containers()


def test_the_workloads_are_found():
    assert len(CONTAINERS) >= 10


@pytest.mark.parametrize(("name", "container", "spec"), CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_every_container_is_hardened(name, container, spec):
    ctx = container.get("securityContext", {})
    assert ctx.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation: false"
    assert ctx.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem: true"
    caps = ctx.get("capabilities", {})
    assert caps.get("drop") == ["ALL"], f"{name}: capabilities drop ALL"
    assert not caps.get("add"), f"{name}: adds no capability"
    assert not ctx.get("privileged"), name
    non_root = ctx.get("runAsNonRoot", spec.get("securityContext", {}).get("runAsNonRoot"))
    assert non_root is True, f"{name}: runAsNonRoot"


@pytest.mark.parametrize(("name", "container", "spec"), CONTAINERS, ids=[c[0] for c in CONTAINERS])
def test_containers_write_only_to_pod_volumes(name, container, spec):
    """A writable mount is an emptyDir or the StatefulSet's claim: never a hostPath."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"])
        if volume is None:  # a volumeClaimTemplate's claim
            continue
        assert "hostPath" not in volume, f"{name}: {mount['mountPath']}"
        if "emptyDir" not in volume:
            assert mount.get("readOnly") or {"secret", "configMap", "projected"} & volume.keys(), (
                f"{name}: {mount['mountPath']} is writable but not an emptyDir"
            )


def _policies() -> list[dict]:
    return [d for _, d in manifests() if d["kind"] == "NetworkPolicy"]


def _selects_model_server(policy: dict) -> bool:
    want = {"app.kubernetes.io/name": "model-server"}
    if policy["metadata"]["namespace"] != "sentiflow":
        return False
    labels = policy["spec"]["podSelector"].get("matchLabels", {})
    return labels.items() <= want.items()


def test_the_model_server_reaches_no_address_outside_the_cluster():
    """No ipBlock (0.0.0.0/0 on 443 let a compromised replica send anything anywhere) and no rule that
    allows every destination; only the in-cluster peers it needs."""
    selecting = [p for p in _policies() if _selects_model_server(p) and "Egress" in p["spec"]["policyTypes"]]
    assert selecting
    peers = set()
    for policy in selecting:
        for rule in policy["spec"].get("egress", []):
            assert rule.get("to"), f"{policy['metadata']['name']}: an egress rule without `to` allows all"
            for peer in rule["to"]:
                assert "ipBlock" not in peer, f"{policy['metadata']['name']}: {peer['ipBlock']}"
                peers.add(tuple(sorted(peer.get("podSelector", {}).get("matchLabels", {}).items())))
    names = {
        dict(p).get("app.kubernetes.io/name") or dict(p).get("k8s-app") or dict(p).get("component")
        for p in peers
    }
    # api-server: Airflow's (the Helm chart's label), which POST /deploy asks for release runs
    assert names == {"model-server-db", "redis", "mlflow", "object-store", "kube-dns", "api-server"}


def _peers():
    for policy in _policies():
        name = f"{policy['metadata']['namespace']}/{policy['metadata']['name']}"
        for key, peers_key in (("ingress", "from"), ("egress", "to")):
            for rule in policy["spec"].get(key, []):
                assert peers_key in rule, f"{name}: a {key} rule without `{peers_key}` matches every pod"
                for peer in rule[peers_key]:
                    yield name, peer


def test_no_network_policy_peer_matches_pods_in_any_namespace():
    """A peer that names pods also names their namespace; a namespace selector names one namespace."""
    for name, peer in _peers():
        if "ipBlock" in peer:
            continue
        ns = peer.get("namespaceSelector")
        assert ns is not None, f"{name}: podSelector {peer['podSelector']} without a namespaceSelector"
        assert set(ns) == {"matchLabels"}, f"{name}: {ns}"
        assert set(ns["matchLabels"]) == {"kubernetes.io/metadata.name"}, f"{name}: {ns}"
        if "podSelector" in peer:
            assert peer["podSelector"].get("matchLabels"), f"{name}: an empty podSelector"


# --- the Airflow Helm chart: its containers as k8s/airflow-values.yaml makes them -------------------------
# No `helm` and no copy of the chart here: these tests apply the chart's own rules to the values.
# chart/templates/_helpers.yaml, "containerSecurityContext": a container's securityContext is its
# component's `securityContexts.container`, else the global `securityContexts.containers`; "external"
# containers (StatsD, PgBouncer) take their component's only, else a default without a read-only root.
VALUES = yaml.safe_load((K8S / "airflow-values.yaml").read_text())

# Every Airflow container the chart makes with the KubernetesExecutor on Airflow 3 -> its values key. The
# chart mounts its `logs` volume at /opt/airflow/logs in all but the API server and the migration Job.
AIRFLOW_CONTAINERS: dict[str, tuple[str, ...]] = {
    "scheduler": ("scheduler",),
    "scheduler/wait-for-airflow-migrations": ("scheduler", "waitForMigrations"),
    "scheduler/scheduler-log-groomer": ("scheduler", "logGroomerSidecar"),
    "api-server": ("apiServer",),
    "api-server/wait-for-airflow-migrations": ("apiServer", "waitForMigrations"),
    "dag-processor": ("dagProcessor",),
    "dag-processor/wait-for-airflow-migrations": ("dagProcessor", "waitForMigrations"),
    "dag-processor/dag-processor-log-groomer": ("dagProcessor", "logGroomerSidecar"),
    "triggerer": ("triggerer",),
    "triggerer/wait-for-airflow-migrations": ("triggerer", "waitForMigrations"),
    "triggerer/triggerer-log-groomer": ("triggerer", "logGroomerSidecar"),
    "task pod (pod template)/base": ("workers",),
    "run-airflow-migrations": ("migrateDatabaseJob",),
    "create-user": ("createUserJob",),
}

# The chart's other containers -> (values key, whether the chart enables it by default).
EXTERNAL_CONTAINERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "statsd": (("statsd",), True),
    "pgbouncer": (("pgbouncer",), False),
    "pgbouncer/metrics-exporter": (("pgbouncer", "metricsExporterSidecar"), False),
}

HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}

AIRFLOW_HOME = "/opt/airflow"


def _values(path: tuple[str, ...], values: dict = VALUES) -> dict:
    node = values
    for key in path:
        node = node.get(key) or {}
    return node


def _container_context(path: tuple[str, ...], values: dict = VALUES) -> dict:
    own = _values(path, values).get("securityContexts", {}).get("container")
    return own or values.get("securityContexts", {}).get("containers") or {}


def _enabled(path: tuple[str, ...], default: bool) -> bool:
    enabled = _values(path[:1]).get("enabled", default)
    return bool(enabled) and _values(path).get("enabled", True) is not False


def _image_env() -> dict[str, str]:
    """The ENV of the Airflow image's last stage."""
    text = (ROOT / "docker" / "airflow.Dockerfile").read_text().replace("\\\n", " ")
    env = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(word.split("=", 1) for word in shlex.split(line[4:]))
    return env


@pytest.mark.parametrize("name", sorted(AIRFLOW_CONTAINERS))
def test_every_airflow_chart_container_is_hardened(name):
    assert _container_context(AIRFLOW_CONTAINERS[name]) == HARDENED, name


@pytest.mark.parametrize("name", sorted(EXTERNAL_CONTAINERS))
def test_the_charts_other_containers_are_hardened_where_enabled(name):
    path, default = EXTERNAL_CONTAINERS[name]
    if _enabled(path, default):
        assert _values(path).get("securityContexts", {}).get("container") == HARDENED, name


def test_a_components_own_context_replaces_the_global_one():
    """The chart's rule as modelled: a weaker context on one component is what the test above catches."""
    values = copy.deepcopy(VALUES)
    values.setdefault("triggerer", {})["securityContexts"] = {
        "container": {"allowPrivilegeEscalation": False}
    }
    assert _container_context(("triggerer",), values) == {"allowPrivilegeEscalation": False}
    assert _container_context(("scheduler",), values) == HARDENED


def _writable_mounts(volumes: list[dict], mounts: list[dict]) -> set[str]:
    by_name = {v["name"]: v for v in volumes}
    return {m["mountPath"] for m in mounts if "emptyDir" in by_name[m["name"]] and not m.get("readOnly")}


def _under(path: str, folders: set[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def test_every_airflow_container_writes_its_scratch_files_to_a_volume():
    """/tmp for every Airflow container (the global `volumes`/`volumeMounts`): matplotlib's config, the DAG
    bundles' default storage (tempfile.gettempdir(), as no TMPDIR or dag_bundle_storage_path moves it), the
    API server's and the tasks' temporary files."""
    writable = _writable_mounts(VALUES.get("volumes", []), VALUES.get("volumeMounts", []))
    assert "/tmp" in writable
    env = {**_image_env(), **{e["name"]: e["value"] for e in VALUES["env"]}}
    assert _under(env["MPLCONFIGDIR"], writable)
    assert "TMPDIR" not in env
    assert "dag_bundle_storage_path" not in VALUES.get("config", {}).get("dag_processor", {})


def test_task_pods_write_the_model_cache_to_a_volume():
    workers = VALUES["workers"]
    writable = _writable_mounts(
        [*VALUES.get("volumes", []), *workers["extraVolumes"]],
        [*VALUES.get("volumeMounts", []), *workers["extraVolumeMounts"]],
    )
    assert _under(_image_env()["HF_HOME"], writable)
    # the chart's `logs` emptyDir takes the task logs before they go to S3
    assert VALUES.get("logs", {}).get("persistence", {}).get("enabled") is not True


def test_no_writable_volume_hides_what_the_image_holds():
    """A volume over AIRFLOW_HOME (compose's tmpfs) would hide the baked-in DAGs, plugins and FAB's settings;
    one over the user's home its installed packages (~/.local)."""
    image_paths = {f"{AIRFLOW_HOME}/dags", f"{AIRFLOW_HOME}/plugins", f"{AIRFLOW_HOME}/webserver_config.py"}
    image_paths.add("/home/airflow/.local")
    mounts = [*VALUES.get("volumeMounts", [])]
    for component in {path[0] for path in AIRFLOW_CONTAINERS.values()}:
        mounts += _values((component,)).get("extraVolumeMounts", [])
    for mount in mounts:
        for path in image_paths:
            assert not _under(path, {mount["mountPath"]}), f"{mount['mountPath']} hides {path}"


def test_the_image_ships_fabs_settings_so_airflow_writes_nothing_into_its_home():
    """The FAB auth manager writes webserver_config.py into AIRFLOW_HOME when it finds none; the chart
    mounts airflow.cfg, and the image holds this file."""
    dockerfile = (ROOT / "docker" / "airflow.Dockerfile").read_text()
    copy = "COPY --chown=airflow:0 docker/airflow/webserver_config.py /opt/airflow/webserver_config.py"
    assert copy in dockerfile
    assert (ROOT / "docker" / "airflow" / "webserver_config.py").is_file()
    api_server = _values(("apiServer",))
    assert not api_server.get("apiServerConfig") and not api_server.get("apiServerConfigConfigMapName")


def test_the_task_pod_the_chart_renders_validates():
    """The pod template's pod as the chart assembles it from these values (its `logs` and `config` volumes,
    the global volumes, the workers' extras), against the Kubernetes schema: a misspelt field in a
    security context or volume fails here, not at the first task."""
    workers = VALUES["workers"]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "placeholder-name"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsUser": 50000, "fsGroup": 0},
            "containers": [
                {
                    "name": "base",
                    "image": f"{VALUES['images']['pod_template']['repository']}:0.1.0",
                    "securityContext": _container_context(("workers",)),
                    "volumeMounts": [
                        {"name": "logs", "mountPath": f"{AIRFLOW_HOME}/logs"},
                        {
                            "name": "config",
                            "mountPath": f"{AIRFLOW_HOME}/airflow.cfg",
                            "subPath": "airflow.cfg",
                            "readOnly": True,
                        },
                        *VALUES.get("volumeMounts", []),
                        *workers["extraVolumeMounts"],
                    ],
                }
            ],
            "volumes": [
                {"name": "logs", "emptyDir": {}},
                {"name": "config", "configMap": {"name": "airflow-config"}},
                *VALUES.get("volumes", []),
                *workers["extraVolumes"],
            ],
        },
    }
    _validate(pod)
    names = [v["name"] for v in pod["spec"]["volumes"]]
    assert len(names) == len(set(names)), names
    paths = [m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]]
    assert len(paths) == len(set(paths)), paths
