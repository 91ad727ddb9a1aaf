"""`tokenfuse dashboard`: the live web UI (see docs/dashboard.md).

live.py follows Kafka (verified control states, budgets, alerts); queries.py and views.py read
ClickHouse's rollups; hub.py feeds one server-sent-event stream per open page; app.py is the
Starlette app with its security checks (security.py); server.py runs it on 127.0.0.1.
"""
