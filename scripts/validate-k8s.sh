#!/usr/bin/env bash
# Validates deploy/k8s/ with no cluster: yamllint (syntax, duplicate keys, layout),
# kubernetes-validate --strict (each object against the bundled OpenAPI schemas of
# Kubernetes 1.30, the oldest these manifests support, and of the newest it ships;
# unknown fields are errors), then scripts/check-k8s.py (how the objects fit together:
# probes, limits, non-root, Secrets, NetworkPolicies, the shared database, no literal
# secrets), and its self-test (each hardening rule, broken on purpose, is reported).
# Installs the two tools from PyPI into a virtualenv under target/ on first use.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${CARGO_TARGET_DIR:-target}/k8s-venv"
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1 || ! "$venv/bin/yamllint" --version >/dev/null 2>&1; then
  echo "installing kubernetes-validate and yamllint into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.*' 'yamllint==1.38.*'
fi

files=(deploy/k8s/*.yaml deploy/k8s/examples/*.yaml)

echo "== yamllint"
"$venv/bin/yamllint" --strict -d '{extends: default, rules: {line-length: {max: 120}, document-start: disable, comments: {min-spaces-from-content: 1}, truthy: {check-keys: false}}}' "${files[@]}"

echo "== kubernetes-validate --strict ($("$venv/bin/kubernetes-validate" --version))"
for version in 1.30.0 1.37.0; do
  "$venv/bin/kubernetes-validate" --strict --quiet -k "$version" "${files[@]}"
  echo "valid against Kubernetes $version: ${files[*]}"
done

echo "== check-k8s.py"
"$venv/bin/python" scripts/check-k8s.py

echo "== check-k8s.py --self-test"
"$venv/bin/python" scripts/check-k8s.py --self-test
