"""The demo warehouse generator: a simulated B2B SaaS book (accounts, contracts, usage, tickets,
touchpoints, surveys, health scores, stated churn reasons) that fills every contract table.

``data`` is the entry point (``generate_demo``, ``write_demo``); ``world`` draws the latent state,
``signals`` the observable tables, ``contracts`` the renewals, ``health`` the exported health
score, ``reasons`` the stated churn reasons. ``docs/demo-data.md`` describes the model.
"""
