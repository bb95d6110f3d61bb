"""What a load test reads from a running instance's /metrics: the production words in the lab.

    from config.gunicorn.observability.lab import Watch

    with Watch("http://127.0.0.1:9191/metrics") as watch:
        ...                           # drive the instance
    watch.figures                     # {"gunicorn_request_duration_seconds_p99": 0.23, ...}

Watch scrapes once as it starts, every SAMPLE_EVERY_S while the load runs (for
the peaks of the gauges), and once as it ends, after the workers' last flush
(metrics.FLUSH_EVERY_S). Each figure is named after the metric it comes from:

    gunicorn_request_duration_seconds_count   requests the instance answered (probes apart)
    gunicorn_request_duration_seconds_p99     their 99th percentile, in seconds, from the
                                              histogram's buckets, as histogram_quantile()
    gunicorn_saturation_max                   the highest busy slots / slots sampled
    gunicorn_listen_backlog_max               the longest listen queue sampled (None: not Linux)
    gunicorn_db_pool_wait_seconds_p99         the 99th percentile wait for a pooled
                                              connection (None: no pool, or no query)
    gunicorn_db_pool_timeouts_total           503s for a pool that stayed busy
    gunicorn_worker_boots_total               workers started while it ran: restarts

Counts and percentiles cover what happened between the first and the last scrape.
"""

import contextlib
import math
import threading
import time
import urllib.request

from config.gunicorn.observability.metrics import FLUSH_EVERY_S
from config.gunicorn.observability.routes import PROBES

SAMPLE_EVERY_S = 0.5
SCRAPE_TIMEOUT_S = 2.0
PROBE_ROUTES = frozenset(PROBES.values())


def scrape(url, timeout=SCRAPE_TIMEOUT_S):
    """{(metric sample name, ((label, value), ...)): value} of one scrape of `url`."""
    from prometheus_client.parser import text_string_to_metric_families

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def total(samples, name, keep=lambda labels: True):
    return sum(
        value for (sample, labels), value in samples.items() if sample == name and keep(labels)
    )


def buckets(samples, name, keep=lambda labels: True):
    """{upper bound: cumulative count} of a histogram, summed over its label sets."""
    summed = {}
    for (sample, labels), value in samples.items():
        if sample == f"{name}_bucket" and keep(labels):
            bound = float(dict(labels)["le"])
            summed[bound] = summed.get(bound, 0.0) + value
    return summed


def quantile(q, cumulative):
    """Prometheus's histogram_quantile over {bound: cumulative count}; None without data."""
    bounds = sorted(cumulative)
    if not bounds or not cumulative[bounds[-1]]:
        return None
    rank = q * cumulative[bounds[-1]]
    lower_bound, lower_count = 0.0, 0.0
    for bound in bounds:
        count = cumulative[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # past the last finite bucket: its bound, as Prometheus does
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return bounds[-1]


def difference(after, before):
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def not_probe(labels):
    return dict(labels).get("route") not in PROBE_ROUTES


def figures(before, after, peaks):
    """The figures above, from the first and last scrapes and the sampled peaks."""
    run = difference(after, before)
    requests = "gunicorn_request_duration_seconds"
    pool = "gunicorn_db_pool_wait_seconds"
    pool_waits = buckets(run, pool)
    return {
        f"{requests}_count": total(run, f"{requests}_count", not_probe),
        f"{requests}_p99": quantile(0.99, buckets(run, requests, not_probe)),
        "gunicorn_saturation_max": peaks.get("gunicorn_saturation"),
        "gunicorn_listen_backlog_max": peaks.get("gunicorn_listen_backlog"),
        f"{pool}_p99": quantile(0.99, pool_waits) if pool_waits else None,
        "gunicorn_db_pool_timeouts_total": total(run, "gunicorn_db_pool_timeouts_total"),
        "gunicorn_worker_boots_total": total(run, "gunicorn_worker_boots_total"),
    }


class Watch:
    """Scrape `url` while a load runs; `figures` once it has ended (see the module's doc)."""

    GAUGES = ("gunicorn_saturation", "gunicorn_listen_backlog")

    def __init__(self, url, sample_every=SAMPLE_EVERY_S):
        self.url = url
        self.sample_every = sample_every
        self.peaks = {}
        self.figures = None
        self.stopped = threading.Event()
        self.sampler = threading.Thread(target=self.sample, daemon=True)

    def __enter__(self):
        self.before = scrape(self.url)
        self.note_peaks(self.before)
        self.sampler.start()
        return self

    def __exit__(self, *exc_info):
        self.stopped.set()
        self.sampler.join()
        time.sleep(FLUSH_EVERY_S + 0.2)  # the workers' last flush
        after = scrape(self.url)
        self.note_peaks(after)
        self.figures = figures(self.before, after, self.peaks)
        return False

    def sample(self):
        while not self.stopped.wait(self.sample_every):
            with contextlib.suppress(OSError):  # a missed sample; the next one counts
                self.note_peaks(scrape(self.url))

    def note_peaks(self, samples):
        for name in self.GAUGES:
            value = samples.get((name, ()))
            if value is not None:
                self.peaks[name] = max(value, self.peaks.get(name, value))
