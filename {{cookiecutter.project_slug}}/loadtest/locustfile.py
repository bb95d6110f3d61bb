"""Locust users for the demo scenarios (demo.py), one class per scenario.

`nox -s loadtest` runs them; by hand, from the project folder:
`python -m locust -f loadtest/locustfile.py IoUser --host http://127.0.0.1:8000`.
"""

import random

from locust import FastHttpUser, constant, task

from loadtest.demo import DEMO_SCENARIOS


class DemoUser(FastHttpUser):
    """A client that sends its next request as soon as the last one is answered.

    No think time: each user is one request in flight, so the number of users is
    the concurrency Little's law works with.
    """

    abstract = True
    wait_time = constant(0)
    scenario = None

    @task
    def send(self):
        requests = self.scenario.requests
        (request,) = random.choices(requests, weights=[r.weight for r in requests])
        self.client.get(request.path, name=request.name)


class IoUser(DemoUser):
    scenario = DEMO_SCENARIOS["io"]


class DbUser(DemoUser):
    scenario = DEMO_SCENARIOS["db"]


class CpuUser(DemoUser):
    scenario = DEMO_SCENARIOS["cpu"]


class MixedUser(DemoUser):
    scenario = DEMO_SCENARIOS["mixed"]
