#!/usr/bin/env python3
"""Write helm/mlplatform/values.schema.json: the chart's own values, strict (additionalProperties:
false everywhere, so a typo such as `hub.replicaz` is refused by `helm install`), and
`platformConfig` from the platform config's pydantic models (mlplatform_server/config.py), so the
chart accepts exactly what `mlp server --config` and the hub accept.

  .venv/bin/python scripts/helm-schema.py           write it
  .venv/bin/python scripts/helm-schema.py --check   exit 1 when the file is out of date
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlplatform_server.config import PlatformConfig  # noqa: E402

SCHEMA = ROOT / "helm" / "mlplatform" / "values.schema.json"
NAME = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"


def obj(description: str, properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "description": description, "additionalProperties": False,
                              "properties": properties}
    if required:
        schema["required"] = required
    return schema


def s(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def integer(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "integer", "description": description, **extra}


def boolean(description: str) -> dict[str, Any]:
    return {"type": "boolean", "description": description}


def string_map(description: str) -> dict[str, Any]:
    return {"type": "object", "description": description, "additionalProperties": {"type": "string"}}


def any_list(description: str) -> dict[str, Any]:
    """Kubernetes objects passed through as they are (tolerations, egress rules)."""
    return {"type": "array", "description": description, "items": {"type": "object"}}


def image(description: str, pull_policy: bool = True) -> dict[str, Any]:
    props: dict[str, Any] = {"name": s("Repository, e.g. localhost/mlplatform/hub.", minLength=1),
                             "tag": {"type": ["string", "number"], "description": "Tag."}}
    if pull_policy:
        props["pullPolicy"] = {"enum": ["Always", "IfNotPresent", "Never"]}
    return obj(description, props, ["name", "tag"])


def resources() -> dict[str, Any]:
    amounts = {"type": "object", "additionalProperties": {"type": ["string", "number"]}}
    return obj("Container resources.", {"requests": amounts, "limits": amounts})


def component(description: str, extra: dict[str, Any], replicas: dict[str, Any] | None = None) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if replicas is not None:
        props["replicas"] = replicas
    props.update(extra)
    props.update({"resources": resources(),
                  "nodeSelector": string_map("Node labels the pod must match."),
                  "tolerations": any_list("Pod tolerations.")})
    return obj(description, props)


def service(description: str, **extra: Any) -> dict[str, Any]:
    return obj(description, {"port": integer("Service port.", minimum=1, maximum=65535), **extra})


def platform_config() -> tuple[dict[str, Any], dict[str, Any]]:
    """(the platformConfig schema, its $defs) from the pydantic models, titles dropped."""

    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if k != "title"}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    generated = clean(PlatformConfig.model_json_schema())
    defs = generated.pop("$defs")
    for model in ("Environment", "HardwareSize"):
        defs[model]["properties"]["name"]["pattern"] = NAME
    generated["description"] = ("The platform config (platform.yaml): environments, hardware sizes, builders "
                                "(mlplatform_server/config.py).")
    return generated, defs


def build() -> dict[str, Any]:
    config, defs = platform_config()
    size_name = {"type": "string", "pattern": NAME}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "mlplatform chart values",
        "type": "object",
        "additionalProperties": False,
        "$defs": defs,
        "properties": {
            "global": {"type": "object", "description": "Helm's global values (unused)."},
            "nameOverride": s("Replaces the chart name in object names."),
            "fullnameOverride": s("Replaces <release>-<chart> in object names."),
            "imagePullSecrets": {"type": "array", "items": {"type": "string"},
                                 "description": "Existing dockerconfigjson Secrets for the chart's images."},
            "platformConfig": config,
            "hub": component("JupyterHub with KubeSpawner.", {
                "image": image("The hub image (JupyterHub, KubeSpawner, mlplatform_server)."),
                "config": s("jupyterhub_config.py; empty: the repository's (files/jupyterhub_config.py)."),
                "extraEnv": string_map("Extra environment variables of the hub."),
                "service": service("The hub's Service."),
            }, replicas=integer("1, or 0 to stop the hub (it cannot run twice).", minimum=0, maximum=1)),
            "proxy": component("configurable-http-proxy.", {
                "image": image("The proxy image."),
                "service": service("The public Service.",
                                   type={"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                                   nodePort={"type": ["integer", "null"], "minimum": 30000, "maximum": 32767},
                                   annotations=string_map("Annotations of the public Service.")),
            }, replicas=integer("Proxy replicas (1; 0 stops it).", minimum=0, maximum=1)),
            "platform": component("The platform API (mlp server --backend kubernetes).", {
                "image": image("The platform API image (mlplatform_server with its server dependencies)."),
                "namespace": s("Namespace of runs and deployments; empty: the release namespace.",
                               pattern=r"^$|" + NAME),
                "registry": s("Registry for built model images; empty: the environment image's."),
                "artifactsUri": s("Object-store URI for artifacts instead of the shared claim."),
                "extraEnv": string_map("Extra environment variables of the platform API."),
                "service": service("The platform API's Service."),
            }, replicas=integer("Platform API servers on the one database (0 stops it): one leads the background loop, the others serve the API and take over when it goes; more than 1 needs the shared claim, not artifactsUri (docs/replicas.md).", minimum=0)),
            "storage": obj("The shared RWX volume (homes, the platform's data directory).", {
                "existingClaim": s("An existing ReadWriteMany claim; empty: the chart makes one.",
                                   pattern=r"^$|" + NAME),
                "storageClassName": {"type": ["string", "null"], "description": "StorageClass of the claim made."},
                "size": s("Size of the claim made.", pattern=QUANTITY),
            }),
            "postgresql": component("PostgreSQL: in-chart StatefulSet (enabled) or external.", {
                "enabled": boolean("Run PostgreSQL in the chart."),
                "image": image("The PostgreSQL image."),
                "persistence": obj("The StatefulSet's volume.", {
                    "size": s("Volume size.", pattern=QUANTITY),
                    "storageClassName": {"type": ["string", "null"], "description": "StorageClass of the volume."},
                }),
                "external": obj("An external server: a Secret with the SQLAlchemy URLs.", {
                    "secretName": s("Secret holding the URLs (required when enabled is false)."),
                    "platformUrlKey": s("Key of the platform API's URL.", minLength=1),
                    "hubUrlKey": s("Key of the hub's URL.", minLength=1),
                }),
            }),
            "scheduling": obj("Priority classes and user placeholders.", {
                "priorityClasses": obj("Priority values.", {
                    "usersValue": integer("Users' pods."),
                    "placeholderValue": integer("User placeholders (below usersValue)."),
                }),
                "userPlaceholders": obj("Pods holding room for the next users, per hardware size.", {
                    "enabled": boolean("Make placeholders."),
                    "image": image("The placeholder (pause) image."),
                    "sizes": {
                        "type": "object", "description": "Hardware size name → its placeholders.",
                        "propertyNames": size_name,
                        "additionalProperties": obj("Placeholders of one size.", {
                            "replicas": integer("How many.", minimum=0),
                            "node": obj("A GPU size's whole node (default gpuNode).", {
                                "cpu": {"type": ["string", "number"]},
                                "memory": s("Memory.", pattern=QUANTITY),
                                "gpus": integer("GPUs.", minimum=1),
                            }, ["cpu", "memory", "gpus"]),
                        }),
                    },
                    "gpuNode": obj("What one GPU node holds (a GPU size's placeholder takes all of it).", {
                        "cpu": {"type": ["string", "number"]},
                        "memory": s("Memory.", pattern=QUANTITY),
                        "gpus": integer("GPUs.", minimum=1),
                    }, ["cpu", "memory", "gpus"]),
                }),
            }),
            "prePuller": obj("Pulls every environment image onto every node.", {
                "extraImages": {"type": "array", "items": {"type": "string", "minLength": 1},
                                "description": "Images pulled besides the environments'."},
                "command": {"type": "array", "items": {"type": "string"}, "minItems": 1,
                            "description": "The no-op each image runs."},
                "pause": image("The image the puller pods sleep in.", pull_policy=False),
                "hook": obj("The install/upgrade hook DaemonSet and its awaiter Job.", {
                    "enabled": boolean("Pull before install and upgrade."),
                    "awaiter": image("A kubectl image for the awaiter Job.", pull_policy=False),
                    "timeoutSeconds": integer("How long the awaiter waits.", minimum=30),
                }),
                "continuous": obj("The DaemonSet that pulls onto nodes added later.", {
                    "enabled": boolean("Keep pulling onto new nodes."),
                }),
            }),
            "networkPolicy": obj("NetworkPolicies of the hub, proxy, platform API, database, notebooks and runs.", {
                "enabled": boolean("Make the NetworkPolicies."),
                "allowInternet": boolean("Notebook and run pods may reach public addresses."),
                "privateCIDRs": {"type": "array", "items": {"type": "string"},
                                 "description": "Ranges closed to notebook and run pods."},
                "extraEgress": any_list("Extra NetworkPolicyEgressRules of notebook and run pods."),
            }),
        },
    }


def main() -> int:
    text = json.dumps(build(), indent=2) + "\n"
    if "--check" in sys.argv[1:]:
        if not SCHEMA.exists() or SCHEMA.read_text() != text:
            print(f"{SCHEMA.relative_to(ROOT)} is out of date: run .venv/bin/python scripts/helm-schema.py",
                  file=sys.stderr)
            return 1
        return 0
    SCHEMA.write_text(text)
    print(f"wrote {SCHEMA.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
