"""What runs write for people to read: results.json (``results``), figures (``plots``), tables
across runs and a sweep's summary (``tables``, ``sweep``); ``python -m mnist_budget.reporting``
tabulates finished runs."""
