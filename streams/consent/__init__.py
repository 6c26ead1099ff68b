"""Consent: a borrower's consent records, from the lender's topic to the admission decision.

Owns the consent ingest (decode, validate, bind the lender, pseudonymise, store:
:mod:`streams.consent.ingest`), the Redis store of consent histories and the rule of which
change is in force (:mod:`streams.consent.store`), the barrier that holds loan events until the
consent read before them is stored (:mod:`streams.consent.barrier`) and the agent that reads
``lenders.<L>.consent`` (:mod:`streams.consent.agent`). May import ``schemas``,
:mod:`streams.settings`, :mod:`streams.runtime` and :mod:`streams.kafka`; not intake (which
stands above it and uses the barrier and store), the Faust app, the CLI or ``consumers``.
"""
