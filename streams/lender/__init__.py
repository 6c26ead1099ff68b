"""The lender side: what a lender runs to publish into the registry.

* :mod:`~streams.lender.publisher` - the safe producer (acks=all + idempotence, bounded
  in-flight, keyed by borrower);
* :mod:`~streams.lender.jsonl` - ``registry publish`` (JSON Lines) and ``registry consent``;
* :mod:`~streams.lender.simulator` - ``registry simulate``, publishing a seeded multi-lender
  history plus live data planned by :mod:`~streams.lender.scenario` (lenders, borrowers and
  their rhythms from :mod:`~streams.lender.population`; parameters, items and result in
  :mod:`~streams.lender.sim_types`), and :mod:`~streams.lender.ground_truth`, its
  independently computed expected outcome.
"""
