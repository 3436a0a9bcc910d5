"""Validates docker-compose.yml without a Docker engine: against the Compose specification's JSON
schema (../shared/schemas/compose-spec.json), then the cross-file facts the deployment relies on.

    python3 scripts/validate-compose.py
"""
import json
import sys
from pathlib import Path

import jsonschema
import yaml

root = Path(__file__).resolve().parent.parent
schema_path = root.parent / "shared" / "schemas" / "compose-spec.json"
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
schema = json.loads(schema_path.read_text())

problems = []
validator = jsonschema.Draft7Validator(schema)
for error in sorted(validator.iter_errors(compose), key=lambda e: list(e.path)):
    problems.append(f"schema: {'/'.join(map(str, error.path)) or '(top)'}: {error.message}")

services = compose.get("services", {})
for name, service in services.items():
    for volume in service.get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("./") and not (root / source).exists():
            problems.append(f"services.{name}.volumes: {source} does not exist")
    if service.get("build") and not (root / service["build"] / "Dockerfile").exists():
        problems.append(f"services.{name}.build: no Dockerfile in {service['build']}")
    for dependency in service.get("depends_on", {}):
        if dependency not in services:
            problems.append(f"services.{name}.depends_on: unknown service {dependency}")

instances = [n for n, s in services.items() if s.get("command") is None and s.get("image") == "tracewarden:latest"]
if len(instances) < 2:
    problems.append(f"expected two tracewarden instances in one group, found {instances}")
groups = {services[n]["environment"].get("TRACEWARDEN__KAFKA__GROUP_ID") for n in instances}
if len(groups) != 1:
    problems.append(f"tracewarden instances are not in one consumer group: {groups}")

collector = yaml.safe_load((root / "deploy/otel-collector.yaml").read_text())
kafka = collector["exporters"]["kafka"]
if kafka.get("encoding") != "otlp_proto" or kafka.get("partition_traces_by_id") is not True:
    problems.append("deploy/otel-collector.yaml: the Kafka exporter must use otlp_proto with partition_traces_by_id: true")

prometheus = yaml.safe_load((root / "deploy/prometheus.yml").read_text())
targets = {t.split(":")[0] for job in prometheus["scrape_configs"] for c in job["static_configs"] for t in c["targets"]}
if not set(instances) <= targets:
    problems.append(f"deploy/prometheus.yml does not scrape every instance: {sorted(set(instances) - targets)}")

dashboard = json.loads((root / "deploy/grafana/dashboards/tracewarden.json").read_text())
metric_names = {"tracewarden_requests_total", "tracewarden_faults_total", "tracewarden_latency_seconds_bucket"}
exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))  # rows have none
missing = [m for m in metric_names if m not in exprs]
if missing:
    problems.append(f"dashboard does not chart {missing}")

if problems:
    print("docker-compose.yml is invalid:")
    for p in problems:
        print(f"  - {p}")
    sys.exit(1)
print(f"docker-compose.yml: valid against the Compose specification; {len(services)} services, instances {instances}")
