#!/usr/bin/env python3
"""Checks what a schema cannot: that deploy/k8s/ hangs together.

kubernetes-validate (run by scripts/validate-k8s.sh) checks each object against the
Kubernetes OpenAPI schemas. This script checks the relations between objects and
the rules this project keeps:

- YAML without duplicate keys; every object in namespace `flowgate`;
- Deployments and StatefulSets: selector matches the pod labels; every container has
  an image built by scripts/build-images.sh (a StatefulSet: an allowed image with a
  pinned tag), CPU and memory requests and limits (valid quantities, requests <=
  limits), readiness and liveness probes on a declared port, runs as non-root without
  privilege escalation on a read-only root, dropping every capability; every mount has
  a volume; the grace period outlasts the preStop pause plus FLOWGATE_SHUTDOWN_GRACE;
- Secrets referenced by env or volume exist in examples/secrets.yaml with those keys;
- Services select a workload's pods and target declared ports; the flow service's
  is headless; the gateway's FLOWGATE_BACKEND names it with the right port; a
  StatefulSet's serviceName is a Service here;
- each Deployment has a HorizontalPodAutoscaler (targets exist, min <= max, CPU
  requests set for utilisation targets) and a PodDisruptionBudget that selects its
  pods and still lets a node drain at the autoscaler's minimum;
- the flow service listens on every interface (FLOW_SERVICE_LISTEN) at its gRPC port;
  both services read the hop token from Secret flowgate-hop (key `token`), required;
- single use across replicas: the flow service's FLOW_SERVICE_DATABASE_URL comes from
  a Secret that is not optional, and the template's URL is PostgreSQL on a Service here;
- NetworkPolicy: a default deny of ingress for the namespace; every workload is
  isolated; the flow service's gRPC port admits the gateway pods only, PostgreSQL the
  flow service pods only, the gateway's public port anyone, admin and metrics ports
  this namespace or named namespaces only; every selector selects pods, every port is
  a declared one;
- no literal secrets: no Secret object outside examples/, no secret-looking variable
  with a literal value (other than a file path), no password in a URL, no PEM key;
  the templates in examples/ hold placeholders (REPLACE…) only.

  check-k8s.py [DIR]         # DIR defaults to deploy/k8s/
  check-k8s.py --self-test   # each rule above that guards the hardening, broken on
                             # purpose in a copy of deploy/k8s/, must be reported

Exit 0 when all holds, 1 with one line per problem otherwise.
"""

import copy
import re
import sys
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parent.parent
NAMESPACE = "flowgate"
IMAGES = {"flowgate-gateway", "flowgate-flow-service"}
# Images from a registry a StatefulSet may run, always with a pinned tag.
THIRD_PARTY_IMAGES = {"postgres"}
HOP_SECRET, HOP_KEY = "flowgate-hop", "token"
DATABASE_SECRET = "flowgate-database"
# Who may reach which port of which workload's pods. "pods:NAME" is that workload's
# pods in this namespace, "namespace:NAME" every pod of that namespace, "anywhere" any
# source at all. `only`: exactly these; `includes`: at least these; `within`: at least
# one, none outside these.
ACCESS = {
    ("flow-service", 50051): ("only", {"pods:gateway"}),
    ("postgres", 5432): ("only", {"pods:flow-service"}),
    ("gateway", 8443): ("includes", {"anywhere"}),
    ("gateway", 9464): ("within", {f"namespace:{NAMESPACE}", "namespace:monitoring"}),
    ("flow-service", 9465): ("within", {f"namespace:{NAMESPACE}", "namespace:monitoring"}),
}
SENSITIVE_VAR = re.compile(r"(PASSWORD|PASSPHRASE|SECRET|TOKEN|_KEY|DATABASE_URL)$")
PASSWORD_IN_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@", re.I)


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


def load(paths, problems):
    objects = []
    for path in paths:
        try:
            docs = list(yaml.load_all(path.read_text(), Loader=UniqueKeyLoader))
        except yaml.YAMLError as e:
            problems.append(f"{shown(path)}: {str(e).replace(chr(10), ' ')}")
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


