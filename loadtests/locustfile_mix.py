"""The request mix at a constant number of users (loadtests/mix.py: 70% photo search of 1-3 items,
20% similar-by-product, 10% detect), against a running `make demo`:

    .venv/bin/locust -f loadtests/locustfile_mix.py --host http://127.0.0.1:3000 \\
        --headless -u 30 -r 10 -t 60s --csv var/loadtest/mix --html var/loadtest/mix.html --only-summary

Locust exits 1 if any request failed (a wrong status, schema or an empty result).
"""

from loadtests.mix import Shopper  # noqa: F401  (Locust runs the User classes it finds here)
