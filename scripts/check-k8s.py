#!/usr/bin/env python3
"""Checks what a schema cannot: that deploy/k8s/ hangs together.

kubernetes-validate (run by scripts/validate-k8s.sh) checks each object against the
Kubernetes OpenAPI schemas. This script checks the relations between objects and
the rules this project keeps:

- YAML without duplicate keys; every object in namespace `flowgate`;
- Deployments: selector matches the pod labels; every container has an image built by
  scripts/build-images.sh, CPU and memory requests and limits (valid quantities,
  requests <= limits), readiness and liveness probes on a declared port, runs as
  non-root without privilege escalation on a read-only root; every mount has a
  volume; the grace period outlasts the preStop pause plus FLOWGATE_SHUTDOWN_GRACE;
- Secrets referenced by env or volume exist in examples/secrets.yaml with those keys;
- Services select a Deployment's pods and target declared ports; the flow service's
  is headless; the gateway's FLOWGATE_BACKEND names it with the right port;
- each Deployment has a HorizontalPodAutoscaler (targets exist, min <= max, CPU
  requests set for utilisation targets) and a PodDisruptionBudget that selects its
  pods and still lets a node drain at the autoscaler's minimum.

Exit 0 when all holds, 1 with one line per problem otherwise.
"""

import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
# The directory to check: deploy/k8s/, or the first argument.
K8S = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else ROOT / "deploy" / "k8s"
NAMESPACE = "flowgate"
IMAGES = {"flowgate-gateway", "flowgate-flow-service"}

problems = []


def problem(where, message):
    problems.append(f"{where}: {message}")


