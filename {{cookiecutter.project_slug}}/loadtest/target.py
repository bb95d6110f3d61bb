"""How many instances, CPUs, GiB and database connections a target rate needs (--target-rps).

From a row's capacity (capacity.py), measured on this machine:

- instances: enough that each runs at most 1 - HEADROOM of its capacity (70 %,
  the autoscaler's CPU target in deploy/kubernetes): room for a burst, or for
  an instance lost, without passing the objective; at least MIN_INSTANCES. The
  autoscaler may add half as many again (MAX_INSTANCES_FACTOR) for bursts.
- CPU: each instance's limit is the CPU budget the preset sized its workers
  from; its request, the CPU it used at capacity, scaled to its share of the
  target. Memory: what it used at capacity (PSS); the limit half as much again.
- database connections: at the target, R requests/s that each hold a
  connection t seconds keep R x t connections busy (Little's law); the web
  tier may open (autoscaler's maximum + one pod of a rolling update) x the
  budget of each. Against PostgreSQL's max_connections (read from the server,
  less superuser_reserved_connections and SPARE_CONNECTIONS for migrations and
  psql): when the web tier would open too many, a lower budget per instance if
  that still covers its share, else PgBouncer in transaction mode in front, with
  the pool it needs; when even the busy connections do not fit, the database
  itself is the limit, not the web tier.

The numbers hold for a server with the CPUs it had here (the report says which:
the load generator has CPUs of its own from 2 CPUs on, run.split_cpus): a 2-CPU
machine measures, and sizes in, instances of one CPU. On a single CPU the
generator took some of the server's, and a production instance does at least as
well.
"""

import math

HEADROOM = 0.30
MIN_INSTANCES = 2  # as the base Deployment: one can be replaced while the other serves
MAX_INSTANCES_FACTOR = 1.5
SPARE_CONNECTIONS = 5
MEMORY_LIMIT_FACTOR = 1.5
SURGE = 1  # the Deployment's rollingUpdate.maxSurge


def size_for(target_rps, capacity, preset, database):
    """The sizing of `preset` (the summary's preset entry) for `target_rps`, from `capacity`.

    `database`: PostgreSQL's max_connections and superuser_reserved_connections; None
    without PostgreSQL.
    """
    sizing = preset["sizing_fields"]
    per_instance = capacity["rps"] * (1 - HEADROOM)
    instances = max(MIN_INSTANCES, math.ceil(target_rps / per_instance))
    max_instances = math.ceil(instances * MAX_INSTANCES_FACTOR)
    share = target_rps / instances / capacity["rps"]  # of its capacity, at the target
    cpu_request = math.ceil((capacity["server_cpu"] or sizing["cpus"]) * share * 10) / 10
    memory = capacity["memory_mib"] or 0
    result = {
        "preset": capacity["preset"],
        "scenario": capacity["scenario"],
        "target_rps": target_rps,
        "headroom": HEADROOM,
        "capacity_rps": capacity["rps"],
        "instances": instances,
        "max_instances": max_instances,
        "cpu_limit": sizing["cpus"],
        "cpu_request": max(cpu_request, 0.1),
        "memory_request_mib": math.ceil(memory / 16) * 16,
        "memory_limit_mib": math.ceil(memory * MEMORY_LIMIT_FACTOR / 64) * 64,
        "cpus_total": instances * sizing["cpus"],
        "memory_total_gib": instances * memory / 1024,
    }
    result["database"] = database_plan(
        target_rps, instances, max_instances, preset, sizing, database
    )
    result["text"] = describe(result)
    return result


