"""The gunicorn presets' inputs: the CPU budget (on fake cgroup trees) and the environment."""

import os

import pytest

from config.gunicorn.cpu import CpuBudget, affinity_cpus, cpu_budget
from config.gunicorn.environment import BadSetting, read_environment
from config.gunicorn.sizing import size


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


@pytest.fixture
def cgroup_v2(tmp_path):
    """A fake cgroup v2 mount; the process is in its root cgroup, as inside a container."""
    root = tmp_path / "cgroup"
    root.mkdir()
    write(tmp_path / "proc_self_cgroup", "0::/\n")
    return root


@pytest.fixture
def cgroup_v1(tmp_path):
    """A fake cgroup v1 layout with the cpu controller mounted at cpu,cpuacct."""
    root = tmp_path / "cgroup"
    (root / "cpu,cpuacct").mkdir(parents=True)
    write(tmp_path / "proc_self_cgroup", "4:memory:/\n3:cpu,cpuacct:/\n0::/\n")
    return root


def budget(root, affinity):
    return cpu_budget(
        affinity=affinity, cgroup_root=root, proc_self_cgroup=root.parent / "proc_self_cgroup"
    )


def test_affinity_alone_when_there_is_no_cgroup(tmp_path):
    assert budget(tmp_path / "missing", affinity=6) == CpuBudget(6, "CPU affinity")


@pytest.mark.parametrize(
    ("cpu_max", "affinity", "expected"),
    [
        ("max 100000\n", 8, CpuBudget(8, "CPU affinity")),
        ("200000 100000\n", 8, CpuBudget(2, "cgroup v2 cpu.max")),
        ("150000 100000\n", 8, CpuBudget(2, "cgroup v2 cpu.max, 1.5 rounded up")),
        ("50000 100000\n", 8, CpuBudget(1, "cgroup v2 cpu.max, 0.5 rounded up")),
        ("1000 100000\n", 8, CpuBudget(1, "cgroup v2 cpu.max, 0.01 rounded up")),
        ("400000 100000\n", 2, CpuBudget(2, "CPU affinity")),  # affinity is the tighter limit
        ("", 4, CpuBudget(4, "CPU affinity")),
        ("garbage\n", 4, CpuBudget(4, "CPU affinity")),
        ("100000 0\n", 4, CpuBudget(4, "CPU affinity")),
    ],
)
def test_cgroup_v2_quota(cgroup_v2, cpu_max, affinity, expected):
    write(cgroup_v2 / "cpu.max", cpu_max)
    assert budget(cgroup_v2, affinity) == expected


def test_cgroup_v2_without_cpu_max_is_no_limit(cgroup_v2):
    assert budget(cgroup_v2, affinity=3) == CpuBudget(3, "CPU affinity")


def test_cgroup_v2_quota_of_a_parent_cgroup_applies(cgroup_v2):
    write(cgroup_v2.parent / "proc_self_cgroup", "0::/system.slice/app.service\n")
    write(cgroup_v2 / "system.slice" / "cpu.max", "300000 100000\n")
    write(cgroup_v2 / "system.slice" / "app.service" / "cpu.max", "max 100000\n")
    assert budget(cgroup_v2, affinity=16).cpus == 3


def test_cgroup_v2_smallest_quota_along_the_path_wins(cgroup_v2):
    write(cgroup_v2.parent / "proc_self_cgroup", "0::/kubepods/pod1/ctr\n")
    write(cgroup_v2 / "kubepods" / "cpu.max", "800000 100000\n")
    write(cgroup_v2 / "kubepods" / "pod1" / "ctr" / "cpu.max", "120000 100000\n")
    assert budget(cgroup_v2, affinity=16) == CpuBudget(2, "cgroup v2 cpu.max, 1.2 rounded up")


def test_cgroup_path_not_visible_in_the_mount_reads_the_mount_root(cgroup_v2):
    # A container sees its own cgroup as the mount root, and the host's path in /proc.
    write(cgroup_v2.parent / "proc_self_cgroup", "0::/docker/0123abcd\n")
    write(cgroup_v2 / "cpu.max", "100000 100000\n")
    assert budget(cgroup_v2, affinity=16).cpus == 1


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [
        ("-1\n", "100000\n", CpuBudget(8, "CPU affinity")),
        ("150000\n", "100000\n", CpuBudget(2, "cgroup v1 CFS quota, 1.5 rounded up")),
        ("50000\n", "100000\n", CpuBudget(1, "cgroup v1 CFS quota, 0.5 rounded up")),
        ("300000\n", "100000\n", CpuBudget(3, "cgroup v1 CFS quota")),
        ("abc\n", "100000\n", CpuBudget(8, "CPU affinity")),
    ],
)
def test_cgroup_v1_cfs_quota(cgroup_v1, quota, period, expected):
    write(cgroup_v1 / "cpu,cpuacct" / "cpu.cfs_quota_us", quota)
    write(cgroup_v1 / "cpu,cpuacct" / "cpu.cfs_period_us", period)
    assert budget(cgroup_v1, affinity=8) == expected


def test_cgroup_v1_with_missing_period_is_no_limit(cgroup_v1):
    write(cgroup_v1 / "cpu,cpuacct" / "cpu.cfs_quota_us", "150000\n")
    assert budget(cgroup_v1, affinity=8) == CpuBudget(8, "CPU affinity")


