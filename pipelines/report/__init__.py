"""The retention and monitoring report (``churnlens report``), in one place.

``gather`` reads what the report shows (contract tables, earlier runs' write-back, the weekly
checks kept on disk, MLflow metrics) and computes its figures with the analytics of
``features``, ``models`` and ``serving``; ``sections`` turns those frames into the page's
sections and writes the HTML through ``serving.render``. It lives in ``pipelines`` because it
reads every stage's output; the serving modules that contribute a section (holdout uplift,
churn reasons, expansion signals) build it from ``serving.render.Section``.
"""