def database_plan(target_rps, instances, max_instances, preset, sizing, database):
    hold_s = preset["database_seconds_per_request"]
    budget = sizing["database_connections"] or sizing["workers"] * max(sizing["threads"], 1)
    plan = {
        "busy_connections": target_rps * hold_s,
        "budget_per_instance": budget,
        "web_tier_connections": (max_instances + SURGE) * budget,
        "max_connections": None,
        "available": None,
        "limit": None,  # None, "web tier" (PgBouncer) or "database"
        "pgbouncer_pool": None,
    }
    if database is None:
        plan["text"] = (
            f"{plan['busy_connections']:,.0f} connections busy at once "
            "(no PostgreSQL here to check them against)"
        )
        return plan
    available = (
        database["max_connections"] - database["superuser_reserved_connections"] - SPARE_CONNECTIONS
    )
    plan.update(max_connections=database["max_connections"], available=available)
    if hold_s == 0:
        # The scenario holds none, but every instance may open its budget (its other views).
        fitting = min(budget, available // (max_instances + SURGE))
        plan.update(
            budget_per_instance=fitting, web_tier_connections=(max_instances + SURGE) * fitting
        )
        plan["text"] = (
            f"the scenario holds no connection; DATABASE_CONNECTION_BUDGET={fitting} per "
            f"instance, so that {max_instances} + {SURGE} instances fit in the {available} "
            f"PostgreSQL has (max_connections {database['max_connections']})"
        )
        if fitting < sizing["workers"]:
            plan["limit"] = "web tier"
            plan["pgbouncer_pool"] = available
            plan["budget_per_instance"] = budget
            plan["web_tier_connections"] = (max_instances + SURGE) * budget
            plan["text"] += (
                f", fewer than its {sizing['workers']} workers: put PgBouncer in front instead"
            )
        return plan
    busy = plan["busy_connections"]
    needed_per_instance = math.ceil(busy / instances / (1 - HEADROOM))
    busy_text = (
        f"{target_rps:,.0f} req/s x {hold_s * 1000:,.0f} ms each = {busy:,.0f} connections busy "
        f"at once (Little's law)"
    )
    if busy / (1 - HEADROOM) > available:
        plan["limit"] = "database"
        plan["text"] = (
            f"the database is the limit, not the web tier: {busy_text}, more than the "
            f"{available} PostgreSQL allows (max_connections {database['max_connections']}); "
            "PgBouncer cannot help queries that all run at once: raise max_connections and the "
            "server's CPUs, shorten the queries, or send reads to replicas"
        )
        return plan
    if plan["web_tier_connections"] <= available:
        plan["text"] = (
            f"{busy_text}; {max_instances} instances + {SURGE} in a rollout x {budget} = "
            f"{plan['web_tier_connections']} at most, within the {available} available "
            f"(max_connections {database['max_connections']})"
        )
        return plan
    fitting = available // (max_instances + SURGE)
    if fitting >= max(needed_per_instance, sizing["workers"]):
        plan.update(
            budget_per_instance=fitting, web_tier_connections=(max_instances + SURGE) * fitting
        )
        plan["text"] = (
            f"{busy_text}; DATABASE_CONNECTION_BUDGET={fitting} per instance (down from {budget}) "
            f"so that {max_instances} + {SURGE} instances fit in the {available} available "
            f"(max_connections {database['max_connections']}); each needs {needed_per_instance}"
        )
        return plan
    pool = math.ceil(busy / (1 - HEADROOM))
    plan.update(limit="web tier", pgbouncer_pool=pool)
    plan["text"] = (
        f"the database's connection limit, not its work, is the limit: {busy_text}, but "
        f"{max_instances} + {SURGE} instances x {budget} = {plan['web_tier_connections']} "
        f"connections > the {available} available (max_connections "
        f"{database['max_connections']}): put PgBouncer in transaction mode in front "
        f"(default_pool_size {pool}, max_client_conn {plan['web_tier_connections']}) and set "
        "DJANGO_DB_TRANSACTION_POOLING=true"
    )
    return plan


def describe(result):
    return (
        f"{result['instances']} instances of {result['preset']} (up to {result['max_instances']}) "
        f"for {result['target_rps']:,.0f} req/s of {result['scenario']}: each at most "
        f"{1 - result['headroom']:.0%} of its {result['capacity_rps']:,.0f} req/s capacity; "
        f"each {result['cpu_request']:g} CPU requested, {result['cpu_limit']} limit, "
        f"{result['memory_request_mib']} MiB memory ({result['memory_limit_mib']} MiB limit); "
        f"in all {result['cpus_total']} CPUs and {result['memory_total_gib']:.1f} GiB; database: "
        f"{result['database']['text']}"
    )
