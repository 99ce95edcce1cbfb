"""The Kubernetes manifests (deploy/kubernetes/), checked offline: no cluster, no network, no root.

Two kinds of check. First, every manifest must validate against the API schemas of a pinned
Kubernetes version in strict mode, which rejects unknown fields: a misspelled field such as
``readOnlyRootFileSystem`` is otherwise dropped without a word by a lenient apply, and the
hardening it was meant to add silently goes with it. A deliberately broken copy must fail, so
the check is known to bite. Second, the DaemonSet must stay least-privileged and consistent
with itself and with the rest of the project: the capabilities it adds are exactly the ones
synfin's probes need, each within what the host's systemd unit allows; every hostPath is
read-only; the port synfin listens on is the one the probes, the annotations and the Service
point at; and the Service selects the DaemonSet's pods.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from synfin.kernel import capabilities
from tests.paths import REPO

MANIFESTS = REPO / "deploy" / "kubernetes"
UNIT = REPO / "deploy" / "synfin.service"

# Pinned so that a new kubernetes-validate release cannot change the verdict unnoticed: the
# newest version kubernetes-validate 1.37 carries schemas for.
KUBERNETES_VERSION = "1.37.0"

# The container's set in synfin's table of capabilities (collector/kernel/capabilities.py),
# spelled as Kubernetes does.
PROBE_CAPABILITIES = {name.removeprefix("CAP_") for name in capabilities.CONTAINER_SET}
# What --ground-truth=all (synfin's default) needs on top: entering every network namespace.
ALL_NAMESPACES_CAPABILITIES = {"SYS_ADMIN", "SYS_PTRACE"}

Manifest = dict[str, Any]


def resource_files() -> list[Path]:
    # kustomization.yaml is kustomize's own input, not an API object.
    return sorted(p for p in MANIFESTS.glob("*.yaml") if p.name != "kustomization.yaml")


def load(name: str) -> Manifest:
    documents = [d for d in yaml.safe_load_all((MANIFESTS / name).read_text()) if d]
    assert len(documents) == 1, f"{name}: expected one document, found {len(documents)}"
    return documents[0]


def strict_errors(path: Path) -> list[str]:
    """Every strict-validation error in the file's documents; empty when all of them pass."""
    errors = []
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            errors.append(
                f"{document['kind']}/{document['metadata']['name']}: {where}: {error.message}"
            )
        except kubernetes_validate.utils.VersionNotSupportedError:
            pytest.fail(
                f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for "
                f"Kubernetes {KUBERNETES_VERSION}: upgrade it (pip install -U kubernetes-validate)"
            )
    return errors


def daemonset() -> Manifest:
    return load("daemonset.yaml")


def pod_spec() -> Manifest:
    return daemonset()["spec"]["template"]["spec"]


def container() -> Manifest:
    (only,) = pod_spec()["containers"]
    return only


def container_port(port: int | str) -> int:
    """A port as a probe or a Service names it, resolved against the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container()["ports"] if p["name"] == port]
    return number


def argument(name: str) -> str | None:
    """The value of a ``--name value`` or ``--name=value`` option in the container's args."""
    args = container()["args"]
    for index, arg in enumerate(args):
        if arg == name:
            return args[index + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def listen_port() -> int:
    address = argument("--listen-address")
    assert address is not None, "the port synfin listens on must be explicit in args"
    return int(address.rpartition(":")[2])


def added_capabilities() -> set[str]:
    return set(container()["securityContext"]["capabilities"]["add"])


# Strict schema validation


def test_there_are_manifests_to_validate() -> None:
    assert {p.name for p in resource_files()} >= {
        "daemonset.yaml",
        "service.yaml",
        "namespace.yaml",
    }


@pytest.mark.parametrize("path", resource_files(), ids=lambda p: p.name)
def test_manifest_validates_strictly_against_pinned_kubernetes(path: Path) -> None:
    assert strict_errors(path) == []


def test_misspelled_field_fails_strict_validation(tmp_path: Path) -> None:
    broken = daemonset()
    # One wrong capital letter: a lenient apply would drop it and leave the root fs writable.
    broken["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFileSystem"
    ] = True
    path = tmp_path / "daemonset.yaml"
    path.write_text(yaml.safe_dump(broken))
    errors = strict_errors(path)
    assert len(errors) == 1, errors
    assert "readOnlyRootFileSystem" in errors[0]


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load("kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in resource_files()]


# Least privilege


def test_adds_exactly_the_capabilities_the_probes_need() -> None:
    assert added_capabilities() == PROBE_CAPABILITIES


def test_added_capabilities_are_within_the_host_units_bounding_set() -> None:
    """The systemd unit is the reference for what synfin may ever hold; the pod is a subset."""
    line = next(
        line for line in UNIT.read_text().splitlines() if line.startswith("CapabilityBoundingSet=")
    )
    bounding = set(line.split("=", 1)[1].split())
    assert {f"CAP_{name}" for name in added_capabilities()} <= bounding


def test_ground_truth_scope_fits_the_added_capabilities() -> None:
    # --ground-truth defaults to "all", which cannot enter other namespaces without these.
    if argument("--ground-truth") in (None, "all"):
        assert added_capabilities() >= ALL_NAMESPACES_CAPABILITIES
    else:
        assert not added_capabilities() & ALL_NAMESPACES_CAPABILITIES


def test_container_drops_all_and_cannot_escalate() -> None:
    security = container()["securityContext"]
    assert "ALL" in security["capabilities"]["drop"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["privileged"] is False


def test_shares_the_hosts_pid_and_network_namespaces() -> None:
    spec = pod_spec()
    assert spec["hostPID"] is True
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"


def test_every_host_path_is_mounted_read_only() -> None:
    host_paths = {v["name"] for v in pod_spec()["volumes"] if "hostPath" in v}
    assert host_paths, "the probes need the kernel's files from the host"
    mounts = [m for m in container()["volumeMounts"] if m["name"] in host_paths]
    assert {m["name"] for m in mounts} == host_paths, "a hostPath volume is not mounted"
    writable = [m["mountPath"] for m in mounts if m.get("readOnly") is not True]
    assert writable == []


# One port, named consistently everywhere


@pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe"])
def test_probe_scrapes_metrics_on_the_listen_port(probe: str) -> None:
    get = container()[probe]["httpGet"]
    assert get["path"] == "/metrics"
    assert container_port(get["port"]) == 9977 == listen_port()


def test_listen_port_matches_container_port_and_annotations() -> None:
    (port,) = container()["ports"]
    assert port["containerPort"] == listen_port()
    for scrape in (
        daemonset()["spec"]["template"]["metadata"]["annotations"],
        load("service.yaml")["metadata"]["annotations"],
    ):
        assert scrape["prometheus.io/scrape"] == "true"
        assert scrape["prometheus.io/port"] == str(listen_port())
        assert scrape["prometheus.io/path"] == "/metrics"


def test_service_selects_the_daemonsets_pods() -> None:
    service = load("service.yaml")
    pod_labels = daemonset()["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"]["selector"]
    assert selector and selector.items() <= pod_labels.items()
    assert daemonset()["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    (port,) = service["spec"]["ports"]
    assert container_port(port["targetPort"]) == port["port"] == listen_port()


def test_everything_lives_in_the_monitoring_namespace() -> None:
    namespace = load("namespace.yaml")
    assert namespace["metadata"]["name"] == "monitoring"
    for name in ("daemonset.yaml", "service.yaml"):
        assert load(name)["metadata"]["namespace"] == "monitoring"
