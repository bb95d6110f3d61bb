"""Locust users for the demo scenarios (demo.py): for each, a closed-loop class and an open one.

`nox -s loadtest` runs them; by hand, from the project folder:
`python -m locust -f loadtest/locustfile.py IoUser --host http://127.0.0.1:8000`, or
`LOADTEST_ARRIVAL_RATE=500 python -m locust -f loadtest/locustfile.py IoArrivals ...`
for 500 requests/s started on a schedule (open_model.py).
"""

import random

from locust import FastHttpUser, constant, task

from loadtest.demo import DEMO_SCENARIOS
from loadtest.open_model import ArrivalUser


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


class IoAsyncUser(DemoUser):
    scenario = DEMO_SCENARIOS["io-async"]


class DbUser(DemoUser):
    scenario = DEMO_SCENARIOS["db"]


class CpuUser(DemoUser):
    scenario = DEMO_SCENARIOS["cpu"]


class UpstreamUser(DemoUser):
    scenario = DEMO_SCENARIOS["upstream"]


class MixedUser(DemoUser):
    scenario = DEMO_SCENARIOS["mixed"]


class IoArrivals(ArrivalUser):
    scenario = DEMO_SCENARIOS["io"]


class IoAsyncArrivals(ArrivalUser):
    scenario = DEMO_SCENARIOS["io-async"]


class DbArrivals(ArrivalUser):
    scenario = DEMO_SCENARIOS["db"]


class CpuArrivals(ArrivalUser):
    scenario = DEMO_SCENARIOS["cpu"]


class UpstreamArrivals(ArrivalUser):
    scenario = DEMO_SCENARIOS["upstream"]


class MixedArrivals(ArrivalUser):
    scenario = DEMO_SCENARIOS["mixed"]
