"""Break the gunicorn presets on purpose and count what is lost: `nox -s resilience`.

Real gunicorn processes, the real PostgreSQL (behind a proxy that can cut it
off), real signals and raw sockets, on 127.0.0.1 only:

    drain         SIGTERM to the master with 50 requests in flight
    worker-crash  kill -9 a worker under steady load
    hung-request  a request runs past GUNICORN_TIMEOUT
    db-outage     the database goes away for 5 s under load, then comes back
    slowloris     30 clients send their request heads a byte a second
    large-body    a POST declares 50 MB
    chunked-flood     POSTs of 50 MB in 64 KiB chunks, no Content-Length
    held-connections  2,100 connections hold a second request head or a stalled body
                      (gevent: its capacity, 2,000, and 10 % beyond)
    slow-body         30 clients send a 1 MB body a byte a second
    busy-liveness     500 clients saturate the service; /livez is probed meanwhile
    boot-stop         20 starts, each stopped by SIGTERM as the master forks its workers
    recycle           a worker leaks memory under steady load and is replaced

    options.py          the command line
    run.py              the session: every scenario against every preset
    scenarios/          one module per scenario, with what it expects
    clients.py          well-behaved clients on raw sockets: what was answered, what was lost
    hostile_clients.py  slowloris connections, slow, oversized and chunked bodies
    held_clients.py     thousands of held connections from one thread (epoll)
    proxy.py            the TCP proxy that cuts the database off
    nginx.py            the project's nginx front (deploy/nginx/), for the scenarios that run
                        through it too
    report.py           how requests are counted; the table and summary.json

Servers start as the load test starts them (loadtest/server.py).
"""
