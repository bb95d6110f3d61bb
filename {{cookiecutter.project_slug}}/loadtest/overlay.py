"""A Kustomize overlay that sizes the recommended preset for --target-rps (target.py).

Written to <results>/kubernetes/<scenario>/kustomization.yaml, on top of the
preset's own overlay in deploy/kubernetes/overlays/: the Deployment's replicas,
the autoscaler's bounds, the container's CPU and memory requests and limits,
and DATABASE_CONNECTION_BUDGET (and DJANGO_DB_TRANSACTION_POOLING when
PgBouncer goes in front). `kubectl apply -k` it as it is, or copy it next to
the presets' overlays and point `resources` at `../<preset>`.
"""

import os
import textwrap
from pathlib import Path

from .server import PROJECT_DIR

NAME = "{{ cookiecutter.project_slug.replace('_', '-') }}"
OVERLAYS = PROJECT_DIR / "deploy" / "kubernetes" / "overlays"


def write(results, sized):
    """Write the overlay for `sized` (target.size_for's result); its path, None without one."""
    preset_overlay = OVERLAYS / sized["preset"]
    if not preset_overlay.is_dir():
        return None
    folder = Path(results) / "kubernetes" / sized["scenario"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kustomization.yaml"
    path.write_text(render(sized, os.path.relpath(preset_overlay, folder)))
    return path


def render(sized, base):
    database = sized["database"]
    literals = [f"DATABASE_CONNECTION_BUDGET={database['budget_per_instance']}"]
    if database["limit"] == "web tier":
        literals.append("DJANGO_DB_TRANSACTION_POOLING=true")
    comments = [
        f"Sized by nox -s loadtest for {sized['target_rps']:,.0f} requests/s of the "
        f"{sized['scenario']} scenario:",
        *textwrap.wrap(sized["text"], 96),
    ]
    if database["limit"] == "web tier":
        comments += [
            "DATABASE_URL must point at PgBouncer (pool_mode = transaction, default_pool_size",
            f"= {database['pgbouncer_pool']}), not at PostgreSQL.",
        ]
    lines = [
        *(f"# {line}" for line in comments),
        "apiVersion: kustomize.config.k8s.io/v1beta1",
        "kind: Kustomization",
        "resources:",
        f"  - {base}",
        "configMapGenerator:",
        f"  - name: {NAME}",
        "    behavior: merge",
        "    literals:",
        *(f"      - {literal}" for literal in literals),
        "patches:",
        "  - target:",
        "      kind: Deployment",
        f"      name: {NAME}",
        "    patch: |-",
        "      - op: replace",
        "        path: /spec/replicas",
        f"        value: {sized['instances']}",
        "      - op: replace",
        "        path: /spec/template/spec/containers/0/resources",
        "        value:",
        "          requests:",
        f'            cpu: "{sized["cpu_request"]:g}"',
        f"            memory: {sized['memory_request_mib']}Mi",
        "          limits:",
        f'            cpu: "{sized["cpu_limit"]}"',
        f"            memory: {sized['memory_limit_mib']}Mi",
        "  - target:",
        "      kind: HorizontalPodAutoscaler",
        f"      name: {NAME}",
        "    patch: |-",
        "      - op: replace",
        "        path: /spec/minReplicas",
        f"        value: {sized['instances']}",
        "      - op: replace",
        "        path: /spec/maxReplicas",
        f"        value: {sized['max_instances']}",
    ]
    return "\n".join(lines) + "\n"
