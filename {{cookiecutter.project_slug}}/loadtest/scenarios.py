"""What a load-test scenario asks of the server: {% if cookiecutter.include_demo_endpoints %}its Locust users, and what their requests cost.

One definition serves both sides: Locust's users send these requests
(locustfile.py), and the report computes each run's bound from them
(bounds.py) without importing Locust, which monkey-patches with gevent.
"""
{%- else %}the Locust users of a file of yours."""
{%- endif %}

from dataclasses import dataclass
from pathlib import Path
{%- if cookiecutter.include_demo_endpoints %}


@dataclass(frozen=True)
class Request:
    name: str  # the row in Locust's statistics
    path: str
    weight: int  # share of a user's requests, relative to the scenario's other requests
    wait_ms: float  # time spent waiting, not computing: a sleep, or pg_sleep in PostgreSQL
    calibration_path: str  # the same work without the wait: its time and CPU are measured
    uses_database: bool = False  # holds a database connection while it waits
    uses_upstream: bool = False  # calls the upstream the session starts (/demo/upstream)
{%- endif %}


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    locustfile: Path
    user_class: str | None = None  # None: every user class of the file
{%- if not cookiecutter.include_demo_endpoints %}
    # A Locust file's requests are unknown here: the session assumes they need neither.
    uses_database = False
    uses_upstream = False
{%- endif %}
{%- if cookiecutter.include_demo_endpoints %}
    arrival_class: str | None = None  # the same requests in the open model (open_model.py)
{%- endif %}
{%- if cookiecutter.include_demo_endpoints %}
    # Empty for a Locust file of yours: its requests are unknown here, so its costs are
    # measured by running it with one user (see calibration.py).
    requests: tuple[Request, ...] = ()

    @property
    def uses_database(self):
        return any(request.uses_database for request in self.requests)

    @property
    def uses_upstream(self):
        return any(request.uses_upstream for request in self.requests)
{%- endif %}


def from_locustfile(path):
    """A scenario of your own: every user class in the Locust file at `path`, named after it."""
    path = Path(path)
    return Scenario(name=path.stem, description=f"your Locust file {path.name}", locustfile=path)
