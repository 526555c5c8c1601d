"""Contract tests: today's public behaviour (the OpenAPI document and the classic endpoints'
answers on real photos), frozen in baselines, so a refactor can be checked against it.

Regenerate the baselines deliberately (never to make a failing test pass without reading why):

    .venv/bin/python -m tests.contract.refresh            # both
    .venv/bin/python -m tests.contract.refresh openapi    # tests/contract/openapi_baseline.json
    .venv/bin/python -m tests.contract.refresh classic    # tests/contract/classic_baseline.json (../shared)
"""