class UniqueKeyLoader(yaml.SafeLoader):
    """A loader that refuses duplicate keys, which PyYAML (and kubectl) silently merge."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def shown(path):
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def load(paths):
    objects = []
    for path in paths:
        try:
            docs = list(yaml.load_all(path.read_text(), Loader=UniqueKeyLoader))
        except yaml.YAMLError as e:
            problem(shown(path), str(e).replace("\n", " "))
            continue
        for doc in docs:
            if doc is None:
                continue
            name = doc.get("metadata", {}).get("name")
            where = f"{shown(path)} {doc.get('kind')}/{name}"
            objects.append((where, doc))
    return objects


QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
FACTORS = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value):
    match = QUANTITY.match(str(value))
    if not match:
        return None
    return float(match.group(1)) * FACTORS[match.group(2)]


def duration_seconds(text):
    match = re.fullmatch(r"([0-9]+)(ms|s|m|h)", text or "")
    if not match:
        return None
    n, unit = int(match.group(1)), match.group(2)
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_probe(where, container, kind, ports):
    probe = container.get(kind)
    if not probe:
        problem(where, f"container {container['name']} has no {kind}")
        return
    port = None
    for handler in ("httpGet", "tcpSocket", "grpc"):
        if handler in probe:
            port = probe[handler].get("port")
    if port is None and "exec" not in probe:
        problem(where, f"{kind} of {container['name']} has no handler with a port")
    elif port is not None and port not in ports:
        problem(where, f"{kind} of {container['name']} uses port {port!r}, not declared")


def main():
    manifests = sorted(K8S.glob("*.yaml"))
    objects = load(manifests)
    secrets = {doc["metadata"]["name"]: doc for _, doc in load(sorted((K8S / "examples").glob("*.yaml")))
               if doc.get("kind") == "Secret"}
    by_kind = {}
    for where, doc in objects:
        by_kind.setdefault(doc.get("kind"), []).append((where, doc))
        if doc.get("kind") != "Namespace" and doc["metadata"].get("namespace") != NAMESPACE:
            problem(where, f"not in namespace {NAMESPACE}")
    if not any(doc["metadata"]["name"] == NAMESPACE for _, doc in by_kind.get("Namespace", [])):
        problem("deploy/k8s", f"no Namespace {NAMESPACE}")

    deployments = {}
    for where, doc in by_kind.get("Deployment", []):
        name = doc["metadata"]["name"]
        spec = doc["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        deployments[name] = (where, doc, labels)
        if not selects(spec["selector"].get("matchLabels"), labels):
            problem(where, "selector does not match the pod labels")
        security = pod.get("securityContext", {})
        if not security.get("runAsNonRoot"):
            problem(where, "pod securityContext lacks runAsNonRoot: true")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for volume in volumes.values():
            if "secret" in volume:
                secret = secrets.get(volume["secret"]["secretName"])
                if secret is None:
                    problem(where, f"volume {volume['name']} reads Secret "
                                   f"{volume['secret']['secretName']}, not in examples/secrets.yaml")
                else:
                    keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
                    for item in volume["secret"].get("items", []):
                        if item["key"] not in keys:
                            problem(where, f"volume {volume['name']} reads key {item['key']} "
                                           f"missing from Secret {secret['metadata']['name']}")
        for container in pod["containers"]:
            cname = container["name"]
            image = container.get("image", "").rsplit("/", 1)[-1].split(":")[0]
            if image not in IMAGES:
                problem(where, f"container {cname} image {container.get('image')!r} is not one "
                               f"scripts/build-images.sh builds")
            ports = set()
            for port in container.get("ports", []):
                ports.add(port["containerPort"])
                if "name" in port:
                    ports.add(port["name"])
            resources = container.get("resources", {})
            for resource in ("cpu", "memory"):
                request = quantity(resources.get("requests", {}).get(resource))
                limit = quantity(resources.get("limits", {}).get(resource))
                if request is None or limit is None:
                    problem(where, f"container {cname} needs a valid {resource} request and limit")
                elif request > limit:
                    problem(where, f"container {cname} requests more {resource} than its limit")
            check_probe(where, container, "readinessProbe", ports)
            check_probe(where, container, "livenessProbe", ports)
            csec = container.get("securityContext", {})
            if csec.get("allowPrivilegeEscalation") is not False:
                problem(where, f"container {cname} must set allowPrivilegeEscalation: false")
            if not csec.get("readOnlyRootFilesystem"):
                problem(where, f"container {cname} must set readOnlyRootFilesystem: true")
            if "ALL" not in csec.get("capabilities", {}).get("drop", []):
                problem(where, f"container {cname} must drop ALL capabilities")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes:
                    problem(where, f"mount {mount['name']} has no volume")
            env = {e["name"]: e for e in container.get("env", [])}
            for var in env.values():
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                secret = secrets.get(ref["name"])
                keys = set(secret.get("stringData", {})) | set(secret.get("data", {})) if secret else set()
                if ref["key"] not in keys:
                    problem(where, f"{var['name']} reads {ref['name']}/{ref['key']}, "
                                   f"not in examples/secrets.yaml")
            pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            grace = duration_seconds(env.get("FLOWGATE_SHUTDOWN_GRACE", {}).get("value")) or 0
            if pod.get("terminationGracePeriodSeconds", 30) <= pause + grace:
                problem(where, f"terminationGracePeriodSeconds must exceed the preStop pause "
                               f"({pause}s) plus the shutdown grace ({grace}s)")

    services = {}
    for where, doc in by_kind.get("Service", []):
        spec = doc["spec"]
        services[doc["metadata"]["name"]] = doc
        targets = [d for d in deployments.values() if selects(spec.get("selector"), d[2])]
        if not targets:
            problem(where, "selects no Deployment's pods")
            continue
        pod = targets[0][1]["spec"]["template"]["spec"]
        declared = {p.get("name") for c in pod["containers"] for p in c.get("ports", [])} | \
                   {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
        for port in spec["ports"]:
            if port.get("targetPort", port["port"]) not in declared:
                problem(where, f"targetPort {port.get('targetPort')!r} is not a container port")
    flow = services.get("flow-service")
    if flow is None or flow["spec"].get("clusterIP") != "None":
        problem("deploy/k8s/flow-service.yaml", "the flow-service Service must be headless (clusterIP: None)")
    gateway = deployments.get("gateway")
    if gateway:
        env = {e["name"]: e.get("value") for c in gateway[1]["spec"]["template"]["spec"]["containers"]
               for e in c.get("env", [])}
        backend = urlparse(env.get("FLOWGATE_BACKEND") or "")
        service = services.get(backend.hostname or "")
        if service is None:
            problem(gateway[0], f"FLOWGATE_BACKEND {env.get('FLOWGATE_BACKEND')!r} names no Service")
        elif backend.port not in {p["port"] for p in service["spec"]["ports"]}:
            problem(gateway[0], f"FLOWGATE_BACKEND port {backend.port} is not a port of Service {backend.hostname}")

    minimum = {}
    for where, doc in by_kind.get("HorizontalPodAutoscaler", []):
        spec = doc["spec"]
        target = spec["scaleTargetRef"]
        if target.get("kind") != "Deployment" or target["name"] not in deployments:
            problem(where, f"scales {target.get('kind')}/{target['name']}, which is not here")
            continue
        minimum[target["name"]] = spec.get("minReplicas", 1)
        if spec.get("minReplicas", 1) > spec["maxReplicas"]:
            problem(where, "minReplicas exceeds maxReplicas")
        for metric in spec.get("metrics", []):
            if metric.get("type") == "Resource":
                resource = metric["resource"]["name"]
                pod = deployments[target["name"]][1]["spec"]["template"]["spec"]
                if any(resource not in c.get("resources", {}).get("requests", {}) for c in pod["containers"]):
                    problem(where, f"utilisation of {resource} needs a {resource} request in every container")
    for name in deployments:
        if name not in minimum:
            problem(deployments[name][0], "has no HorizontalPodAutoscaler")

    budgeted = set()
    for where, doc in by_kind.get("PodDisruptionBudget", []):
        spec = doc["spec"]
        matched = [n for n, d in deployments.items() if selects(spec["selector"].get("matchLabels"), d[2])]
        if not matched:
            problem(where, "selects no Deployment's pods")
        for name in matched:
            budgeted.add(name)
            replicas = minimum.get(name, deployments[name][1]["spec"].get("replicas", 1))
            if "minAvailable" in spec and isinstance(spec["minAvailable"], int) and spec["minAvailable"] >= replicas:
                problem(where, f"minAvailable {spec['minAvailable']} blocks every eviction at {replicas} replicas")
            if "maxUnavailable" in spec and isinstance(spec["maxUnavailable"], int) and \
                    not 0 < spec["maxUnavailable"] < replicas:
                problem(where, f"maxUnavailable {spec['maxUnavailable']} at {replicas} replicas "
                               "either blocks evictions or allows all pods down")
    for name in deployments:
        if name not in budgeted:
            problem(deployments[name][0], "has no PodDisruptionBudget")

    for line in problems:
        print(line)
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
    if problems:
        print(f"check-k8s: {len(problems)} problem(s)")
        return 1
    print(f"check-k8s: {kinds}, {len(secrets)} Secret template(s): consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
