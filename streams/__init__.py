"""The Faust stream processor and the lender side of the registry.

Data path: lender publisher -> ``lenders.<L>.loans`` -> admission agent (validate, bind lender,
pseudonymise, de-duplicate, consent) -> ``registry.admitted`` -> aggregation agent (event-time
buckets per borrower) -> ``registry.activity`` -> ClickHouse sink (``consumers``).
"""