def test_cgroup_v1_mounted_as_cpu(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "250000\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    write(tmp_path / "proc_self_cgroup", "2:cpu:/\n")
    assert budget(root, affinity=8).cpus == 3


def test_the_smaller_of_v1_and_v2_quotas_wins(cgroup_v1):
    write(cgroup_v1 / "cpu.max", "300000 100000\n")
    write(cgroup_v1 / "cpu,cpuacct" / "cpu.cfs_quota_us", "100000\n")
    write(cgroup_v1 / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert budget(cgroup_v1, affinity=8) == CpuBudget(1, "cgroup v1 CFS quota")


def test_missing_proc_self_cgroup_reads_the_mount_roots(tmp_path):
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "200000 100000\n")
    assert budget(root, affinity=8).cpus == 2


def test_at_least_one_cpu(tmp_path):
    assert budget(tmp_path / "missing", affinity=0).cpus == 1


def test_affinity_is_the_set_this_process_may_run_on():
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    assert affinity_cpus() == len(os.sched_getaffinity(0))


def test_this_machine_has_a_budget():
    real = cpu_budget()
    assert 1 <= real.cpus <= (os.cpu_count() or 1)
    assert str(real).startswith(f"{real.cpus} (")


def test_environment_defaults():
    env = read_environment({})
    assert (env.port, env.max_workers, env.timeout) == (8000, 16, 30)
    assert (env.workers, env.threads, env.worker_connections) == (None, None, None)
    assert env.forwarded_allow_ips == "127.0.0.1,::1"
    assert env.control_socket is None
    assert env.database_connection_budget == 40


def test_environment_values():
    env = read_environment(
        {
            "PORT": "9000",
            "GUNICORN_MAX_WORKERS": "4",
            "WEB_CONCURRENCY": " 4 ",
            "GUNICORN_THREADS": "16",
            "GUNICORN_WORKER_CONNECTIONS": "500",
            "GUNICORN_TIMEOUT": "60",
            "FORWARDED_ALLOW_IPS": "10.0.0.0/8, 192.168.1.7",
            "GUNICORN_CONTROL_SOCKET": "/run/gunicorn.ctl",
            "DATABASE_CONNECTION_BUDGET": "120",
        }
    )
    assert (env.port, env.max_workers, env.workers, env.timeout) == (9000, 4, 4, 60)
    assert (env.threads, env.worker_connections) == (16, 500)
    assert env.forwarded_allow_ips == "10.0.0.0/8, 192.168.1.7"
    assert env.control_socket == "/run/gunicorn.ctl"
    assert env.database_connection_budget == 120


def test_empty_values_mean_the_default():
    env = read_environment({"PORT": "", "WEB_CONCURRENCY": "  ", "FORWARDED_ALLOW_IPS": ""})
    assert (env.port, env.workers, env.forwarded_allow_ips) == (8000, None, "127.0.0.1,::1")


def test_any_proxy_is_trusted_only_when_asked():
    assert read_environment({"FORWARDED_ALLOW_IPS": "*"}).forwarded_allow_ips == "*"


NUMBERS = {
    "PORT": "use 1 to 65535",
    "WEB_CONCURRENCY": "use 1 or more",
    "GUNICORN_MAX_WORKERS": "use 1 to 256",
    "GUNICORN_THREADS": "use 1 to 64",
    "GUNICORN_WORKER_CONNECTIONS": "use 1 to 10000",
    "GUNICORN_TIMEOUT": "use 1 to 3600",
    "DATABASE_CONNECTION_BUDGET": "use 1 to 10000",
}


BAD_NUMBERS = [
    ("abc", "is not a whole number"),
    ("1.5", "is not a whole number"),
    ("0", "is out of range"),
    ("-3", "is out of range"),
    ("99999999", "is out of range"),
]


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        (name, value, problem)
        for name in NUMBERS
        for value, problem in BAD_NUMBERS
        # No upper bound: GUNICORN_MAX_WORKERS caps it (see below).
        if not (name == "WEB_CONCURRENCY" and value == "99999999")
    ],
)
def test_bad_numbers_are_named_with_what_is_allowed(name, value, problem):
    with pytest.raises(BadSetting) as raised:
        read_environment({name: value})
    assert str(raised.value) == f"{name}={value!r} {problem}: {NUMBERS[name]}"


@pytest.mark.parametrize("model", ["sync", "gthread", "gevent", "asgi"])
def test_a_platforms_web_concurrency_over_the_cap_is_capped_not_refused(model):
    """Heroku sets WEB_CONCURRENCY=17 on its largest dynos: the boot goes on, with 16."""
    sized = size(model, 2, read_environment({"WEB_CONCURRENCY": "17"}))
    assert sized.workers == 16
    assert sized.workers_from == "WEB_CONCURRENCY = 17, capped by GUNICORN_MAX_WORKERS"
    within = size(model, 2, read_environment({"WEB_CONCURRENCY": "16"}))
    assert (within.workers, within.workers_from) == (16, "WEB_CONCURRENCY")


@pytest.mark.parametrize("value", ["bogus", "10.0.0.1/8", "127.0.0.1,::1/200", "*, nope"])
def test_bad_forwarded_allow_ips(value):
    with pytest.raises(BadSetting) as raised:
        read_environment({"FORWARDED_ALLOW_IPS": value})
    assert str(raised.value).startswith(
        f"FORWARDED_ALLOW_IPS={value!r} is not a list of IP addresses or networks: use e.g."
    )
