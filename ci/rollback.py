"""``python -m ci rollback``: traffic and the ``default`` alias back to the previous version.

The previous version is the one holding the ``previous`` alias (``promote`` puts it on the
champion it replaces), or ``--to-version N``. The version rolled back from keeps no alias,
so a second rollback needs ``--to-version``: going back to a version judged bad should be a
deliberate choice.
"""

from __future__ import annotations

from dataclasses import dataclass

from ci import flags, outputs, vertex
from ci.cloud import Cloud, connect
from ci.errors import CiError
from ci.settings import resolve


@dataclass
class Rollback:
    """Which version served before, and which serves now."""

    model: str
    from_version: str | None
    to_version: str
    endpoint: str


def rollback(cloud: Cloud, to_version: str | None = None) -> Rollback:
    """Serve ``to_version`` (default: the ``previous`` alias) with all traffic and ``default``."""
    model = vertex.find_model(cloud)
    if model is None:
        raise CiError(f"no model named {cloud.settings.model_name!r}; nothing to roll back")
    versions = vertex.list_versions(cloud, model["name"])
    current = vertex.with_alias(versions, vertex.DEFAULT)
    if to_version is None:
        target = vertex.with_alias(versions, vertex.PREVIOUS)
        if target is None:
            raise CiError("no version holds the 'previous' alias; give --to-version N")
    else:
        vertex.check_version_id(to_version, "--to-version")
        target = next((v for v in versions if v["versionId"] == to_version), None)
        if target is None:
            known = ", ".join(v["versionId"] for v in versions) or "none"
            raise CiError(
                f"version {to_version!r} of {model['name']} not found (versions: {known})"
            )
    endpoint = vertex.find_endpoint(cloud)
    if endpoint is None:
        raise CiError(f"no endpoint named {cloud.settings.endpoint_display_name!r}")
    version_id = target["versionId"]
    deployed = {d["id"]: vertex.deployed_version(d) for d in endpoint.get("deployedModels", [])}
    split = dict(endpoint.get("trafficSplit", {}))
    target_id = next((i for i, v in deployed.items() if v == version_id), None)
    sent: list[dict] = []  # the deploy operation this run started, once accepted
    try:
        if target_id is None:
            traffic = {"0": 100, **{i: 0 for i in deployed}}
            target_id = vertex.deploy(
                cloud, endpoint, model["name"], version_id, traffic, sent.append
            )
            cloud.log(f"deployed version {version_id} as {target_id} with 100% of traffic")
        aliases = [vertex.DEFAULT]
        if vertex.PREVIOUS in target.get("versionAliases", []):
            aliases.append("-" + vertex.PREVIOUS)
        vertex.set_alias(cloud, model["name"], version_id, *aliases)
        endpoint = vertex.get_endpoint(cloud, endpoint["name"])
        others = [d for d in endpoint.get("deployedModels", []) if d["id"] != target_id]
        if others:  # the first undeploy moves the traffic when it was not moved yet
            first = others[0]
            vertex.undeploy(cloud, endpoint, first["id"], {target_id: 100})
            cloud.log(f"undeployed {first['id']} (version {vertex.deployed_version(first)})")
    except (CiError, KeyboardInterrupt) as exc:
        before = (split, set(deployed))
        _undo(cloud, model["name"], endpoint["name"], current, target, sent, before, exc)
        raise
    # Traffic and 'default' are on the target now: what is left serves nothing.
    for d in others[1:]:
        vertex.undeploy(cloud, endpoint, d["id"], {target_id: 100})
        cloud.log(f"undeployed {d['id']} (version {vertex.deployed_version(d)})")
    from_version = current["versionId"] if current else None
    return Rollback(model["name"], from_version, version_id, endpoint["name"])


def main(argv: list[str]) -> int:
    parser = flags.parser("rollback", __doc__)
    parser.add_argument("--to-version", help="version id to serve (default: alias 'previous')")
    args = parser.parse_args(argv)
    settings = resolve(args)
    if args.to_version is not None:  # malformed: bad usage, before anything connects
        vertex.check_version_id(args.to_version, "--to-version")
    with connect(settings) as cloud:
        result = rollback(cloud, args.to_version)
    print(f"rolled back {result.model} from version {result.from_version} to {result.to_version}")
    outputs.write_outputs(args.outputs, {"model_version": result.to_version})
    outputs.write_summary(
        args.summary,
        f"### Rolled back\n\n`{result.model}`: version {result.from_version} → "
        f"**{result.to_version}** (100% of traffic, alias `default`).",
    )
    return 0


def _undo(cloud: Cloud, model: str, endpoint_name: str, current, target, sent, before, cause):
    """Put traffic and aliases back as they were before a rollback that failed half-way
    (``before``: the traffic split and the deployed model ids then)."""
    from ci.restore import SETTLE_INTERRUPTED, SETTLE_SECONDS, settle

    if isinstance(cause, KeyboardInterrupt):
        cloud.fresh_connections()
    cloud.log(f"rollback failed ({str(cause) or type(cause).__name__}); restoring")
    wait = SETTLE_INTERRUPTED if isinstance(cause, KeyboardInterrupt) else SETTLE_SECONDS
    try:
        for operation in sent:
            settle(cloud, operation, wait)
        endpoint = vertex.get_endpoint(cloud, endpoint_name)
        for deployed_id in vertex.deployed_ids(endpoint, model, target["versionId"]):
            if deployed_id in before[1]:
                continue  # it was there before
            remaining = [d["id"] for d in endpoint.get("deployedModels", [])]
            traffic = {k: v for k, v in before[0].items() if k in remaining and k != deployed_id}
            vertex.undeploy(cloud, endpoint, deployed_id, traffic)
            cloud.log(f"restore: undeployed {deployed_id}")
            endpoint = vertex.get_endpoint(cloud, endpoint_name)
        if current:
            vertex.set_alias(cloud, model, current["versionId"], vertex.DEFAULT)
        if vertex.PREVIOUS in target.get("versionAliases", []):
            vertex.set_alias(cloud, model, target["versionId"], vertex.PREVIOUS)
        cloud.log("restored: traffic and aliases are as they were")
    except CiError as exc:
        raise CiError(
            f"{cause}; restore incomplete ({exc}): check `python -m ci versions` and re-run "
            "rollback"
        ) from None
