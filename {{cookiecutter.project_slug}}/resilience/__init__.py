"""Break the gunicorn presets on purpose and count what is lost: `nox -s resilience`.

Real gunicorn processes, the real PostgreSQL (behind a proxy that can cut it
off), real signals and raw sockets, on 127.0.0.1 only:

    drain         SIGTERM to the master with 50 requests in flight
    worker-crash  kill -9 a worker under steady load
    hung-request  a request runs past GUNICORN_TIMEOUT
    db-outage     the database goes away for 5 s under load, then comes back
    slowloris     30 clients send their request heads a byte a second
    large-body    a POST declares 50 MB

    options.py          the command line
    run.py              the session: every scenario against every preset
    scenarios/          one module per scenario, with what it expects
    clients.py          well-behaved clients on raw sockets: what was answered, what was lost
    hostile_clients.py  slowloris connections, oversized bodies
    proxy.py            the TCP proxy that cuts the database off
    nginx.py            the project's nginx front (deploy/nginx/), for slowloris
    report.py           how requests are counted; the table and summary.json

Servers start as the load test starts them (loadtest/server.py).
"""
