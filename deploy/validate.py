"""Offline checks of everything under deploy/, run by bin/lint-deploy (so by bin/test and CI).

- the Helm chart: `helm lint` and `helm template` with the default values and with each
  values-*.yaml file (plus training run on install, so the RayJob renders too);
- every rendered manifest against the Kubernetes JSON schemas bundled in kubernetes-validate (PyPI)
  for KUBERNETES_VERSION, strictly (unknown fields are errors); RayJob and RayCluster against the
  openAPIV3Schema of KubeRay's CRDs, read from the ray-operator Go module that bin/lint-deploy
  fetches through the Go module proxy (schema data only; Apache-2.0, github.com/ray-project/kuberay);
- compose.yaml: YAML syntax, services that depends_on names, images (the one deploy/Dockerfile
  builds, or a pinned tag), published ports that the service listens on, named volumes declared;
- the Dockerfile: it copies every top-level package that pyproject.toml installs.

Exit status 1 with one line per problem; 0 when everything passes.
Usage: python deploy/validate.py --helm HELM --kuberay DIR [--chart DIR] [--compose FILE]"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.31.0"
DEPLOY = Path(__file__).resolve().parent
# Ports each service of compose.yaml listens on in its container.
LISTENS = {"neo4j": {7474, 7687}, "ray-head": {6379, 8265, 10001}, "server": {50051, 8080, 9464}, "demo": set()}


def render(helm: str, chart: Path, values: list[Path], extra: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    args = [a for v in values for a in ("-f", str(v))] + extra + ["--kube-version", KUBERNETES_VERSION]
    problems = []
    lint = subprocess.run([helm, "lint", "--strict", str(chart), *args], capture_output=True, text=True)
    if lint.returncode != 0:
        problems.append(f"helm lint {' '.join(args)}: {lint.stdout.strip()} {lint.stderr.strip()}")
    out = subprocess.run(
        [helm, "template", "relgraph", str(chart), "--namespace", "relgraph", *args], capture_output=True, text=True
    )
    if out.returncode != 0:
        return [], [*problems, f"helm template {' '.join(args)}: {out.stderr.strip()}"]
    return [d for d in yaml.safe_load_all(out.stdout) if d], problems


def crd_schemas(kuberay: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of each served version of KubeRay's CRDs."""
    schemas = {}
    for path in sorted((kuberay / "config" / "crd" / "bases").glob("ray.io_*.yaml")):
        crd = yaml.safe_load(path.read_text())
        for version in crd["spec"]["versions"]:
            schemas[(f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])] = version["schema"][
                "openAPIV3Schema"
            ]
    return schemas


def check_manifest(doc: dict[str, Any], crds: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name') or doc.get('metadata', {}).get('generateName')}"
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    try:
        if key in crds:
            jsonschema.validate(doc, crds[key])
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
        return [f"{name}: {exc.message} at {'/'.join(map(str, exc.absolute_path))}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no schema for {key[0]} {key[1]} (Kubernetes {KUBERNETES_VERSION} or KubeRay)"]
    embedded = []
    if doc.get("kind") == "ConfigMap":  # the CronJob's RayJob template is a manifest too
        for file, text in (doc.get("data") or {}).items():
            if file.endswith(".yaml"):
                embedded += [
                    f"{name} {file}: {p}" for d in yaml.safe_load_all(text) if d for p in check_manifest(d, crds)
                ]
    return embedded


def check_chart(helm: str, chart: Path, kuberay: Path) -> list[str]:
    crds = crd_schemas(kuberay)
    if not crds:
        return [f"no KubeRay CRDs under {kuberay}/config/crd/bases"]
    problems = []
    variants: list[tuple[list[Path], list[str]]] = [([], []), ([], ["--set", "training.runOnInstall=true"])]
    variants += [([v], []) for v in sorted(chart.glob("values-*.yaml"))]
    for values, extra in variants:
        docs, found = render(helm, chart, values, extra)
        problems += found
        kinds = {str(d.get("kind")) for d in docs}
        if (
            docs
            and not {
                "Deployment",
                "Service",
                "HorizontalPodAutoscaler",
                "PodDisruptionBudget",
                "ConfigMap",
                "NetworkPolicy",
                "CronJob",
            }
            <= kinds
        ):
            problems.append(f"values {values} {extra}: rendered kinds {sorted(kinds)} lack a required one")
        if "--set" in extra and "RayJob" not in kinds:
            problems.append("training.runOnInstall=true rendered no RayJob")
        for doc in docs:
            problems += check_manifest(doc, crds)
            problems += _no_secret_values(doc)
    return problems


def _no_secret_values(doc: dict[str, Any]) -> list[str]:
    if doc.get("kind") == "Secret":
        return [f"Secret/{doc['metadata']['name']}: the chart must reference Secrets, not create them"]
    return []


def check_compose(path: Path) -> list[str]:
    try:
        compose = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return [f"{path}: not valid YAML: {exc}"]
    problems = []
    services: dict[str, Any] = compose.get("services") or {}
    declared_volumes = set((compose.get("volumes") or {}).keys())
    for name, service in services.items():
        image = service.get("image", "")
        build = service.get("build")
        if build:
            dockerfile = (path.parent / build["context"] / build["dockerfile"]).resolve()
            if not dockerfile.is_file():
                problems.append(f"service {name}: build dockerfile {dockerfile} does not exist")
        elif ":" not in image or image.endswith(":latest"):
            problems.append(f"service {name}: image {image!r} must be pinned to a version tag")
        for dependency in service.get("depends_on") or {}:
            if dependency not in services:
                problems.append(f"service {name}: depends_on {dependency!r}, which is not a service")
        for mapping in service.get("ports") or []:
            container = int(str(mapping).rsplit(":", 1)[-1].split("/")[0])
            if container not in LISTENS.get(name, set()):
                problems.append(f"service {name}: publishes port {container}, which it does not listen on")
            if not str(mapping).startswith("127.0.0.1:"):
                problems.append(f"service {name}: port {mapping} must be published on 127.0.0.1 only")
        for volume in service.get("volumes") or []:
            source = str(volume).split(":", 1)[0]
            if not source.startswith((".", "/")) and source not in declared_volumes:
                problems.append(f"service {name}: volume {source!r} is not declared")
    for name in LISTENS:
        if name not in services:
            problems.append(f"compose has no {name!r} service")
    return problems


def check_dockerfile(dockerfile: Path, pyproject: Path) -> list[str]:
    packages = tomllib.loads(pyproject.read_text())["tool"]["setuptools"]["packages"]
    copied = {line.split()[1] for line in dockerfile.read_text().splitlines() if line.startswith("COPY ")}
    return [
        f"{dockerfile.name}: does not copy package {top!r}, which pyproject.toml installs"
        for top in sorted({name.split(".")[0] for name in packages})
        if top not in copied
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--helm", required=True)
    parser.add_argument("--kuberay", required=True, type=Path, help="the ray-operator module directory")
    parser.add_argument("--chart", type=Path, default=DEPLOY / "helm" / "relgraph")
    parser.add_argument("--compose", type=Path, default=DEPLOY / "compose.yaml")
    args = parser.parse_args(argv)
    problems = (
        check_chart(args.helm, args.chart, args.kuberay)
        + check_compose(args.compose)
        + check_dockerfile(DEPLOY / "Dockerfile", DEPLOY.parent / "pyproject.toml")
    )
    for problem in problems:
        print(f"deploy: {problem}", file=sys.stderr)
    if not problems:
        print(f"deploy: chart and compose valid (Kubernetes {KUBERNETES_VERSION} schemas, KubeRay CRDs)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