def secret_keys(secret):
    return set(secret.get("stringData", {})) | set(secret.get("data", {})) if secret else set()


def strings(node):
    """Every string in a parsed document, with a path to it."""
    if isinstance(node, dict):
        for key, value in node.items():
            for path, text in strings(value):
                yield f"{key}.{path}" if path else str(key), text
    elif isinstance(node, list):
        for i, value in enumerate(node):
            for path, text in strings(value):
                yield f"[{i}].{path}" if path else f"[{i}]", text
    elif isinstance(node, str):
        yield "", node


class Check:
    def __init__(self, objects, templates):
        self.objects = objects
        self.templates = templates
        self.problems = []

    def problem(self, where, message):
        self.problems.append(f"{where}: {message}")

    def run(self):
        problem = self.problem
        secrets = {doc["metadata"]["name"]: doc for _, doc in self.templates if doc.get("kind") == "Secret"}
        self.secrets = secrets
        by_kind = {}
        for where, doc in self.objects:
            by_kind.setdefault(doc.get("kind"), []).append((where, doc))
            if doc.get("kind") != "Namespace" and doc["metadata"].get("namespace") != NAMESPACE:
                problem(where, f"not in namespace {NAMESPACE}")
        self.by_kind = by_kind
        if not any(doc["metadata"]["name"] == NAMESPACE for _, doc in by_kind.get("Namespace", [])):
            problem("deploy/k8s", f"no Namespace {NAMESPACE}")

        # name -> (where, doc, pod labels, kind)
        self.workloads = {}
        for kind in ("Deployment", "StatefulSet"):
            for where, doc in by_kind.get(kind, []):
                self.workload(where, doc, kind)
        self.deployments = {n: w for n, w in self.workloads.items() if w[3] == "Deployment"}

        self.services()
        minimum = self.autoscalers()
        self.budgets(minimum)
        self.flow_service(minimum)
        self.hop_token()
        self.network_policies()
        self.literal_secrets()
        return self.problems

    def workload(self, where, doc, kind):
        problem = self.problem
        name = doc["metadata"]["name"]
        spec = doc["spec"]
        pod = spec["template"]["spec"]
        labels = spec["template"]["metadata"].get("labels", {})
        self.workloads[name] = (where, doc, labels, kind)
        if not selects(spec["selector"].get("matchLabels"), labels):
            problem(where, "selector does not match the pod labels")
        security = pod.get("securityContext", {})
        if not security.get("runAsNonRoot"):
            problem(where, "pod securityContext lacks runAsNonRoot: true")
        if security.get("runAsUser") == 0:
            problem(where, "pod securityContext runs as uid 0")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
        for volume in volumes.values():
            if "secret" in volume:
                secret = self.secrets.get(volume["secret"]["secretName"])
                if secret is None:
                    problem(where, f"volume {volume['name']} reads Secret "
                                   f"{volume['secret']['secretName']}, not in examples/secrets.yaml")
                else:
                    for item in volume["secret"].get("items", []):
                        if item["key"] not in secret_keys(secret):
                            problem(where, f"volume {volume['name']} reads key {item['key']} "
                                           f"missing from Secret {secret['metadata']['name']}")
        for container in pod["containers"]:
            cname = container["name"]
            image = container.get("image", "")
            repository = image.rsplit("/", 1)[-1].split("@")[0].split(":")[0]
            tag = image.rsplit("/", 1)[-1].split("@")[0].partition(":")[2]
            if kind == "Deployment" and repository not in IMAGES:
                problem(where, f"container {cname} image {image!r} is not one scripts/build-images.sh builds")
            if kind == "StatefulSet" and (repository not in IMAGES | THIRD_PARTY_IMAGES
                                          or (repository not in IMAGES and tag in ("", "latest"))):
                problem(where, f"container {cname} image {image!r} is not an allowed image with a pinned tag")
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
            self.probe(where, container, "readinessProbe", ports)
            self.probe(where, container, "livenessProbe", ports)
            csec = container.get("securityContext", {})
            if csec.get("allowPrivilegeEscalation") is not False:
                problem(where, f"container {cname} must set allowPrivilegeEscalation: false")
            if not csec.get("readOnlyRootFilesystem"):
                problem(where, f"container {cname} must set readOnlyRootFilesystem: true")
            if "ALL" not in csec.get("capabilities", {}).get("drop", []):
                problem(where, f"container {cname} must drop ALL capabilities")
            if csec.get("runAsUser") == 0 or csec.get("runAsNonRoot") is False or csec.get("privileged"):
                problem(where, f"container {cname} overrides the pod's non-root security context")
            for mount in container.get("volumeMounts", []):
                if mount["name"] not in volumes and mount["name"] not in claims:
                    problem(where, f"mount {mount['name']} has no volume")
            env = {e["name"]: e for e in container.get("env", [])}
            for var in env.values():
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if not ref:
                    continue
                if ref["key"] not in secret_keys(self.secrets.get(ref["name"])):
                    problem(where, f"{var['name']} reads {ref['name']}/{ref['key']}, "
                                   f"not in examples/secrets.yaml")
            pause = container.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
            grace = duration_seconds(env.get("FLOWGATE_SHUTDOWN_GRACE", {}).get("value")) or 0
            if pod.get("terminationGracePeriodSeconds", 30) <= pause + grace:
                problem(where, f"terminationGracePeriodSeconds must exceed the preStop pause "
                               f"({pause}s) plus the shutdown grace ({grace}s)")

    def probe(self, where, container, kind, ports):
        probe = container.get(kind)
        if not probe:
            self.problem(where, f"container {container['name']} has no {kind}")
            return
        port = None
        for handler in ("httpGet", "tcpSocket", "grpc"):
            if handler in probe:
                port = probe[handler].get("port")
        if port is None and "exec" not in probe:
            self.problem(where, f"{kind} of {container['name']} has no handler with a port")
        elif port is not None and port not in ports:
            self.problem(where, f"{kind} of {container['name']} uses port {port!r}, not declared")

    def containers(self, name):
        workload = self.workloads.get(name)
        return workload[1]["spec"]["template"]["spec"]["containers"] if workload else []

    def env(self, name):
        return {e["name"]: e for c in self.containers(name) for e in c.get("env", [])}

    def services(self):
        problem = self.problem
        self.service_docs = {}
        for where, doc in self.by_kind.get("Service", []):
            spec = doc["spec"]
            self.service_docs[doc["metadata"]["name"]] = doc
            targets = [w for w in self.workloads.values() if selects(spec.get("selector"), w[2])]
            if not targets:
                problem(where, "selects no Deployment's or StatefulSet's pods")
                continue
            pod = targets[0][1]["spec"]["template"]["spec"]
            declared = {p.get("name") for c in pod["containers"] for p in c.get("ports", [])} | \
                       {p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
            for port in spec["ports"]:
                if port.get("targetPort", port["port"]) not in declared:
                    problem(where, f"targetPort {port.get('targetPort')!r} is not a container port")
        for name, (where, doc, labels, kind) in self.workloads.items():
            if kind != "StatefulSet":
                continue
            service = self.service_docs.get(doc["spec"].get("serviceName"))
            if service is None or not selects(service["spec"].get("selector"), labels):
                problem(where, f"serviceName {doc['spec'].get('serviceName')!r} is not a Service selecting its pods")
        flow = self.service_docs.get("flow-service")
        if flow is None or flow["spec"].get("clusterIP") != "None":
            problem("deploy/k8s/flow-service.yaml", "the flow-service Service must be headless (clusterIP: None)")
        gateway = self.workloads.get("gateway")
        if gateway:
            backend_var = self.env("gateway").get("FLOWGATE_BACKEND", {}).get("value")
            backend = urlparse(backend_var or "")
            service = self.service_docs.get(backend.hostname or "")
            if service is None:
                problem(gateway[0], f"FLOWGATE_BACKEND {backend_var!r} names no Service")
            elif backend.port not in {p["port"] for p in service["spec"]["ports"]}:
                problem(gateway[0], f"FLOWGATE_BACKEND port {backend.port} is not a port of Service {backend.hostname}")

    def autoscalers(self):
        problem = self.problem
        minimum = {}
        for where, doc in self.by_kind.get("HorizontalPodAutoscaler", []):
            spec = doc["spec"]
            target = spec["scaleTargetRef"]
            if target.get("kind") != "Deployment" or target["name"] not in self.deployments:
                problem(where, f"scales {target.get('kind')}/{target['name']}, which is not here")
                continue
            minimum[target["name"]] = (spec.get("minReplicas", 1), spec["maxReplicas"])
            if spec.get("minReplicas", 1) > spec["maxReplicas"]:
                problem(where, "minReplicas exceeds maxReplicas")
            for metric in spec.get("metrics", []):
                if metric.get("type") == "Resource":
                    resource = metric["resource"]["name"]
                    pod = self.deployments[target["name"]][1]["spec"]["template"]["spec"]
                    if any(resource not in c.get("resources", {}).get("requests", {}) for c in pod["containers"]):
                        problem(where, f"utilisation of {resource} needs a {resource} request in every container")
        for name in self.deployments:
            if name not in minimum:
                problem(self.deployments[name][0], "has no HorizontalPodAutoscaler")
        return minimum

    def budgets(self, minimum):
        problem = self.problem
        budgeted = set()
        for where, doc in self.by_kind.get("PodDisruptionBudget", []):
            spec = doc["spec"]
            matched = [n for n, d in self.deployments.items() if selects(spec["selector"].get("matchLabels"), d[2])]
            if not matched:
                problem(where, "selects no Deployment's pods")
            for name in matched:
                budgeted.add(name)
                replicas = minimum.get(name, (self.deployments[name][1]["spec"].get("replicas", 1),))[0]
                if "minAvailable" in spec and isinstance(spec["minAvailable"], int) and spec["minAvailable"] >= replicas:
                    problem(where, f"minAvailable {spec['minAvailable']} blocks every eviction at {replicas} replicas")
                if "maxUnavailable" in spec and isinstance(spec["maxUnavailable"], int) and \
                        not 0 < spec["maxUnavailable"] < replicas:
                    problem(where, f"maxUnavailable {spec['maxUnavailable']} at {replicas} replicas "
                                   "either blocks evictions or allows all pods down")
        for name in self.deployments:
            if name not in budgeted:
                problem(self.deployments[name][0], "has no PodDisruptionBudget")

    def flow_service(self, minimum):
        """Its listen address, and the one store all its replicas share."""
        problem = self.problem
        flow = self.workloads.get("flow-service")
        if flow is None:
            problem("deploy/k8s", "no flow-service Deployment")
            return
        where, doc = flow[0], flow[1]
        env = self.env("flow-service")
        listen = env.get("FLOW_SERVICE_LISTEN", {}).get("value") or ""
        host, _, port = listen.rpartition(":")
        grpc_ports = {p["containerPort"] for c in self.containers("flow-service")
                      for p in c.get("ports", []) if p.get("name") == "grpc"}
        if host not in ("0.0.0.0", "[::]") or not port.isdigit() or int(port) not in grpc_ports:
            problem(where, f"FLOW_SERVICE_LISTEN must be set to 0.0.0.0:<the grpc port> "
                           f"(the binary's default is loopback), not {listen!r}")

        replicas = max(doc["spec"].get("replicas", 1), *minimum.get("flow-service", (1, 1)))
        url = env.get("FLOW_SERVICE_DATABASE_URL")
        ref = (url or {}).get("valueFrom", {}).get("secretKeyRef")
        if ref is None:
            problem(where, "FLOW_SERVICE_DATABASE_URL must come from a Secret (secretKeyRef)")
            return
        if ref.get("optional"):
            problem(where, f"FLOW_SERVICE_DATABASE_URL from {ref['name']}/{ref['key']} must not be optional: "
                           "without it each pod would keep its own SQLite file")
        if ref["name"] != DATABASE_SECRET:
            problem(where, f"FLOW_SERVICE_DATABASE_URL must come from Secret {DATABASE_SECRET}")
        template = self.secrets.get(ref["name"], {}).get("stringData", {}).get(ref["key"], "")
        shared = urlparse(template)
        if replicas > 1 and shared.scheme not in ("postgres", "postgresql"):
            problem(where, f"{replicas} replicas need one shared PostgreSQL store; the template's "
                           f"{ref['name']}/{ref['key']} is {shared.scheme or 'empty'}")
        # The template names the bundled server; it must be here and take connections.
        service = self.service_docs.get(shared.hostname or "")
        if service is None:
            problem(where, f"the database URL's host {shared.hostname!r} is not a Service here")
        elif (shared.port or 5432) not in {p["port"] for p in service["spec"]["ports"]}:
            problem(where, f"the database URL's port is not a port of Service {shared.hostname}")
        for name, (swhere, _, _, kind) in self.workloads.items():
            password = self.env(name).get("POSTGRES_PASSWORD")
            if kind == "StatefulSet" and password is not None:
                pref = password.get("valueFrom", {}).get("secretKeyRef") or {}
                if pref.get("name") != DATABASE_SECRET or pref.get("optional"):
                    problem(swhere, f"POSTGRES_PASSWORD must come from Secret {DATABASE_SECRET}, not optional")

    def hop_token(self):
        """Both ends of the hop read the token from Secret flowgate-hop, required."""
        for name, var in (("gateway", "FLOWGATE_BACKEND_AUTH_TOKEN"), ("flow-service", "FLOW_SERVICE_AUTH_TOKEN")):
            workload = self.workloads.get(name)
            if workload is None:
                continue
            where, doc = workload[0], workload[1]
            env = self.env(name)
            if var in env:
                ref = env[var].get("valueFrom", {}).get("secretKeyRef") or {}
                if (ref.get("name"), ref.get("key")) != (HOP_SECRET, HOP_KEY) or ref.get("optional"):
                    self.problem(where, f"{var} must come from Secret {HOP_SECRET} key {HOP_KEY}, not optional")
                continue
            path = env.get(f"{var}_FILE", {}).get("value")
            if not path:
                self.problem(where, f"sets neither {var} nor {var}_FILE: the hop would be open")
                continue
            directory, _, filename = path.rpartition("/")
            pod = doc["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            found = False
            for container in pod["containers"]:
                for mount in container.get("volumeMounts", []):
                    if mount["mountPath"].rstrip("/") != directory:
                        continue
                    secret = volumes.get(mount["name"], {}).get("secret") or {}
                    items = {i["path"]: i["key"] for i in secret.get("items", [])} or {HOP_KEY: HOP_KEY}
                    found = (secret.get("secretName") == HOP_SECRET and items.get(filename) == HOP_KEY
                             and not secret.get("optional"))
            if not found:
                self.problem(where, f"{var}_FILE {path!r} is not key {HOP_KEY} of Secret {HOP_SECRET} "
                                    f"mounted from a required secret volume")

    def network_policies(self):
        problem = self.problem
        policies = self.by_kind.get("NetworkPolicy", [])
        isolated = set()
        default_deny = False
        # (workload, port number) -> set of sources
        sources = {}
        declared = {}
        for name in self.workloads:
            declared[name] = {}
            for container in self.containers(name):
                for port in container.get("ports", []):
                    declared[name][port["containerPort"]] = port["containerPort"]
                    if "name" in port:
                        declared[name][port["name"]] = port["containerPort"]

        def local_pods(selector, where):
            if "matchExpressions" in selector:
                problem(where, "use matchLabels in pod selectors (matchExpressions are not checked)")
            labels = selector.get("matchLabels") or {}
            if not labels:
                return {f"namespace:{NAMESPACE}"}
            chosen = {f"pods:{n}" for n, w in self.workloads.items() if selects(labels, w[2])}
            if not chosen:
                problem(where, f"pod selector {labels} selects no pods here")
            return chosen

        for where, doc in policies:
            spec = doc["spec"]
            types = spec.get("policyTypes") or []
            if "Ingress" not in types:
                problem(where, "must list Ingress in policyTypes")
                continue
            selector = spec.get("podSelector", {})
            targets = [n for n in self.workloads if not selector or selects(selector.get("matchLabels"), self.workloads[n][2])]
            if selector and not targets:
                problem(where, f"podSelector {selector} selects no pods here")
            if not selector and not spec.get("ingress"):
                default_deny = True
            isolated.update(targets)
            for rule in spec.get("ingress") or []:
                peers = set()
                for peer in rule.get("from") or []:
                    if "ipBlock" in peer:
                        peers.add(f"ip:{peer['ipBlock'].get('cidr')}")
                    elif "namespaceSelector" in peer:
                        namespaces = peer["namespaceSelector"].get("matchLabels") or {}
                        name = namespaces.get("kubernetes.io/metadata.name")
                        if not namespaces or "matchExpressions" in peer["namespaceSelector"]:
                            peers.add("namespace:*")
                        elif name is None:
                            problem(where, "select namespaces by kubernetes.io/metadata.name")
                            peers.add("namespace:*")
                        else:
                            peers.add(f"namespace:{name}")
                    elif "podSelector" in peer:
                        peers |= local_pods(peer["podSelector"], where)
                if not rule.get("from"):
                    peers.add("anywhere")
                for target in targets:
                    ports = set()
                    for port in rule.get("ports") or [{"port": p} for p in set(declared[target].values())]:
                        number = declared[target].get(port.get("port"))
                        if number is None:
                            problem(where, f"port {port.get('port')!r} is not a declared port of {target}")
                            continue
                        ports.add(number)
                    for number in ports:
                        sources.setdefault((target, number), set()).update(peers)
        if not default_deny:
            problem("deploy/k8s", "no NetworkPolicy denies ingress to every pod of the namespace "
                                  "(podSelector: {}, policyTypes: [Ingress], no rules)")
        for name, workload in self.workloads.items():
            if name not in isolated:
                problem(workload[0], "no NetworkPolicy isolates its pods")
        for (name, port), (mode, expected) in ACCESS.items():
            if name not in self.workloads:
                continue
            got = sources.get((name, port), set())
            shown_got = ", ".join(sorted(got)) or "nothing"
            if mode == "only" and got != expected:
                problem("deploy/k8s/network-policy.yaml",
                        f"{name} port {port} must admit {', '.join(sorted(expected))} only; admits {shown_got}")
            elif mode == "includes" and not expected <= got:
                problem("deploy/k8s/network-policy.yaml",
                        f"{name} port {port} must admit {', '.join(sorted(expected))}; admits {shown_got}")
            elif mode == "within" and (not got or any(
                    not (s in expected or (s.startswith("pods:") and f"namespace:{NAMESPACE}" in expected))
                    for s in got)):
                problem("deploy/k8s/network-policy.yaml",
                        f"{name} port {port} must admit some of {', '.join(sorted(expected))} and nothing else; "
                        f"admits {shown_got}")
        for (name, port), got in sources.items():
            if (name, port) not in ACCESS and "anywhere" in got:
                problem("deploy/k8s/network-policy.yaml", f"{name} port {port} is open to anywhere")

    def literal_secrets(self):
        problem = self.problem
        for where, doc in self.by_kind.get("Secret", []):
            problem(where, "a Secret in the manifests: create it with kubectl "
                           "(its template belongs in examples/secrets.yaml)")
        for where, doc in self.objects:
            for path, text in strings(doc):
                if PASSWORD_IN_URL.search(text):
                    problem(where, f"{path} holds a URL with a password")
                if "-----BEGIN" in text and "PRIVATE KEY" in text:
                    problem(where, f"{path} holds a private key")
        for name in self.workloads:
            where = self.workloads[name][0]
            for var in self.env(name).values():
                if not SENSITIVE_VAR.search(var["name"]) or "valueFrom" in var:
                    continue
                value = str(var.get("value", ""))
                if not value.startswith("/"):
                    problem(where, f"{var['name']} has a literal value; read it from a Secret")
        for where, doc in self.templates:
            if doc.get("kind") != "Secret":
                continue
            if doc.get("data"):
                problem(where, "a template with `data`: use stringData placeholders")
            for key, value in (doc.get("stringData") or {}).items():
                if "REPLACE" not in str(value):
                    problem(where, f"{key} is not a placeholder (REPLACE…): no secret value belongs in the repository")


def check(directory):
    problems = []
    objects = load(sorted(directory.glob("*.yaml")), problems)
    templates = load(sorted((directory / "examples").glob("*.yaml")), problems)
    return objects, templates, problems


def find(objects, kind, name):
    for _, doc in objects:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise KeyError(f"{kind}/{name}")


def container_env(objects, kind, name):
    return find(objects, kind, name)["spec"]["template"]["spec"]["containers"][0]["env"]


def set_env(objects, kind, name, var, **fields):
    for entry in container_env(objects, kind, name):
        if entry["name"] == var:
            entry.clear()
            entry.update(name=var, **fields)
            return
    container_env(objects, kind, name).append(dict(name=var, **fields))


def drop_env(objects, kind, name, var):
    env = container_env(objects, kind, name)
    env[:] = [e for e in env if e["name"] != var]


def policy_rules(objects, name):
    return find(objects, "NetworkPolicy", name)["spec"]["ingress"]


# Each: what is broken, how, and words the report must contain.
MUTATIONS = [
    ("the database URL optional",
     lambda o, t: set_env(o, "Deployment", "flow-service", "FLOW_SERVICE_DATABASE_URL",
                          valueFrom={"secretKeyRef": {"name": "flowgate-database", "key": "url", "optional": True}}),
     "must not be optional"),
    ("the database URL as a literal with a password",
     lambda o, t: set_env(o, "Deployment", "flow-service", "FLOW_SERVICE_DATABASE_URL",
                          value="postgres://flowgate:hunter2@postgres:5432/flowgate"),
     "URL with a password"),
    ("a SQLite store template for many replicas",
     lambda o, t: find(t, "Secret", "flowgate-database")["stringData"].update(url="sqlite:///data/REPLACE.db"),
     "need one shared PostgreSQL store"),
    ("the flow service on the loopback default",
     lambda o, t: drop_env(o, "Deployment", "flow-service", "FLOW_SERVICE_LISTEN"),
     "FLOW_SERVICE_LISTEN must be set"),
    ("no hop token at the gateway",
     lambda o, t: drop_env(o, "Deployment", "gateway", "FLOWGATE_BACKEND_AUTH_TOKEN_FILE"),
     "the hop would be open"),
    ("the flow service's hop token from another Secret",
     lambda o, t: [v["secret"].update(secretName="flowgate-meta")
                   for v in find(o, "Deployment", "flow-service")["spec"]["template"]["spec"]["volumes"]
                   if v["name"] == "hop"],
     "is not key token of Secret flowgate-hop"),
    ("the hop token as a literal",
     lambda o, t: set_env(o, "Deployment", "gateway", "FLOWGATE_BACKEND_AUTH_TOKEN", value="s3cr3t"),
     "has a literal value"),
    ("a real value in a template",
     lambda o, t: find(t, "Secret", "flowgate-hop")["stringData"].update(token="dGhpcyBpcyBub3QgYSBwbGFjZWhvbGRlcg=="),
     "is not a placeholder"),
    ("a Secret among the manifests",
     lambda o, t: o.append(("deploy/k8s/x.yaml Secret/flowgate-hop", copy.deepcopy(find(t, "Secret", "flowgate-hop")))),
     "a Secret in the manifests"),
    ("the flow service's gRPC open to the namespace",
     lambda o, t: policy_rules(o, "flow-service")[0]["from"].append({"podSelector": {}}),
     "flow-service port 50051 must admit pods:gateway only"),
    ("the flow service's gRPC from a misspelt gateway label",
     lambda o, t: policy_rules(o, "flow-service")[0]["from"][0]["podSelector"]["matchLabels"]
     .update({"app.kubernetes.io/name": "gatway"}),
     "selects no pods here"),
    ("PostgreSQL open to the gateway",
     lambda o, t: policy_rules(o, "postgres")[0]["from"][0]["podSelector"]["matchLabels"]
     .update({"app.kubernetes.io/name": "gateway"}),
     "postgres port 5432 must admit pods:flow-service only"),
    ("the gateway's admin port open to anywhere",
     lambda o, t: policy_rules(o, "gateway")[1].pop("from"),
     "gateway port 9464 must admit some of"),
    ("the gateway's public port closed",
     lambda o, t: policy_rules(o, "gateway").pop(0),
     "gateway port 8443 must admit anywhere"),
    ("a policy port that is not declared",
     lambda o, t: policy_rules(o, "flow-service")[0]["ports"][0].update(port=50052),
     "port 50052 is not a declared port of flow-service"),
    ("no default deny",
     lambda o, t: o.remove(next(x for x in o if x[1].get("kind") == "NetworkPolicy"
                                and not x[1]["spec"].get("podSelector"))),
     "no NetworkPolicy denies ingress"),
    ("PostgreSQL without a liveness probe",
     lambda o, t: find(o, "StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0].pop("livenessProbe"),
     "has no livenessProbe"),
    ("PostgreSQL without limits",
     lambda o, t: find(o, "StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0]["resources"]
     .pop("limits"),
     "needs a valid cpu request and limit"),
    ("PostgreSQL as root",
     lambda o, t: find(o, "StatefulSet", "postgres")["spec"]["template"]["spec"]["securityContext"]
     .update(runAsNonRoot=False),
     "lacks runAsNonRoot"),
    ("PostgreSQL on an unpinned image",
     lambda o, t: find(o, "StatefulSet", "postgres")["spec"]["template"]["spec"]["containers"][0]
     .update(image="postgres"),
     "pinned tag"),
]


def self_test(directory):
    objects, templates, problems = check(directory)
    problems += Check(objects, templates).run()
    if problems:
        print("\n".join(problems))
        print("check-k8s --self-test: the manifests themselves have problems")
        return 1
    failed = 0
    for name, mutate, expected in MUTATIONS:
        broken_objects, broken_templates = copy.deepcopy(objects), copy.deepcopy(templates)
        mutate(broken_objects, broken_templates)
        found = Check(broken_objects, broken_templates).run()
        hits = [p for p in found if expected in p]
        if hits:
            print(f"caught: {name}: {hits[0]}")
        else:
            failed += 1
            print(f"MISSED: {name}: expected a problem with {expected!r}, got {found or 'none'}")
    print(f"check-k8s --self-test: {len(MUTATIONS) - failed} of {len(MUTATIONS)} broken copies reported")
    return 1 if failed else 0


def main():
    args = sys.argv[1:]
    if args[:1] == ["--self-test"]:
        return self_test(ROOT / "deploy" / "k8s")
    # The directory to check: deploy/k8s/, or the first argument.
    directory = Path(args[0]).resolve() if args else ROOT / "deploy" / "k8s"
    objects, templates, problems = check(directory)
    checker = Check(objects, templates)
    problems += checker.run()
    for line in problems:
        print(line)
    if problems:
        print(f"check-k8s: {len(problems)} problem(s)")
        return 1
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(checker.by_kind.items()))
    print(f"check-k8s: {kinds}, {len(checker.secrets)} Secret template(s): consistent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
